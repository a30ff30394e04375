// Busy polling: after client traffic, keep the event loop spinning on epoll for a short window
// instead of sleeping in epoll_wait.
//
// Why: on virtual machines (and on idle bare-metal cores in deep C-states) waking a sleeping
// thread on another CPU costs far more than the work a small request needs. Measured on the
// 2-vCPU CI machine: a Unix-socket ping-pong takes ~120 us per round trip when both sides sleep
// between messages, ~24 us when the server spins, ~8 us when both do (BENCHMARKS.md, "Wakeups").
// A client doing back-to-back small operations sends its next request within microseconds of
// the previous reply, so a short spin catches it without any wakeup. Linux's SO_BUSY_POLL,
// DPDK and Seastar make the same trade: CPU for latency, bounded here by the window.
//
// The cost is at most `window` of one core after each burst of traffic; an idle daemon sleeps.
// `refstored --busy-poll-us 0` turns it off.
#pragma once

#include <kj/async.h>
#include <kj/function.h>
#include <kj/time.h>

namespace refstore::server {

class BusyPoll {
 public:
  // `window` of zero disables busy polling (activity() is then a no-op). While `othersNeedCpu`
  // returns true (e.g. pool threads are spilling or hashing) the loop does not spin: on a small
  // machine spinning would take the core they need.
  BusyPoll(kj::WaitScope& waitScope, kj::Duration window,
           kj::Function<bool()> othersNeedCpu = []() { return false; });
  KJ_DISALLOW_COPY(BusyPoll);

  // Client traffic arrived: keep spinning until `window` has passed without any.
  void activity();

  bool spinning() const { return isSpinning; }

 private:
  kj::Promise<void> spin();

  kj::WaitScope& waitScope;
  uint64_t windowNs;
  kj::Function<bool()> othersNeedCpu;
  uint64_t lastActivityNs = 0;
  bool isSpinning = false;
  uint64_t spinTurns = 0;
  kj::Promise<void> task = nullptr;
};

}  // namespace refstore::server
