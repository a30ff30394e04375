// Workload 2: zero-copy read. How long `ref.view()` takes, from 1 KiB to 1 GiB (quick: to
// 64 MiB): it should not depend on the size at all, since no byte is copied, only a placement
// (segment, offset, length) comes back. Compared with a bare Cap'n Proto echo round trip over
// the same kind of socket to a `worker` helper process, which is the floor for any request;
// echo and view calls alternate at every size.
//
// Both start from the same state: every call follows an untimed idle gap longer than any busy
// poll (refstored's --busy-poll-us, 100 us by default), so the daemon is asleep like the echo
// helper and each call pays one wake-up of its server; and refbench waits for the echo's reply
// with the same 100 us busy poll the refstore client uses for the view's. (Until session 10 the
// calls ran back to back: a view then often found the daemon still spinning from the previous
// view, while the echo helper, which never spins, always had to be woken.)
//
// A view sample is view() plus a read of the first byte (time to first byte: with a dedicated
// segment this includes mapping it); the View is dropped untimed. Also measured: reading
// through a View already held (no round trip at all), and scanning all its bytes, first through
// a fresh View (page faults of a new mapping included) and then again (warm), against a scan of
// private memory.
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "client/cpp/refstore_async.h"
#include "client/cpp/refstore_client.h"
#include "tools/bench/bytes.h"
#include "tools/bench/rpc.h"
#include "tools/bench/timing.h"
#include "tools/bench/workloads.h"

