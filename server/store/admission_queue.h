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
// Two classes, served strictly one after the other: ORDINARY requests (creates, puts, values
// read back from disk, copies a reader waits for) and PREFETCH ones (a copy of another host's
// value that nobody reads yet: Ref.prefetch). Each class has its own lines and turns, fair as
// above; a prefetch is granted only while no ordinary request waits at all -- not even one too
// large to fit now, which a prefetch taking memory would delay further. So a prefetch queued
// first is passed by every ordinary request queued after it. It is not starved forever: it
// waits until its deadline like any request and then fails with OUT_OF_MEMORY (Ref.prefetch:
// the copy is dropped; the next read copies again). A prefetch that a reader comes to want
// (its promotion resolves) moves to the back of its client's ordinary line and is served as a
// reader's copy from then on.
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

// Which requests go first (see the file comment).
enum class Priority { ORDINARY, PREFETCH };

class AdmissionQueue {
 public:
  // `promoted` runs when a waiting prefetch has become ordinary: it may be grantable now (the
  // owner of the queue pumps it soon).
  AdmissionQueue(kj::Timer& timer, uint32_t maxWaitingPerClient,
                 kj::Function<void()> promoted = []() {})
      : timer(timer), maxWaitingPerClient(maxWaitingPerClient), promoted(kj::mv(promoted)) {}
  ~AdmissionQueue() noexcept(false);
  KJ_DISALLOW_COPY(AdmissionQueue);

  // Resolves when pump() grants `size` bytes to this request of `client`; fails with
  // refstore.OUT_OF_MEMORY at `deadline`. Dropping the promise withdraws the request. Throws
  // RESOURCE_EXHAUSTED if `client` already has maxWaitingPerClient requests waiting (of both
  // classes). A PREFETCH request becomes ORDINARY when `promotion` resolves (a broken
  // `promotion` changes nothing).
  kj::Promise<kj::Own<Reservation>> wait(uint64_t size, kj::TimePoint deadline,
                                         gc::ClientId client,
                                         Priority priority = Priority::ORDINARY,
                                         kj::Maybe<kj::Promise<void>> promotion = nullptr);

  // Grants waiting requests, ordinary ones first, lines taking turns within each class, while
  // `tryReserve` succeeds for the request whose turn it is.
  void pump(kj::FunctionParam<kj::Maybe<kj::Own<Reservation>>(uint64_t)> tryReserve);

  // Whether a new request of `priority` would have to wait behind someone: any ordinary
  // request waits (for either class), or any prefetch waits (for a prefetch).
  bool anyoneAhead(Priority priority) const {
    return priority == Priority::ORDINARY ? ordinary.waiting > 0 : waiting > 0;
  }
  bool empty() const { return waiting == 0; }
  size_t length() const { return waiting; }
  size_t prefetchesWaiting() const { return prefetches.waiting; }
  uint64_t bytesWanted() const { return wanted; }  // total size of the waiting requests
  kj::Maybe<kj::TimePoint> oldestSince() const;    // when the longest-waiting request arrived
  size_t waitingFor(gc::ClientId client) const;     // requests of one client

 private:
  class Waiter;  // the promise adapter of one request: in its client's line and in `arrivals`
  struct Line {
    std::list<Waiter*> waiters;         // this client's requests, first come first
    std::list<gc::ClientId>::iterator turn;  // its place in its class's `turns`
  };
  struct Class {  // the requests of one priority
    std::map<gc::ClientId, Line> lines;  // clients with requests waiting
    std::list<gc::ClientId> turns;       // those clients, the next to be served first
    size_t waiting = 0;
  };
  Class& classOf(Priority priority) {
    return priority == Priority::ORDINARY ? ordinary : prefetches;
  }
  void joinLine(Waiter& waiter);   // the back of its client's line in its class
  void leaveLine(Waiter& waiter);
  void link(Waiter& waiter);       // a new request: in its line and in `arrivals`
  void unlink(Waiter& waiter);
  void promote(Waiter& waiter);  // a prefetch becomes ordinary
  // Grants requests of `requests` while they fit; false once the one whose turn it is does not.
  bool serve(Class& requests,
             kj::FunctionParam<kj::Maybe<kj::Own<Reservation>>(uint64_t)>& tryReserve);

  kj::Timer& timer;
  const uint32_t maxWaitingPerClient;
  kj::Function<void()> promoted;
  Class ordinary, prefetches;
  std::list<Waiter*> arrivals;         // every request, oldest first (for oldestSince)
  size_t waiting = 0;
  uint64_t wanted = 0;
};

}  // namespace refstore::server
