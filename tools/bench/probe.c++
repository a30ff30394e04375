// refprobe: one small operation in a tight loop against a running refstored, printing the mean
// time per operation. For profiling (perf, strace -c) what refbench's small-ops workload
// measures, without refbench's threads and baselines around it.
//
//   refprobe SOCKET MODE [COUNT] [SIZE] [GAP_US]
//   MODE: put put-view put-view-pipelined put-read stats hold handoff handoff-pipelined
//         handoff-copy idle-wake after-idle xpull
//
// `hold` puts COUNT values, keeps every Ref and waits for a line on stdin before dropping them:
// for looking at the daemon's memory per live object (heaptrack, /proc/PID/status).
// `handoff` times each step of refbench's in-place handoff (create, write, seal, share, drop,
// then on a second connection restore, view, read every byte, drop) and prints the median of
// each over COUNT rounds; `handoff-pipelined` the same through WriteBuffer::sealAndShare and
// Client::restoreView (one round trip each instead of two); `handoff-copy` like
// handoff-pipelined, but the producer memcpys the value in from warm private memory (refbench's
// copy-in handoff) instead of writing it in place.
// `idle-wake` times a seal of SIZE bytes right after the last request, after the client wrote
// 64 MiB of unrelated memory, and after 5 ms of the client spinning. On the 2-vCPU VM the last
// two cost the same (~0.2 ms more than at once), so the extra is not cold caches; it stays with
// the daemon busy-polling for 10 ms (--busy-poll-us 10000), so it is not only the daemon's wake.
// `xpull` (SOCKET is a reader host's daemon, GAP_US is replaced by the owner host's socket)
// makes one SIZE value on the owner and COUNT times restores a token of it on the reader, views
// it (the reader's daemon pulls the bytes over the data port) and drops it, waiting until the
// reader has freed its copy: for profiling the data plane, e.g. by both daemons' CPU time.
// `after-idle` times stats() and view() of a SIZE value, each after GAP_US (default 300) of
// idleness: longer than the busy polls, the first request after idle time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "client/cpp/refstore_async.h"
#include "client/cpp/refstore_client.h"

