// Admission control: allocations that do not fit wait here, first come first served, until
// memory is freed (references dropped, objects spilled) or their deadline passes. Nothing
// polls: whoever frees memory calls pump(), which serves waiters from the head while they fit.
// Strict FIFO, so a large request is never starved by a stream of small ones.
#pragma once

#include <kj/async.h>
#include <kj/function.h>
#include <kj/timer.h>

#include <list>

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
  explicit AdmissionQueue(kj::Timer& timer): timer(timer) {}

  // Resolves when pump() grants `size` bytes to this request, in arrival order; fails with
  // refstore.OUT_OF_MEMORY at `deadline`. Dropping the promise withdraws the request.
  kj::Promise<kj::Own<Reservation>> wait(uint64_t size, kj::TimePoint deadline);

  // Serves waiters from the head while `tryReserve` succeeds for them.
  void pump(kj::FunctionParam<kj::Maybe<kj::Own<Reservation>>(uint64_t)> tryReserve);

  bool empty() const;
  size_t length() const;
  uint64_t bytesWanted() const;                  // total size of the waiting requests
  kj::Maybe<kj::TimePoint> oldestSince() const;  // when the longest-waiting request arrived

 private:
  struct Waiter {
    uint64_t size;
    kj::TimePoint since;
    mutable kj::Own<kj::PromiseFulfiller<kj::Own<Reservation>>> fulfiller;
  };
  void prune() const;  // drops withdrawn and timed-out requests

  kj::Timer& timer;
  mutable std::list<Waiter> waiters;  // mutable: observers prune requests that went away
};

}  // namespace refstore::server
