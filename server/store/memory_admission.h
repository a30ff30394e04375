// MemoryAdmission: memory for new values. A request gets shared memory at once when it fits and
// nobody waits ahead of it; otherwise it waits in the AdmissionQueue (fair between clients,
// with a deadline; prefetches behind everything else) while spilling makes room, or -- for
// values larger than the whole capacity, and large ones that do not fit now -- gets a
// file-backed allocation in the spill directory. Local copies of other daemons' objects
// (reserveCopy) are the exception to the second rule: a copy that fits in shared memory waits
// for it, and spilling makes room by evicting other copies first (see reserveCopy).
// Whoever frees memory calls memoryFreed(), which serves the queue in a later turn.
#pragma once

#include <kj/async.h>
#include <kj/function.h>
#include <kj/timer.h>

#include "server/store/admission_queue.h"
#include "server/store/hash_scheduler.h"
#include "server/store/limits.h"
#include "server/store/object_memory.h"

namespace refstore::server {

// How the store behaves under memory pressure (see DESIGN.md "Memory pressure").
struct MemoryPolicy {
  double highWatermark = 0.90;  // start spilling when shared memory (plus waiting requests)
  double lowWatermark = 0.70;   // passes high, and stop once it is back under low
  kj::Duration defaultWait = 30 * kj::SECONDS;  // deadline of a request that sets none
  // Requests at least this large that do not fit now go straight to a file-backed allocation
  // instead of waiting (0: capacity / 4). Not local copies of other daemons' objects
  // (MemoryAdmission::reserveCopy).
  uint64_t fileBackedThreshold = 0;
};

class MemoryAdmission {
 public:
  // `afterAllocate` runs after every allocation of shared memory (the daemon refills its
  // pre-faulted spare); `demandChanged` whenever more memory is wanted or the queue was served
  // (the store considers spilling).
  MemoryAdmission(ObjectMemory& memory, HashScheduler& hashes, kj::Timer& timer,
                  MemoryPolicy policy, const Limits& limits, kj::Function<void()> afterAllocate,
                  kj::Function<void()> demandChanged);
  KJ_DISALLOW_COPY(MemoryAdmission);

  // Memory for `size` bytes for `client`: now if it fits; else after waiting in the queue
  // until `timeout` (0: the policy's default); else OUT_OF_MEMORY. Throws INVALID_ARGUMENT (0
  // bytes), TOO_LARGE (can never fit), RESOURCE_EXHAUSTED (the client has too many waiting),
  // OUT_OF_DISK (a file-backed allocation failed).
  kj::Promise<kj::Own<Reservation>> reserve(uint64_t size, kj::Duration timeout,
                                            gc::ClientId client);
  // Shared memory at once, when reserve() would grant it without waiting for anything; null
  // otherwise. For the request paths: a promise costs several heap allocations and event-loop
  // turns even when it is ready.
  kj::Maybe<kj::Own<Reservation>> reserveNow(uint64_t size);
  // Memory for a local copy of another daemon's object (a proxy's bytes), in the daemon's own
  // line (client 0) with the policy's default deadline. As reserve(), except:
  //   - a copy that fits in shared memory is never made file-backed, whatever its size: it
  //     waits while the spiller evicts other copies (the least recently used first, before any
  //     value is spilled). The owner holds the primary, so an evicted copy costs a copy again
  //     when next read, never a disk write; a file-backed copy would cost disk and page-cache
  //     traffic for a value that is already safe elsewhere. Copies larger than the whole
  //     capacity are still file-backed.
  //   - a PREFETCH copy (nobody reads it yet) waits behind every ordinary request (admission
  //     _queue.h) until `promotion` resolves: a reader wants it, and it is ordinary from then on.
  kj::Promise<kj::Own<Reservation>> reserveCopy(uint64_t size, Priority priority,
                                                kj::Maybe<kj::Promise<void>> promotion);
  // Memory for each of `sizes` (Store.putMany), all or nothing: TOO_LARGE at once if together
  // they can never fit; otherwise as reserve() for each, failing as soon as one fails and
  // releasing those granted. Spilling is considered once for the whole batch.
  kj::Promise<kj::Array<kj::Own<Reservation>>> reserveMany(kj::ArrayPtr<const uint64_t> sizes,
                                                           kj::Duration timeout,
                                                           gc::ClientId client);

  // Memory was freed, or a value became spillable (its last View went): serve waiting requests
  // and reconsider spilling soon (not now: this runs from gc's reclaim callback, which must not
  // re-enter the table).
  void memoryFreed();

  const MemoryPolicy& memoryPolicy() const { return policy; }
  uint64_t bytesWanted() const { return queue.bytesWanted(); }  // by waiting requests
  size_t waiting() const { return queue.length(); }
  size_t prefetchesWaiting() const { return queue.prefetchesWaiting(); }
  kj::Maybe<kj::TimePoint> oldestWaiterSince() const { return queue.oldestSince(); }
  uint64_t grantsTotal() const { return grants; }  // allocations made (Stats.putsTotal)

 private:
  // What one request asks for, beyond its size.
  struct Request {
    kj::Duration timeout;  // 0: the policy's default
    gc::ClientId client;
    bool considerSpilling = true;  // false: the caller does, once for a batch
    bool copy = false;             // a local copy of another daemon's object (reserveCopy)
    Priority priority = Priority::ORDINARY;
    kj::Maybe<kj::Promise<void>> promotion = nullptr;  // a PREFETCH becomes ORDINARY
  };
  kj::Promise<kj::Own<Reservation>> reserve(uint64_t size, Request request);
  kj::Maybe<kj::Own<Reservation>> reserveNow(uint64_t size, Priority priority,
                                             bool considerSpilling);
  kj::Maybe<kj::Own<Reservation>> tryReserveNow(uint64_t size);  // shared memory, no waiting
  kj::Own<Reservation> reserveFileBacked(uint64_t size);          // throws OUT_OF_DISK
  void pump();

  ObjectMemory& memory;
  HashScheduler& hashes;
  kj::Timer& timer;
  MemoryPolicy policy;
  AdmissionQueue queue;
  kj::Function<void()> afterAllocate;
  kj::Function<void()> demandChanged;
  bool pumpScheduled = false;
  uint64_t grants = 0;
  struct ErrorLogger: kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override;
  } errorLogger;
  kj::TaskSet tasks{errorLogger};
};

}  // namespace refstore::server
