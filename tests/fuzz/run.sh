#!/usr/bin/env bash
# Builds the fuzz targets (tests/fuzz/CMakeLists.txt) with clang in build/fuzz and runs each
# for a bounded time, from a scratch copy of its seed corpus (tests/fuzz/corpus/<target>/
# stays as checked in). Fails if any target finds a crash, a sanitizer report, a broken
# property, a leak, a hang or an out-of-memory; the input that did it is kept and named.
#
#   tests/fuzz/run.sh [SECONDS]     seconds per target: argument, else $PCCL_FUZZ_SECONDS,
#                                   else 10
#   tests/fuzz/run.sh --write-seeds regenerates tests/fuzz/corpus/ from the encoders
# Environment: PCCL_FUZZ_TARGETS (space-separated subset of targets), PCCL_FUZZ_JOBS
# (targets run at once; default: the number of CPUs).
# Needs clang++ and libFuzzer's runtime (Debian: clang libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v clang++ >/dev/null; then
  echo "tests/fuzz/run.sh: clang++ not found; the fuzzers need clang and libFuzzer" \
       "(Debian: apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi

mode=fuzz
if [[ "${1:-}" == "--write-seeds" ]]; then
  mode=seeds
  shift
fi
seconds=${1:-${PCCL_FUZZ_SECONDS:-10}}
jobs=${PCCL_FUZZ_JOBS:-$(nproc)}
build=build/fuzz

start=$SECONDS
cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug \
      -DPCCL_BUILD_FUZZERS=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target pccl_fuzzers >/dev/null
echo "fuzzers built in $((SECONDS - start)) s"

declare -a names max_lens binaries
while read -r name max_len binary; do
  if [[ -n "${PCCL_FUZZ_TARGETS:-}" && " $PCCL_FUZZ_TARGETS " != *" $name "* ]]; then
    continue
  fi
  names+=("$name")
  max_lens+=("$max_len")
  binaries+=("$binary")
done <"$build/tests/fuzz/targets.txt"
if [[ ${#names[@]} -eq 0 ]]; then
  echo "tests/fuzz/run.sh: no target matches PCCL_FUZZ_TARGETS='${PCCL_FUZZ_TARGETS:-}'" >&2
  exit 1
fi

if [[ $mode == seeds ]]; then
  for i in "${!names[@]}"; do
    rm -rf "tests/fuzz/corpus/${names[$i]}"
    PCCL_FUZZ_WRITE_SEEDS="tests/fuzz/corpus/${names[$i]}" "${binaries[$i]}"
  done
  exit 0
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pccl-fuzz.XXXXXX")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Runs one target in $scratch/<name>/: corpus copy in corpus/, crash inputs in artifacts/,
# libFuzzer's output in log.
fuzz_one() {
  local name=$1 max_len=$2 binary=$3
  local dir="$scratch/$name"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  if [[ -d "tests/fuzz/corpus/$name" ]]; then
    cp -r "tests/fuzz/corpus/$name/." "$dir/corpus/"
  fi
  local seeds=()
  [[ -d "tests/fuzz/findings/$name" ]] && seeds+=("tests/fuzz/findings/$name")
  "$binary" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
            -malloc_limit_mb=512 -print_final_stats=0 -artifact_prefix="$dir/artifacts/" \
            "$dir/corpus" "${seeds[@]}" >"$dir/log" 2>&1
}

echo "fuzzing ${#names[@]} targets for ${seconds} s each, ${jobs} at a time"
declare -A pid_of
for i in "${!names[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n || true; done
  fuzz_one "${names[$i]}" "${max_lens[$i]}" "${binaries[$i]}" &
  pid_of[${names[$i]}]=$!
done

failed=()
for name in "${names[@]}"; do
  status=0
  wait "${pid_of[$name]}" || status=$?
  log="$scratch/$name/log"
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1 || true)
  if [[ $status -eq 0 && -n "$runs" ]]; then
    printf '  %-28s ok    %s\n' "$name" "$runs"
  else
    printf '  %-28s FAIL  (exit %s)\n' "$name" "$status"
    failed+=("$name")
  fi
done

for name in "${failed[@]}"; do
  echo
  echo "=== $name: last lines of $scratch/$name/log"
  tail -n 40 "$scratch/$name/log"
  for input in "$scratch/$name/artifacts/"*; do
    [[ -e "$input" ]] || continue
    echo "--- input: $input ($(stat -c %s "$input") bytes)"
    od -An -tx1 -v "$input" | head -n 20
  done
done

echo "fuzzing took $((SECONDS - start)) s in all"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "tests/fuzz/run.sh: ${#failed[@]} target(s) failed: ${failed[*]}; inputs and logs" \
       "kept in $scratch (rerun one: <binary> <input>)" >&2
  exit 1
fi
rm -rf "$scratch"
