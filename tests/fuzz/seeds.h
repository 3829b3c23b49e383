// Seed corpora from real encodings. Each fuzz target builds its own seeds (valid inputs
// made with the encoders) in LLVMFuzzerInitialize and hands them to WriteSeedsIfAsked: run
// with PCCL_FUZZ_WRITE_SEEDS=<dir>, the target writes them there as seed_0, seed_1, ... and
// exits instead of fuzzing. `tests/fuzz/run.sh --write-seeds` does that for every target
// into tests/fuzz/corpus/<target>/, which is checked in; run.sh fuzzes copies of it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace pccl::fuzz {

inline void WriteSeedsIfAsked(const std::vector<std::string>& seeds) {
  const char* dir = std::getenv("PCCL_FUZZ_WRITE_SEEDS");
  if (dir == nullptr || *dir == '\0') return;
  std::filesystem::create_directories(dir);
  for (size_t i = 0; i < seeds.size(); ++i) {
    const auto path = std::filesystem::path(dir) / ("seed_" + std::to_string(i));
    std::ofstream(path, std::ios::binary).write(seeds[i].data(), seeds[i].size());
  }
  std::printf("wrote %zu seeds to %s\n", seeds.size(), dir);
  std::exit(0);
}

}  // namespace pccl::fuzz
