#!/usr/bin/env bash
# Runs every test of pccl: the C++ unit tests (GoogleTest, through ctest) and the Python
# suite (pytest, against the installed pccl package), with mypy on python/pccl in between.
# Needs libgtest-dev, cmake, a C++20 compiler and `pip install ".[test]"`. Extra arguments
# go to pytest. Then the fuzzers (tests/fuzz/run.sh), if clang is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/cpp-tests
cmake -S . -B "$build" -DPCCL_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j 2 --target pccl_cpp_tests
ctest --test-dir "$build" --output-on-failure --timeout 60
python3 -m mypy  # python/pccl, strict (pyproject.toml [tool.mypy])
python3 -m pytest "$@"
# Every decoder of network bytes under libFuzzer with ASan and UBSan, 2 s per target (about
# 70 s on 2 cores with the build; tests/fuzz/run.sh). CI installs clang; elsewhere a missing
# clang only skips them.
if command -v clang++ >/dev/null; then
  bash tests/fuzz/run.sh 2
else
  echo "tests/run.sh: clang++ not found, fuzzers skipped (see tests/fuzz/run.sh)" >&2
fi
