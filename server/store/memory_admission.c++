#include "server/store/memory_admission.h"

#include "schema/refstore.capnp.h"
#include "server/runtime/errors.h"
#include "server/runtime/log.h"
#include "server/runtime/join.h"

namespace refstore::server {

void MemoryAdmission::ErrorLogger::taskFailed(kj::Exception&& e) {
  logError("admission task failed: ", e.getDescription());
}

MemoryAdmission::MemoryAdmission(ObjectMemory& memory, HashScheduler& hashes, kj::Timer& timer,
                                 MemoryPolicy policy, const Limits& limits,
                                 kj::Function<void()> afterAllocate,
                                 kj::Function<void()> demandChanged)
    : memory(memory), hashes(hashes), timer(timer), policy(policy),
      queue(timer, limits.maxWaitingPerClient, [this]() { memoryFreed(); }),
      afterAllocate(kj::mv(afterAllocate)),
      demandChanged(kj::mv(demandChanged)) {}

kj::Maybe<kj::Own<Reservation>> MemoryAdmission::tryReserveNow(uint64_t size) {
  shm::Allocator& shared = memory.sharedMemory();
  KJ_IF_MAYBE(allocation, shared.allocate(size)) {
    grants++;
    afterAllocate();
    return kj::heap<Reservation>(shared, *allocation);
  }
  return nullptr;
}

kj::Own<Reservation> MemoryAdmission::reserveFileBacked(uint64_t size) {
  auto& files = KJ_ASSERT_NONNULL(memory.fileBacked());
  KJ_IF_MAYBE(allocation, files.allocate(size)) {
    grants++;
    return kj::heap<Reservation>(files, *allocation);
  }
  RS_FAIL(OUT_OF_DISK, "no room for a file-backed object of ", size, " bytes");
}

kj::Promise<kj::Own<Reservation>> MemoryAdmission::reserve(uint64_t size, kj::Duration timeout,
                                                           gc::ClientId client) {
  return reserve(size, Request{timeout, client});
}

kj::Promise<kj::Own<Reservation>> MemoryAdmission::reserveCopy(
    uint64_t size, Priority priority, kj::Maybe<kj::Promise<void>> promotion) {
  Request request{0 * kj::SECONDS, /*client=*/0};
  request.copy = true;
  request.priority = priority;
  request.promotion = kj::mv(promotion);
  return reserve(size, kj::mv(request));
}

kj::Maybe<kj::Own<Reservation>> MemoryAdmission::reserveNow(uint64_t size) {
  return reserveNow(size, Priority::ORDINARY, /*considerSpilling=*/true);
}

kj::Maybe<kj::Own<Reservation>> MemoryAdmission::reserveNow(uint64_t size, Priority priority,
                                                            bool considerSpilling) {
  shm::Allocator& shared = memory.sharedMemory();
  // Waiting prefetches do not hold up an ordinary request; anyone waiting holds up a prefetch.
  if (size == 0 || size > shared.capacity() || queue.anyoneAhead(priority)) return nullptr;
  // A large value dropped while its hash runs (after --hash-delay-ms, or after info()) is freed
  // when its cancelled hash stops (within one 1 MiB step): reserve() waits for that instead of
  // building a new segment beside memory that is about to come back.
  if (size > HashScheduler::kInlineBytes && hashes.cancelledHashesRunning()) return nullptr;
  KJ_IF_MAYBE(reservation, tryReserveNow(size)) {  // nobody waits ahead of us
    if (considerSpilling) demandChanged();
    return kj::mv(*reservation);
  }
  return nullptr;
}

kj::Promise<kj::Own<Reservation>> MemoryAdmission::reserve(uint64_t size, Request request) {
  RS_REQUIRE(size > 0, INVALID_ARGUMENT, "object size must be at least 1 byte");
  RS_REQUIRE(size <= proto::MAX_OBJECT_BYTES, TOO_LARGE, "object of ", size,
             " bytes exceeds the limit of ", proto::MAX_OBJECT_BYTES, " bytes");
  KJ_IF_MAYBE(reservation, reserveNow(size, request.priority, request.considerSpilling)) {
    return kj::mv(*reservation);
  }
  if (size > HashScheduler::kInlineBytes) {
    // Wait for cancelled hashes to free their values first (see reserveNow): drop-then-create
    // of the same size reuses the same memory.
    KJ_IF_MAYBE(stopping, hashes.whenCancelledHashesStop()) {
      // By then the batch (if any) has considered spilling: this one considers its own.
      request.considerSpilling = true;
      return stopping->then([this, size, request = kj::mv(request)]() mutable {
        return reserve(size, kj::mv(request));
      });
    }
  }
  uint64_t capacity = memory.sharedMemory().capacity();
  bool disk = memory.fileBacked() != nullptr;
  if (size > capacity) {
    RS_REQUIRE(disk, TOO_LARGE, "object of ", size, " bytes exceeds the store's whole capacity of ",
               capacity, " bytes (and no spill directory is configured)");
    return reserveFileBacked(size);
  }
  uint64_t threshold =
      policy.fileBackedThreshold != 0 ? policy.fileBackedThreshold : capacity / 4;
  if (disk && size >= threshold && !request.copy) return reserveFileBacked(size);
  kj::Duration timeout = request.timeout == 0 * kj::SECONDS ? policy.defaultWait : request.timeout;
  auto waiting = queue.wait(size, timer.now() + timeout, request.client, request.priority,
                            kj::mv(request.promotion));
  if (request.considerSpilling) demandChanged();  // make room for it
  return kj::mv(waiting);
}

kj::Promise<kj::Array<kj::Own<Reservation>>> MemoryAdmission::reserveMany(
    kj::ArrayPtr<const uint64_t> sizes, kj::Duration timeout, gc::ClientId client) {
  uint64_t total = 0;
  for (uint64_t size: sizes) total += size;
  uint64_t capacity = memory.sharedMemory().capacity();
  RS_REQUIRE(total <= capacity || memory.fileBacked() != nullptr, TOO_LARGE, "a batch of ",
             total, " bytes exceeds the store's whole capacity of ", capacity,
             " bytes (and no spill directory is configured)");
  auto reservations = kj::heapArrayBuilder<kj::Promise<kj::Own<Reservation>>>(sizes.size());
  for (uint64_t size: sizes) {
    Request request{timeout, client};
    request.considerSpilling = false;
    reservations.add(reserve(size, kj::mv(request)));
  }
  demandChanged();
  return joinFailFast(reservations.finish());
}

void MemoryAdmission::memoryFreed() {
  if (pumpScheduled) return;
  pumpScheduled = true;
  tasks.add(kj::evalLater([this]() {
    pumpScheduled = false;
    pump();
  }));
}

void MemoryAdmission::pump() {
  queue.pump([this](uint64_t size) { return tryReserveNow(size); });
  demandChanged();
}

}  // namespace refstore::server
