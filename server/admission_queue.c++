#include "server/admission_queue.h"

#include "server/errors.h"

namespace refstore::server {

kj::Promise<kj::Own<Reservation>> AdmissionQueue::wait(uint64_t size, kj::TimePoint deadline) {
  auto paf = kj::newPromiseAndFulfiller<kj::Own<Reservation>>();
  kj::TimePoint since = timer.now();
  waiters.push_back(Waiter{size, since, kj::mv(paf.fulfiller)});
  return paf.promise.exclusiveJoin(
      timer.atTime(deadline).then([size, since, this]() -> kj::Own<Reservation> {
        RS_FAIL(OUT_OF_MEMORY, "waited ", (timer.now() - since) / kj::MILLISECONDS,
                " ms for ", size, " bytes of shared memory; the deadline passed (",
                length(), " other request(s) waiting)");
      }));
}

void AdmissionQueue::prune() const {
  // A request whose promise was dropped (deadline, or the caller went away) no longer waits.
  waiters.remove_if([](const Waiter& w) { return !w.fulfiller->isWaiting(); });
}

void AdmissionQueue::pump(
    kj::FunctionParam<kj::Maybe<kj::Own<Reservation>>(uint64_t)> tryReserve) {
  prune();
  while (!waiters.empty()) {
    Waiter& head = waiters.front();
    KJ_IF_MAYBE(reservation, tryReserve(head.size)) {
      head.fulfiller->fulfill(kj::mv(*reservation));
      waiters.pop_front();
    } else {
      return;  // strict FIFO: nobody overtakes the head
    }
  }
}

bool AdmissionQueue::empty() const {
  prune();
  return waiters.empty();
}

size_t AdmissionQueue::length() const {
  prune();
  return waiters.size();
}

uint64_t AdmissionQueue::bytesWanted() const {
  prune();
  uint64_t total = 0;
  for (auto& w: waiters) total += w.size;
  return total;
}

kj::Maybe<kj::TimePoint> AdmissionQueue::oldestSince() const {
  prune();
  if (waiters.empty()) return nullptr;
  return waiters.front().since;
}

}  // namespace refstore::server
