// xhost_first_read_over_echo: the latency of a small value's first read on another host. Host 0
// owns a 1 KiB value; a sample is host 1's client restoring a fresh token of it and reading all
// its bytes (restore + view + checksum): host 1's daemon restores through its peer connection to
// host 0 (kept open between samples: one per pair of daemons), obtains a transfer ticket and
// pulls the 1 KiB over a new data connection. Baseline: a bare Cap'n Proto echo of 1 KiB from
// host 1's address to a `worker` on host 0's, on a connection kept open: the floor of any
// request across the link. Time ratio (`_over_`: smaller is better).
//
// Each call follows an idle gap longer than every busy poll, so both start with their servers
// asleep; the echo's caller busy-polls for the reply for 100 us like the refstore client. The
// token and the clean-up (dropping the Ref, host 1 freeing its copy) are untimed. A third
// variant, taking turns with the other two, uses Client::restoreView (restore and view
// pipelined: one round trip to host 1's daemon): xhost_first_restore_view_over_echo.
#include <sched.h>

#include <stdexcept>

#include "client/cpp/refstore_async.h"
#include "tools/bench/bytes.h"
#include "tools/bench/timing.h"
#include "tools/bench/xhost.h"

namespace refbench {

void xhostFirstRead(Xhost& x) {
  const uint64_t size = KiB;
  const int steps = x.ctx.quick() ? 60 : 200, warmupSteps = 10;
  kj::AsyncIoContext& io = refstore::async::ioContext(x.on(1));
  TcpWorker echo(x, /*atHost=*/0, /*fromHost=*/1);
  refstore::Ref owned = x.makeValue(0, size, 41);
  uint64_t want = [&]() {
    refstore::View view = owned.view();
    return checksum(view.data(), size);
  }();
  WarmBuffer payload(size);
  fillPattern(payload.data(), size, 41);

  auto echoOnce = [&]() {
    idleLongerThanBusyPolls();
    double t0 = now();
    auto request = echo.worker.echoRequest();
    request.setData(kj::arrayPtr(payload.data(), size));
    auto reply = request.send();
    double spinUntil = t0 + 100e-6;  // the refstore client's default busy poll
    while (!reply.poll(io.waitScope) && now() < spinUntil) sched_yield();
    auto answer = reply.wait(io.waitScope);
    double seconds = now() - t0;
    if (answer.getData().size() != size) throw std::runtime_error("echo: wrong size");
    return seconds;
  };
  // pipelined: Client::restoreView, restore and view in one round trip to host 1's daemon
  // (xhost_first_restore_view_over_echo); otherwise restore, then view.
  auto readOnce = [&](bool pipelined) {
    std::string token = owned.share(60, 1);
    idleLongerThanBusyPolls();
    double t0 = now();
    uint64_t got;
    if (pipelined) {
      refstore::View view = x.on(1).restoreView(token);
      got = checksum(view.data(), view.size());
    } else {
      refstore::Ref ref = x.on(1).restore(token);
      refstore::View view = ref.view();
      got = checksum(view.data(), view.size());
    }
    double seconds = now() - t0;
    if (got != want) throw std::runtime_error("xhost first read: wrong checksum");
    x.waitNoProxies(1);
    return seconds;
  };
  std::vector<double> echoSamples, readSamples, viewSamples;
  for (int step = -warmupSteps; step < steps; step++) {
    // The three take turns in a rotating order.
    double e = 0, r = 0, v = 0;
    for (int turn = 0; turn < 3; turn++) {
      switch ((step + warmupSteps + turn) % 3) {
        case 0: e = echoOnce(); break;
        case 1: r = readOnce(false); break;
        default: v = readOnce(true); break;
      }
    }
    if (step >= 0) {
      echoSamples.push_back(e);
      readSamples.push_back(r);
      viewSamples.push_back(v);
    }
  }
  Summary echoS = summarize(echoSamples), readS = summarize(readSamples),
          viewS = summarize(viewSamples);
  std::vector<std::string> columns = {"size_bytes"};
  for (auto& c: Table::summaryColumns("first_read_us")) columns.push_back(c);
  for (auto& c: Table::summaryColumns("restore_view_us")) columns.push_back(c);
  for (auto& c: Table::summaryColumns("echo_us")) columns.push_back(c);
  columns.push_back("first_read_over_echo");
  columns.push_back("restore_view_over_echo");
  Table& table = x.ctx.report.table("xhost_first_read", columns);
  std::vector<Value> row = {size};
  Table::appendSummary(row, readS, 1e6);
  Table::appendSummary(row, viewS, 1e6);
  Table::appendSummary(row, echoS, 1e6);
  double ratio = readS.median / echoS.median, viewRatio = viewS.median / echoS.median;
  row.push_back(ratio);
  row.push_back(viewRatio);
  table.add(row);
  x.ctx.report.set("xhost_first_read_over_echo", ratio);
  x.ctx.report.set("xhost_first_restore_view_over_echo", viewRatio);
  x.ctx.report.set("xhost_first_read_us", readS.median * 1e6);
  x.ctx.report.set("xhost_first_restore_view_us", viewS.median * 1e6);
  x.ctx.report.set("xhost_echo_us", echoS.median * 1e6);
  x.ctx.progress("xhost first read 1KiB: %.0f us (p25 %.0f, p75 %.0f), restoreView %.0f us, "
                 "echo %.0f us: %.1fx, restoreView %.1fx",
                 readS.median * 1e6, readS.p25 * 1e6, readS.p75 * 1e6, viewS.median * 1e6,
                 echoS.median * 1e6, ratio, viewRatio);
}

}  // namespace refbench
