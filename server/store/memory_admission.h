// MemoryAdmission: memory for new values. A request gets shared memory at once when it fits and
// nobody waits ahead of it; otherwise it waits in the AdmissionQueue (fair between clients,
// with a deadline) while spilling makes room, or -- for values larger than the whole capacity,
// and large ones that do not fit now -- gets a file-backed allocation in the spill directory.
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
  // instead of waiting (0: capacity / 4).
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
  // Memory for each of `sizes` (Store.putMany), all or nothing: TOO_LARGE at once if together
  // they can never fit; otherwise as reserve() for each, failing as soon as one fails and
  // releasing those granted. Spilling is considered once for the whole batch.
  kj::Promise<kj::Array<kj::Own<Reservation>>> reserveMany(kj::ArrayPtr<const uint64_t> sizes,
                                                           kj::Duration timeout,
                                                           gc::ClientId client);

  // Memory was freed: serve waiting requests soon (not now: this runs from gc's reclaim
  // callback, which must not re-enter the table).
  void memoryFreed();

  const MemoryPolicy& memoryPolicy() const { return policy; }
  uint64_t bytesWanted() const { return queue.bytesWanted(); }  // by waiting requests
  size_t waiting() const { return queue.length(); }
  kj::Maybe<kj::TimePoint> oldestWaiterSince() const { return queue.oldestSince(); }
  uint64_t grantsTotal() const { return grants; }  // allocations made (Stats.putsTotal)

 private:
  kj::Promise<kj::Own<Reservation>> reserve(uint64_t size, kj::Duration timeout,
                                            gc::ClientId client, bool considerSpilling);
  kj::Maybe<kj::Own<Reservation>> reserveNow(uint64_t size, bool considerSpilling);
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
