#include "server/store/admission_queue.h"

#include "server/runtime/errors.h"

namespace refstore::server {

class AdmissionQueue::Waiter {
 public:
  Waiter(kj::PromiseFulfiller<kj::Own<Reservation>>& fulfiller, AdmissionQueue& queue,
         uint64_t size, kj::TimePoint since, gc::ClientId client, Priority priority,
         kj::Maybe<kj::Promise<void>> promotion)
      : fulfiller(fulfiller), queue(queue), size(size), since(since), client(client),
        priority(priority) {
    queue.link(*this);
    KJ_IF_MAYBE(p, promotion) {
      if (priority == Priority::PREFETCH) {
        // Cancelled with the request; a promotion that breaks (its fulfiller dropped) means
        // nobody came to want it: it stays a prefetch.
        promoting = p->then([this]() { this->queue.promote(*this); }, [](kj::Exception&&) {})
                        .eagerlyEvaluate(nullptr);
      }
    }
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
  Priority priority;
  bool linked = false;
  std::list<Waiter*>::iterator inLine, inArrivals;
  kj::Promise<void> promoting = nullptr;
};

AdmissionQueue::~AdmissionQueue() noexcept(false) {
  // Requests still waiting belong to promises that outlive nothing of ours: detach them.
  for (Waiter* waiter: arrivals) waiter->linked = false;
}

void AdmissionQueue::joinLine(Waiter& waiter) {
  Class& requests = classOf(waiter.priority);
  auto inserted = requests.lines.try_emplace(waiter.client);
  Line& line = inserted.first->second;
  if (inserted.second) line.turn = requests.turns.insert(requests.turns.end(), waiter.client);
  waiter.inLine = line.waiters.insert(line.waiters.end(), &waiter);
  requests.waiting++;
}

void AdmissionQueue::leaveLine(Waiter& waiter) {
  Class& requests = classOf(waiter.priority);
  auto found = requests.lines.find(waiter.client);
  Line& line = found->second;
  line.waiters.erase(waiter.inLine);
  if (line.waiters.empty()) {
    requests.turns.erase(line.turn);
    requests.lines.erase(found);
  }
  requests.waiting--;
}

void AdmissionQueue::link(Waiter& waiter) {
  joinLine(waiter);
  waiter.inArrivals = arrivals.insert(arrivals.end(), &waiter);
  waiter.linked = true;
  waiting++;
  wanted += waiter.size;
}

void AdmissionQueue::unlink(Waiter& waiter) {
  leaveLine(waiter);
  arrivals.erase(waiter.inArrivals);
  waiter.linked = false;
  waiting--;
  wanted -= waiter.size;
}

void AdmissionQueue::promote(Waiter& waiter) {
  if (!waiter.linked || waiter.priority == Priority::ORDINARY) return;
  // To the back of its client's ordinary line; it keeps its place among the arrivals.
  leaveLine(waiter);
  waiter.priority = Priority::ORDINARY;
  joinLine(waiter);
  promoted();
}

kj::Promise<kj::Own<Reservation>> AdmissionQueue::wait(uint64_t size, kj::TimePoint deadline,
                                                       gc::ClientId client, Priority priority,
                                                       kj::Maybe<kj::Promise<void>> promotion) {
  RS_REQUIRE(waitingFor(client) < maxWaitingPerClient, RESOURCE_EXHAUSTED, "this connection has ",
             maxWaitingPerClient, " requests waiting for memory, the limit per connection: ",
             "wait for some to finish");
  kj::TimePoint since = timer.now();
  auto granted = kj::newAdaptedPromise<kj::Own<Reservation>, Waiter>(*this, size, since, client,
                                                                     priority, kj::mv(promotion));
  return granted.exclusiveJoin(
      timer.atTime(deadline).then([size, since, this]() -> kj::Own<Reservation> {
        RS_FAIL(OUT_OF_MEMORY, "waited ", (timer.now() - since) / kj::MILLISECONDS,
                " ms for ", size, " bytes of shared memory; the deadline passed (",
                length() > 0 ? length() - 1 : 0, " other request(s) waiting)");
      }));
}

void AdmissionQueue::pump(
    kj::FunctionParam<kj::Maybe<kj::Own<Reservation>>(uint64_t)> tryReserve) {
  // Prefetches only once no ordinary request waits, even one too large for now.
  if (serve(ordinary, tryReserve)) serve(prefetches, tryReserve);
}

bool AdmissionQueue::serve(
    Class& requests, kj::FunctionParam<kj::Maybe<kj::Own<Reservation>>(uint64_t)>& tryReserve) {
  while (!requests.turns.empty()) {
    gc::ClientId next = requests.turns.front();
    Waiter& head = *requests.lines.find(next)->second.waiters.front();
    KJ_IF_MAYBE(reservation, tryReserve(head.size)) {
      // This client's turn is used: it goes to the back of the turn order (if it still waits).
      requests.turns.splice(requests.turns.end(), requests.turns, requests.turns.begin());
      head.grant(kj::mv(*reservation));
    } else {
      return false;  // nobody overtakes the request whose turn it is
    }
  }
  return true;
}

kj::Maybe<kj::TimePoint> AdmissionQueue::oldestSince() const {
  if (arrivals.empty()) return nullptr;
  return arrivals.front()->since;
}

size_t AdmissionQueue::waitingFor(gc::ClientId client) const {
  size_t count = 0;
  for (const Class* requests: {&ordinary, &prefetches}) {
    auto found = requests->lines.find(client);
    if (found != requests->lines.end()) count += found->second.waiters.size();
  }
  return count;
}

}  // namespace refstore::server
