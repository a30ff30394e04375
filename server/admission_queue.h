// Admission control: allocations that do not fit wait here until memory is freed (references
// dropped, objects spilled) or their deadline passes. Nothing polls: whoever frees memory calls
// pump(), which grants requests while they fit.
//
// Fair between clients: each connection's requests wait in its own first-come-first-served
// line, and the lines take turns, one request each (round robin). So one client's backlog of
// 10,000 large creates delays another client's small put by at most one of them, not all
// 10,000; and within the turn order nobody overtakes the request whose turn it is, so a large
// request is never starved by a stream of small ones. A client may have at most
// `maxWaitingPerClient` requests waiting; more fail at once with RESOURCE_EXHAUSTED.
//
// A request whose promise is dropped (its caller went away, or gave up) leaves its line at
// once, in O(1).
#pragma once

#include <kj/async.h>
#include <kj/function.h>
#include <kj/timer.h>

#include <list>
#include <map>

#include "gc/object_table.h"
#include "server/shm/allocator.h"

namespace refstore::server {

// An allocation not yet owned by an object. Released on destruction unless taken, so a
// request cancelled after memory was granted to it (client gone) cannot leak that memory.
class Reservation {
 public:
  Reservation(shm::Allocator& allocator, shm::Allocation allocation)
      : allocator(allocator), allocation(allocation) {}
  ~Reservation() noexcept(false) {
    if (!taken) allocator.release(allocation);
  }
  KJ_DISALLOW_COPY(Reservation);

  const shm::Allocation& get() const { return allocation; }
  shm::Allocation take() {
    taken = true;
    return allocation;
  }

 private:
  shm::Allocator& allocator;
  shm::Allocation allocation;
  bool taken = false;
};

class AdmissionQueue {
 public:
  AdmissionQueue(kj::Timer& timer, uint32_t maxWaitingPerClient)
      : timer(timer), maxWaitingPerClient(maxWaitingPerClient) {}
  ~AdmissionQueue() noexcept(false);
  KJ_DISALLOW_COPY(AdmissionQueue);

  // Resolves when pump() grants `size` bytes to this request of `client`; fails with
  // refstore.OUT_OF_MEMORY at `deadline`. Dropping the promise withdraws the request. Throws
  // RESOURCE_EXHAUSTED if `client` already has maxWaitingPerClient requests waiting.
  kj::Promise<kj::Own<Reservation>> wait(uint64_t size, kj::TimePoint deadline,
                                         gc::ClientId client);

  // Grants waiting requests, lines taking turns, while `tryReserve` succeeds for the request
  // whose turn it is.
  void pump(kj::FunctionParam<kj::Maybe<kj::Own<Reservation>>(uint64_t)> tryReserve);

  bool empty() const { return waiting == 0; }
  size_t length() const { return waiting; }
  uint64_t bytesWanted() const { return wanted; }  // total size of the waiting requests
  kj::Maybe<kj::TimePoint> oldestSince() const;    // when the longest-waiting request arrived
  size_t waitingFor(gc::ClientId client) const;     // requests of one client

 private:
  class Waiter;  // the promise adapter of one request: in its client's line and in `arrivals`
  struct Line {
    std::list<Waiter*> waiters;         // this client's requests, first come first
    std::list<gc::ClientId>::iterator turn;  // its place in `turns`
  };
  void link(Waiter& waiter);
  void unlink(Waiter& waiter);

  kj::Timer& timer;
  const uint32_t maxWaitingPerClient;
  std::map<gc::ClientId, Line> lines;  // clients with requests waiting
  std::list<gc::ClientId> turns;       // those clients, the next to be served first
  std::list<Waiter*> arrivals;         // every request, oldest first (for oldestSince)
  size_t waiting = 0;
  uint64_t wanted = 0;
};

}  // namespace refstore::server
