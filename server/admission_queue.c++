#include "server/admission_queue.h"

#include "server/errors.h"

namespace refstore::server {

class AdmissionQueue::Waiter {
 public:
  Waiter(kj::PromiseFulfiller<kj::Own<Reservation>>& fulfiller, AdmissionQueue& queue,
         uint64_t size, kj::TimePoint since, gc::ClientId client)
      : fulfiller(fulfiller), queue(queue), size(size), since(since), client(client) {
    queue.link(*this);
  }
  ~Waiter() {
    if (linked) queue.unlink(*this);
  }
  KJ_DISALLOW_COPY(Waiter);

  void grant(kj::Own<Reservation> reservation) {
    queue.unlink(*this);
    fulfiller.fulfill(kj::mv(reservation));
  }

  kj::PromiseFulfiller<kj::Own<Reservation>>& fulfiller;
  AdmissionQueue& queue;
  const uint64_t size;
  const kj::TimePoint since;
  const gc::ClientId client;
  bool linked = false;
  std::list<Waiter*>::iterator inLine, inArrivals;
};

AdmissionQueue::~AdmissionQueue() noexcept(false) {
  // Requests still waiting belong to promises that outlive nothing of ours: detach them.
  for (Waiter* waiter: arrivals) waiter->linked = false;
}

void AdmissionQueue::link(Waiter& waiter) {
  auto inserted = lines.try_emplace(waiter.client);
  Line& line = inserted.first->second;
  if (inserted.second) line.turn = turns.insert(turns.end(), waiter.client);
  waiter.inLine = line.waiters.insert(line.waiters.end(), &waiter);
  waiter.inArrivals = arrivals.insert(arrivals.end(), &waiter);
  waiter.linked = true;
  waiting++;
  wanted += waiter.size;
}

void AdmissionQueue::unlink(Waiter& waiter) {
  auto found = lines.find(waiter.client);
  Line& line = found->second;
  line.waiters.erase(waiter.inLine);
  arrivals.erase(waiter.inArrivals);
  if (line.waiters.empty()) {
    turns.erase(line.turn);
    lines.erase(found);
  }
  waiter.linked = false;
  waiting--;
  wanted -= waiter.size;
}

kj::Promise<kj::Own<Reservation>> AdmissionQueue::wait(uint64_t size, kj::TimePoint deadline,
                                                       gc::ClientId client) {
  RS_REQUIRE(waitingFor(client) < maxWaitingPerClient, RESOURCE_EXHAUSTED, "this connection has ",
             maxWaitingPerClient, " requests waiting for memory, the limit per connection: ",
             "wait for some to finish");
  kj::TimePoint since = timer.now();
  auto granted = kj::newAdaptedPromise<kj::Own<Reservation>, Waiter>(*this, size, since, client);
  return granted.exclusiveJoin(
      timer.atTime(deadline).then([size, since, this]() -> kj::Own<Reservation> {
        RS_FAIL(OUT_OF_MEMORY, "waited ", (timer.now() - since) / kj::MILLISECONDS,
                " ms for ", size, " bytes of shared memory; the deadline passed (",
                length() > 0 ? length() - 1 : 0, " other request(s) waiting)");
      }));
}

void AdmissionQueue::pump(
    kj::FunctionParam<kj::Maybe<kj::Own<Reservation>>(uint64_t)> tryReserve) {
  while (!turns.empty()) {
    gc::ClientId next = turns.front();
    Waiter& head = *lines.find(next)->second.waiters.front();
    KJ_IF_MAYBE(reservation, tryReserve(head.size)) {
      // This client's turn is used: it goes to the back of the turn order (if it still waits).
      turns.splice(turns.end(), turns, turns.begin());
      head.grant(kj::mv(*reservation));
    } else {
      return;  // nobody overtakes the request whose turn it is
    }
  }
}

kj::Maybe<kj::TimePoint> AdmissionQueue::oldestSince() const {
  if (arrivals.empty()) return nullptr;
  return arrivals.front()->since;
}

size_t AdmissionQueue::waitingFor(gc::ClientId client) const {
  auto found = lines.find(client);
  return found == lines.end() ? 0 : found->second.waiters.size();
}

}  // namespace refstore::server