namespace refbench {
namespace {

// How long the refstore client busy-polls for a reply: $REFSTORE_BUSY_POLL_US, else 100 us
// (ConnectOptions::busyPollMicros in client/cpp/refstore_client.h). The echo gets the same.
double clientBusyPollSeconds() {
  const char* env = getenv("REFSTORE_BUSY_POLL_US");
  return (env != nullptr && *env != '\0' ? atof(env) : 100.0) * 1e-6;
}

// Sleeps long enough (300 us) that every busy poll has ended: refstored's after its last
// message (--busy-poll-us, 100 us by default: a larger one passed with --refstored-arg would
// need a longer gap) and the client's.
void idleLongerThanBusyPolls() {
  struct timespec gap = {0, 300 * 1000};
  nanosleep(&gap, nullptr);
}

}  // namespace

void runView(Context& ctx) {
  uint64_t largest = ctx.quick() ? 64 * MiB : GiB;
  refstore::Client client = refstore::Client::connect(ctx.daemon->socket());
  kj::AsyncIoContext& io = refstore::async::ioContext(client);
  std::string echoSocket = ctx.tmp.path() + "/echo.sock";
  Child worker = Child::role("worker", {echoSocket, ctx.daemon->socket()});
  worker.receive();  // ready
  WorkerConnection echo(io, echoSocket);
  uint8_t payload[64] = {0};
  const int steps = ctx.quick() ? 150 : 500, warmupSteps = 20;
  const double busyPollSeconds = clientBusyPollSeconds();

  WarmBuffer privateCopy(largest);
  fillPattern(privateCopy.data(), largest, 3);

  std::vector<std::string> columns = {"size_bytes", "size"};
  for (auto& c: Table::summaryColumns("view_us")) columns.push_back(c);
  for (auto& c: Table::summaryColumns("echo_us")) columns.push_back(c);
  for (auto c: {"view_over_echo", "held_read_ns", "first_scan_gbps_median",
                "held_scan_gbps_median", "private_scan_gbps_median"}) {
    columns.push_back(c);
  }
  Table& table = ctx.report.table("view", columns);

  double smallest = 0, largestLatency = 0, heldReadNs = 0, echoAtSmallest = 0, echoAtLargest = 0;
  std::vector<double> overEcho;  // view / echo at each size
  for (uint64_t size: sizeRange(KiB, largest, 4)) {
    refstore::Ref ref = [&]() {
      refstore::WriteBuffer buffer = client.create(size);
      fillPattern(buffer.data(), size, 3);
      return buffer.seal();
    }();

    // Echo round trips and view() calls strictly alternating, one sample of each per step (the
    // order flipping every step): the machine's round-trip time drifts within seconds, and this
    // way both see the same drift.
    std::vector<double> echoSamples, viewSamples;
    auto echoOnce = [&]() {
      idleLongerThanBusyPolls();
      double t0 = now();
      auto request = echo.worker.echoRequest();
      request.setData(kj::arrayPtr(payload, sizeof(payload)));
      auto reply = request.send();
      // What refstore::Client does for every call (ConnectOptions::busyPollMicros).
      double spinUntil = t0 + busyPollSeconds;
      while (!reply.poll(io.waitScope) && now() < spinUntil) sched_yield();
      reply.wait(io.waitScope);
      return now() - t0;
    };
    auto viewOnce = [&]() {
      idleLongerThanBusyPolls();
      double t0 = now();
      refstore::View view = ref.view();
      volatile uint8_t first = view.data()[0];
      (void)first;
      return now() - t0;  // the View is dropped after the clock stops
    };
    for (int step = -warmupSteps; step < steps; step++) {
      double e, v;
      if (step % 2 == 0) {
        e = echoOnce();
        v = viewOnce();
      } else {
        v = viewOnce();
        e = echoOnce();
      }
      if (step >= 0) {
        echoSamples.push_back(e);
        viewSamples.push_back(v);
      }
    }
    Summary echoS = summarize(echoSamples), viewS = summarize(viewSamples);

    // Reads through a held View: a pointer into a mapping, no round trip at all. 4096 strided
    // one-byte reads per sample, so the clock's own cost does not dominate.
    refstore::View held = ref.view();
    const uint8_t* bytes = held.data();
    double readNs = blockMedian(50, [&]() {
                      uint64_t sum = 0;
                      for (size_t i = 0; i < 4096; i++) sum += bytes[(i * 4160) % size];
                      volatile uint64_t sink = sum;
                      (void)sink;
                    }) / 4096 * 1e9;

    // Scans of every byte: through a fresh View (its first scan), then the held one warm, and
    // private memory for comparison.
    auto scans = interleave(0, repsFor(ctx, size), {
        [&]() {
          refstore::View fresh = ref.view();
          double t0 = now();
          volatile uint64_t sum = checksum(fresh.data(), size);
          (void)sum;
          return now() - t0;
        },
        [&]() {
          double t0 = now();
          volatile uint64_t sum = checksum(held.data(), size);
          (void)sum;
          return now() - t0;
        },
        [&]() {
          double t0 = now();
          volatile uint64_t sum = checksum(privateCopy.data(), size);
          (void)sum;
          return now() - t0;
        },
    });

    std::vector<Value> row = {size, sizeName(size)};
    Table::appendSummary(row, viewS, 1e6);
    Table::appendSummary(row, echoS, 1e6);
    row.push_back(viewS.median / echoS.median);
    overEcho.push_back(viewS.median / echoS.median);
    row.push_back(readNs);
    for (auto& scan: scans) row.push_back(size / summarize(scan).median * 1e-9);
    table.add(row);

    if (size == KiB) {
      smallest = viewS.median;
      echoAtSmallest = echoS.median;
      heldReadNs = readNs;
    }
    largestLatency = viewS.median;
    echoAtLargest = echoS.median;
  }

  // The round-trip time of this machine drifts (2x within a run is common), so the headline
  // compares the sizes through the echo measured in the same interleaved rounds: (view/echo at
  // the largest size) / (view/echo at 1 KiB). The raw ratio is reported too.
  ctx.report.set("view_1GiB_over_1KiB",
                 (largestLatency / echoAtLargest) / (smallest / echoAtSmallest));
  ctx.report.set("view_1GiB_over_1KiB_raw", largestLatency / smallest);
  ctx.report.set("view_largest_size", sizeName(largest));
  // A view is one round trip at every size: the headline is the median over the sizes.
  ctx.report.set("first_view_over_echo", summarize(overEcho).median);
  ctx.report.set("first_view_over_echo_1KiB", smallest / echoAtSmallest);
  ctx.report.set("view_1KiB_us", smallest * 1e6);
  ctx.report.set("echo_us", echoAtSmallest * 1e6);
  ctx.report.set("held_view_read_ns", heldReadNs);
}

}  // namespace refbench
