#include "server/runtime/busy_poll.h"

#include <sched.h>

#include <kj/time.h>

#include "schema/batching_message_stream.h"

namespace refstore::server {
namespace {

// While spinning, the loop polls epoll (without blocking) after every this many events (KJ's
// busy-poll interval), and the spinner yields its CPU once per this many of its own turns
// (about once per poll: a spinner turn is an event or two). A turn alone is ~100 ns and a
// yield ~0.6 us on the CI VM, so new traffic is still noticed within a few microseconds.
constexpr kj::uint kTurnsPerPoll = 8;

uint64_t monotonicNs() {  // clock_gettime through the vDSO: no system call
  return (kj::systemPreciseMonotonicClock().now() - kj::origin<kj::TimePoint>()) / kj::NANOSECONDS;
}

}  // namespace

BusyPoll::BusyPoll(kj::WaitScope& waitScope, kj::Duration window,
                   kj::Function<bool()> othersNeedCpu)
    : waitScope(waitScope), windowNs(window / kj::NANOSECONDS),
      othersNeedCpu(kj::mv(othersNeedCpu)) {}

void BusyPoll::activity() {
  if (windowNs == 0) return;
  lastActivityNs = monotonicNs();
  if (isSpinning) return;
  isSpinning = true;
  // Called from a stream's read continuation, never from the spinner's own: replacing `task`
  // here never destroys a running promise.
  waitScope.setBusyPollInterval(kTurnsPerPoll);
  task = spin().eagerlyEvaluate(nullptr);
}

kj::Promise<void> BusyPoll::spin() {
  // Each evalLast is one loop turn; between turns KJ polls epoll (setBusyPollInterval), so
  // arriving messages are handled while we spin. evalLast, not evalLater: the spinner runs only
  // when nothing else is queued, so it never delays real work. That is also the moment the
  // connections' batched replies should go out; their own evalLast flushes would wait behind
  // the re-armed spinner (KJ runs evalLast callbacks newest first), so the spinner sends them.
  // The chain stays constant-depth: each returned promise replaces the one before it.
  return kj::evalLast([this]() -> kj::Promise<void> {
    BatchingMessageStream::flushAll();
    // Give way, about once per epoll poll, to whatever else is runnable on this CPU. The scheduler
    // often wakes this thread on the CPU of the client whose request woke it, and that client
    // then waits there for the reply: without the yield it ran again only once the whole
    // window had passed. On the 2-vCPU VM the first request after idle time cost ~70 us more
    // with busy polling than without (refprobe after-idle, 0.14-0.16 ms against 0.07-0.09 ms;
    // both pinned to one CPU 0.17 against 0.10; on two CPUs no difference). With the yield it
    // takes 0.06-0.10 ms. (The client's busy poll yields on every poll.) The price: with other
    // threads runnable here the spinner may lose the CPU for a time slice, as it should.
    if (++spinTurns % kTurnsPerPoll == 0) sched_yield();
    if (monotonicNs() - lastActivityNs < windowNs && !othersNeedCpu()) return spin();
    isSpinning = false;
    waitScope.setBusyPollInterval(kj::maxValue);  // back to blocking in epoll_wait
    return kj::READY_NOW;
  });
}

}  // namespace refstore::server