namespace {

double median(std::vector<double>& values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Times consecutive steps of a round, over many rounds; prints each step's median.
class Laps {
 public:
  explicit Laps(std::vector<const char*> steps): steps(std::move(steps)), ms(this->steps.size()) {}
  void start() {
    step = 0;
    last = std::chrono::steady_clock::now();
  }
  void lap() {
    auto now = std::chrono::steady_clock::now();
    ms.at(step++).push_back(std::chrono::duration<double, std::milli>(now - last).count());
    last = now;
  }
  void print() {
    for (size_t s = 0; s < steps.size(); s++) printf("%-12s %8.3f ms\n", steps[s], median(ms[s]));
  }

 private:
  std::vector<const char*> steps;
  std::vector<std::vector<double>> ms;
  std::chrono::steady_clock::time_point last;
  size_t step = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr,
            "usage: refprobe SOCKET MODE [COUNT] [SIZE] [GAP_US]\n"
            "MODE: put put-view put-view-pipelined put-read stats hold handoff handoff-pipelined\n"
            "      handoff-copy idle-wake after-idle xpull\n");
    return 2;
  }
  std::string mode = argv[2];
  int count = argc > 3 ? atoi(argv[3]) : 10000;
  size_t size = argc > 4 ? strtoull(argv[4], nullptr, 10) : 64;
  auto client = refstore::Client::connect(argv[1]);
  std::vector<uint8_t> value(size, 7);
  if (mode == "xpull") {
    if (argc < 6) {
      fprintf(stderr, "usage: refprobe READER_SOCKET xpull COUNT SIZE OWNER_SOCKET\n");
      return 2;
    }
    auto owner = refstore::Client::connect(argv[5]);
    refstore::WriteBuffer buffer = owner.create(size);
    for (size_t b = 0; b < size; b++) buffer.data()[b] = uint8_t(b * 131 + (b >> 12));
    refstore::Ref owned = buffer.seal();
    Laps laps({"restore", "view", "drop+free"});
    uint64_t sum = 0;
    for (int i = 0; i < count; i++) {
      std::string token = owned.share(60, 1);
      laps.start();
      {
        refstore::Ref ref = client.restore(token);
        laps.lap();
        refstore::View view = ref.view();
        laps.lap();
        sum += view.data()[view.size() - 1];
      }
      while (client.stats().proxies != 0) {
      }
      laps.lap();
    }
    laps.print();
    printf("(checksum %llu)\n", (unsigned long long)sum);
    return 0;
  }
  if (mode == "handoff" || mode == "handoff-pipelined" || mode == "handoff-copy") {
    // handoff-copy: pipelined, and the value is memcpy'd in from warm private memory
    bool pipelined = mode != "handoff";  // sealAndShare + restoreView
    bool copy = mode == "handoff-copy";
    auto consumer = refstore::Client::connect(argv[1]);
    Laps laps(pipelined ? std::vector<const char*>{"create", "write", "seal+share", "drop",
                                                   "restoreView", "read", "drop view"}
                        : std::vector<const char*>{"create", "write", "seal", "share", "drop",
                                                   "restore", "view", "read", "drop view"});
    uint64_t sum = 0;
    for (int i = 0; i < count; i++) {
      laps.start();
      refstore::WriteBuffer buffer = client.create(size);
      laps.lap();
      if (copy) {
        memcpy(buffer.data(), value.data(), size);
      } else {
        std::fill(buffer.data(), buffer.data() + size, uint8_t(i));
      }
      laps.lap();
      std::string token;
      if (pipelined) {
        refstore::SharedValue shared = buffer.sealAndShare(60, 1);
        token = shared.token;
        laps.lap();
      } else {
        refstore::Ref ref = buffer.seal();
        laps.lap();
        token = ref.share(60, 1);
        laps.lap();
      }
      laps.lap();  // the producer's Ref is dropped
      {
        std::optional<refstore::Ref> ref;
        refstore::View view = pipelined ? consumer.restoreView(token) : [&]() {
          ref.emplace(consumer.restore(token));
          laps.lap();
          return ref->view();
        }();
        laps.lap();
        const uint8_t* data = view.data();
        size_t n = view.size();
        for (size_t b = 0; b < n; b += 64) sum += data[b];  // every cache line
        laps.lap();
      }
      laps.lap();
    }
    laps.print();
    printf("(checksum %llu)\n", (unsigned long long)sum);
    return 0;
  }
  if (mode == "after-idle") {  // stats() and view() of a SIZE value, each after GAP us idle
    long gapUs = argc > 5 ? atol(argv[5]) : 300;  // default: longer than either side's busy poll
    refstore::Ref ref = client.put(value.data(), value.size());
    std::vector<double> statsMs, viewMs;
    auto idle = [gapUs]() {
      struct timespec gap = {gapUs / 1000000, gapUs % 1000000 * 1000};
      nanosleep(&gap, nullptr);
    };
    auto since = [](std::chrono::steady_clock::time_point t) {
      auto elapsed = std::chrono::steady_clock::now() - t;
      return std::chrono::duration<double, std::milli>(elapsed).count();
    };
    for (int i = 0; i < count; i++) {
      idle();
      auto t = std::chrono::steady_clock::now();
      client.stats();
      statsMs.push_back(since(t));
      idle();
      t = std::chrono::steady_clock::now();
      refstore::View view = ref.view();
      viewMs.push_back(since(t));  // the View is dropped after the clock stops
    }
    printf("after %ld us idle: stats %.3f ms, view %.3f ms\n", gapUs, median(statsMs),
           median(viewMs));
    return 0;
  }
  if (mode == "idle-wake") {  // what a request costs once the daemon has been idle a while
    std::vector<uint8_t> unrelated(64 << 20, 1);
    const char* befores[] = {"at once", "after the client wrote 64 MiB elsewhere",
                             "after 5 ms of client spinning (no memory traffic)"};
    std::vector<double> ms[3];
    for (int i = 0; i < count; i++) {
      for (int k = 0; k < 3; k++) {
        refstore::WriteBuffer buffer = client.create(size);
        std::fill(buffer.data(), buffer.data() + size, uint8_t(i));
        if (k == 1) std::fill(unrelated.begin(), unrelated.end(), uint8_t(i));
        if (k == 2) {
          auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
          while (std::chrono::steady_clock::now() < end) {
          }
        }
        auto t = std::chrono::steady_clock::now();
        refstore::Ref ref = buffer.seal();
        ms[k].push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count());
      }
    }
    for (int k = 0; k < 3; k++) printf("seal %-50s %8.3f ms\n", befores[k], median(ms[k]));
    return 0;
  }
  if (mode == "hold") {
    std::vector<refstore::Ref> held;
    for (int i = 0; i < count; i++) held.push_back(client.put(value.data(), value.size()));
    printf("holding %d objects of %zu B; press enter to drop them\n", count, size);
    fflush(stdout);
    getchar();
    return 0;
  }
  auto once = [&]() {
    if (mode == "put-view-pipelined") {  // refbench's pipelined small op, depth 16
      constexpr int kDepth = 16;
      auto& io = refstore::async::ioContext(client);
      auto store = refstore::async::store(client);
      auto puts = kj::heapArrayBuilder<kj::Promise<void>>(kDepth);
      auto views = kj::heapArrayBuilder<kj::Promise<refstore::View>>(kDepth);
      std::vector<refstore::Ref> refs;
      refs.reserve(kDepth);
      for (int i = 0; i < kDepth; i++) {
        auto request = store.putRequest();
        request.setData(kj::arrayPtr(value.data(), value.size()));
        auto put = request.send();
        refs.push_back(refstore::async::wrap(client, put.getRef()));
        views.add(refstore::async::view(refs.back()));
        puts.add(put.ignoreResult());
      }
      kj::joinPromises(views.finish()).wait(io.waitScope);
      kj::joinPromises(puts.finish()).wait(io.waitScope);
      return;
    }
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
