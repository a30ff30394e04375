// segment_bench: how long Segment::create (memfd + fallocate + MAP_POPULATE + read-only reopen)
// and destruction take on this machine. This is the cost the spare segment hides from requests.
//
//   bazel run //server/shm:segment_bench -- [MiB ...]      (default: 64 1024)

#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "server/shm/segment.h"

int main(int argc, char** argv) {
  std::vector<unsigned long long> sizesMiB;
  for (int i = 1; i < argc; i++) sizesMiB.push_back(strtoull(argv[i], nullptr, 10));
  if (sizesMiB.empty()) sizesMiB = {64, 1024};

  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  uint32_t id = 1;
  for (unsigned long long mib: sizesMiB) {
    const int runs = mib >= 1024 ? 3 : 7;
    std::vector<double> create, destroy;
    for (int r = 0; r < runs; r++) {
      auto t0 = Clock::now();
      auto segment = refstore::shm::Segment::create(id++, uint64_t(mib) << 20);
      auto t1 = Clock::now();
      segment = nullptr;
      auto t2 = Clock::now();
      create.push_back(ms(t1 - t0));
      destroy.push_back(ms(t2 - t1));
    }
    std::sort(create.begin(), create.end());
    std::sort(destroy.begin(), destroy.end());
    printf("%6llu MiB: create min %8.1f ms  median %8.1f ms  (%5.2f GB/s); destroy median %6.1f ms\n",
           mib, create.front(), create[runs / 2],
           double(mib << 20) / (create[runs / 2] / 1e3) / 1e9, destroy[runs / 2]);
  }
  return 0;
}
