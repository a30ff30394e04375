// refprobe: one small operation in a tight loop against a running refstored, printing the mean
// time per operation. For profiling (perf, strace -c) what refbench's small-ops workload
// measures, without refbench's threads and baselines around it.
//
//   refprobe SOCKET put|put-view|put-read|stats|hold [COUNT] [SIZE]
//
// `hold` puts COUNT values, keeps every Ref and waits for a line on stdin before dropping them:
// for looking at the daemon's memory per live object (heaptrack, /proc/PID/status).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "client/cpp/refstore_client.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: refprobe SOCKET put|put-view|put-read|stats|hold [COUNT] [SIZE]\n");
    return 2;
  }
  std::string mode = argv[2];
  int count = argc > 3 ? atoi(argv[3]) : 10000;
  size_t size = argc > 4 ? strtoull(argv[4], nullptr, 10) : 64;
  auto client = refstore::Client::connect(argv[1]);
  std::vector<uint8_t> value(size, 7);
  if (mode == "hold") {
    std::vector<refstore::Ref> held;
    for (int i = 0; i < count; i++) held.push_back(client.put(value.data(), value.size()));
    printf("holding %d objects of %zu B; press enter to drop them\n", count, size);
    fflush(stdout);
    getchar();
    return 0;
  }
  auto once = [&]() {
    if (mode == "stats") {
      client.stats();
      return;
    }
    refstore::Ref ref = client.put(value.data(), value.size());
    if (mode == "put-view") {
      refstore::View view = ref.view();
      if (view.size() != size) abort();
    } else if (mode == "put-read") {
      if (ref.read(0, size).size() != size) abort();
    }
  };
  for (int i = 0; i < count / 10; i++) once();  // warm-up
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < count; i++) once();
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                  .count();
  printf("%s %zu B: %.1f us per operation (%d)\n", mode.c_str(), size, us / count, count);
  return 0;
}
