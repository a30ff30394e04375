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
      queue(timer, limits.maxWaitingPerClient), afterAllocate(kj::mv(afterAllocate)),
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
  return reserve(size, timeout, client, /*considerSpilling=*/true);
}

kj::Maybe<kj::Own<Reservation>> MemoryAdmission::reserveNow(uint64_t size) {
  return reserveNow(size, /*considerSpilling=*/true);
}

kj::Maybe<kj::Own<Reservation>> MemoryAdmission::reserveNow(uint64_t size,
                                                            bool considerSpilling) {
  shm::Allocator& shared = memory.sharedMemory();
  if (size == 0 || size > shared.capacity() || !queue.empty()) return nullptr;
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

kj::Promise<kj::Own<Reservation>> MemoryAdmission::reserve(uint64_t size, kj::Duration timeout,
                                                           gc::ClientId client,
                                                           bool considerSpilling) {
  RS_REQUIRE(size > 0, INVALID_ARGUMENT, "object size must be at least 1 byte");
  RS_REQUIRE(size <= proto::MAX_OBJECT_BYTES, TOO_LARGE, "object of ", size,
             " bytes exceeds the limit of ", proto::MAX_OBJECT_BYTES, " bytes");
  KJ_IF_MAYBE(reservation, reserveNow(size, considerSpilling)) return kj::mv(*reservation);
  if (size > HashScheduler::kInlineBytes) {
    // Wait for cancelled hashes to free their values first (see reserveNow): drop-then-create
    // of the same size reuses the same memory.
    KJ_IF_MAYBE(stopping, hashes.whenCancelledHashesStop()) {
      // By then the batch (if any) has considered spilling: this one considers its own.
      return stopping->then(
          [this, size, timeout, client]() { return reserve(size, timeout, client); });
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
  if (disk && size >= threshold) return reserveFileBacked(size);
  if (timeout == 0 * kj::SECONDS) timeout = policy.defaultWait;
  auto waiting = queue.wait(size, timer.now() + timeout, client);
  if (considerSpilling) demandChanged();  // make room for it
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
    reservations.add(reserve(size, timeout, client, /*considerSpilling=*/false));
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
