// ObjectStore under memory pressure: admission control, file-backed allocations, spilling the
// least recently used objects to disk and restoring them (verified) on access.
// (The rest of ObjectStore is in object_store.c++.)
#include <xxhash.h>

#include <algorithm>
#include <vector>

#include "server/errors.h"
#include "server/join.h"
#include "server/log.h"
#include "server/object_store.h"
#include "server/packed_location.h"
#include "server/size_parse.h"

namespace refstore::server {

// Segment ids at or above this belong to the file-backed allocator (see server/spill/).
constexpr uint32_t FILE_SEGMENT_BASE = 1u << 23;

void ObjectStore::ErrorLogger::taskFailed(kj::Exception&& e) {
  logError("background task failed: ", e.getDescription());
}

void ObjectStore::enableDisk(SpillStore& spillStore, shm::Allocator& fileAllocator) {
  spill = spillStore;
  files = fileAllocator;
}

shm::Allocator& ObjectStore::allocatorFor(uint32_t segmentId) const {
  if (segmentId >= FILE_SEGMENT_BASE) {
    KJ_IF_MAYBE(f, files) { return *f; }
  }
  return allocator;
}

void ObjectStore::release(uint64_t packed, uint64_t size) {
  uint32_t segmentId = segmentOf(packed);
  uint64_t offset = offsetOf(packed);
  auto& owner = allocatorFor(segmentId);
  auto& segment = owner.segment(segmentId);
  owner.release(shm::Allocation{segment.base() + offset, segmentId, offset, size});
}

// --- admission -------------------------------------------------------------------------

kj::Maybe<kj::Own<Reservation>> ObjectStore::tryReserveNow(uint64_t size) {
  KJ_IF_MAYBE(allocation, allocator.allocate(size)) {
    putsTotal++;
    KJ_IF_MAYBE(listener, afterAllocate) { (*listener)(); }
    return kj::heap<Reservation>(allocator, *allocation);
  }
  return nullptr;
}

kj::Own<Reservation> ObjectStore::reserveFileBacked(uint64_t size) {
  auto& fileAllocator = KJ_ASSERT_NONNULL(files);
  KJ_IF_MAYBE(allocation, fileAllocator.allocate(size)) {
    putsTotal++;
    return kj::heap<Reservation>(fileAllocator, *allocation);
  }
  RS_FAIL(OUT_OF_DISK, "no room for a file-backed object of ", size, " bytes");
}

kj::Promise<kj::Own<Reservation>> ObjectStore::reserve(uint64_t size, kj::Duration timeout,
                                                       gc::ClientId client) {
  return reserve(size, timeout, client, /*spillNow=*/true);
}

kj::Maybe<kj::Own<Reservation>> ObjectStore::reserveNow(uint64_t size) {
  return reserveNow(size, /*spillNow=*/true);
}

kj::Maybe<kj::Own<Reservation>> ObjectStore::reserveNow(uint64_t size, bool spillNow) {
  if (size == 0 || size > allocator.capacity() || !queue.empty()) return nullptr;
  // A large value dropped while its hash runs (after --hash-delay-ms, or after info()) is freed
  // when its cancelled hash stops (within one 1 MiB step): reserve() waits for that instead of
  // building a new segment beside memory that is about to come back.
  if (size > kHashInlineBytes && cancelledHashesRunning()) return nullptr;
  KJ_IF_MAYBE(reservation, tryReserveNow(size)) {  // nobody waits ahead of us
    if (spillNow) maybeSpill();
    return kj::mv(*reservation);
  }
  return nullptr;
}

kj::Promise<kj::Own<Reservation>> ObjectStore::reserve(uint64_t size, kj::Duration timeout,
                                                       gc::ClientId client, bool spillNow) {
  RS_REQUIRE(size > 0, INVALID_ARGUMENT, "object size must be at least 1 byte");
  RS_REQUIRE(size <= proto::MAX_OBJECT_BYTES, TOO_LARGE, "object of ", size,
             " bytes exceeds the limit of ", proto::MAX_OBJECT_BYTES, " bytes");
  KJ_IF_MAYBE(reservation, reserveNow(size, spillNow)) return kj::mv(*reservation);
  if (size > kHashInlineBytes) {
    // Wait for cancelled hashes to free their values first (see reserveNow): drop-then-create
    // of the same size reuses the same memory.
    KJ_IF_MAYBE(stopping, whenCancelledHashesStop()) {
      // By then the batch (if any) has started its spills: this one considers its own.
      return stopping->then(
          [this, size, timeout, client]() { return reserve(size, timeout, client); });
    }
  }
  bool disk = files != nullptr;
  if (size > allocator.capacity()) {
    RS_REQUIRE(disk, TOO_LARGE, "object of ", size, " bytes exceeds the store's whole capacity of ",
               allocator.capacity(), " bytes (and no spill directory is configured)");
    return reserveFileBacked(size);
  }
  uint64_t threshold =
      policy.fileBackedThreshold != 0 ? policy.fileBackedThreshold : allocator.capacity() / 4;
  if (disk && size >= threshold) return reserveFileBacked(size);
  if (timeout == 0 * kj::SECONDS) timeout = policy.defaultWait;
  auto waiting = queue.wait(size, timer.now() + timeout, client);
  if (spillNow) maybeSpill();  // make room for it
  return kj::mv(waiting);
}

void ObjectStore::schedulePump() {
  if (pumpScheduled) return;
  pumpScheduled = true;
  // Not inline: this runs from gc's reclaim callback, which must not re-enter the table.
  background.add(kj::evalLater([this]() {
    pumpScheduled = false;
    pumpQueue();
  }));
}

void ObjectStore::pumpQueue() {
  queue.pump([this](uint64_t size) { return tryReserveNow(size); });
  maybeSpill();
}

// --- spilling --------------------------------------------------------------------------

kj::Promise<kj::Array<kj::Own<Reservation>>> ObjectStore::reserveMany(
    kj::ArrayPtr<const uint64_t> sizes, kj::Duration timeout, gc::ClientId client) {
  uint64_t total = 0;
  for (uint64_t size: sizes) total += size;
  RS_REQUIRE(total <= allocator.capacity() || files != nullptr, TOO_LARGE, "a batch of ", total,
             " bytes exceeds the store's whole capacity of ", allocator.capacity(),
             " bytes (and no spill directory is configured)");
  auto reservations = kj::heapArrayBuilder<kj::Promise<kj::Own<Reservation>>>(sizes.size());
  for (uint64_t size: sizes) {
    reservations.add(reserve(size, timeout, client, /*spillNow=*/false));
  }
  maybeSpill();
  return joinFailFast(reservations.finish());
}

void ObjectStore::maybeSpill() {
  if (spill == nullptr) return;
  uint64_t capacity = allocator.capacity();
  uint64_t demand = allocator.bytesAllocated() + queue.bytesWanted();
  uint64_t high = capacity * policy.highWatermark, low = capacity * policy.lowWatermark;
  if (!spilling) {
    if (demand <= high) return;
    spilling = true;
    logInfo("spilling started: ", formatSize(allocator.bytesAllocated()), " in memory + ",
            formatSize(queue.bytesWanted()), " requested, above the high watermark of ",
            formatSize(high));
  }
  if (demand <= low && spillInFlightBytes == 0) {
    spilling = false;
    logInfo("spilling stopped: ", formatSize(allocator.bytesAllocated()), " in memory, ",
            formatSize(KJ_ASSERT_NONNULL(spill).bytesOnDisk()), " on disk");
    return;
  }
  if (demand <= low + spillInFlightBytes) return;  // enough is already on its way out
  uint64_t toFree = demand - low - spillInFlightBytes;

  // Least recently used first, among objects that can move: sealed, own bytes in shared
  // memory (not file-backed), and pinned by no View.
  struct Candidate {
    gc::MonoMillis used;
    gc::ObjectId id;
    uint64_t size;
  };
  std::vector<Candidate> candidates;
  objects.forEach([&](const gc::ObjectRecord& r) {
    if (r.state != gc::ObjectState::SEALED || r.alias || r.dead || r.pins > 0) return;
    if (segmentOf(r.userData) >= FILE_SEGMENT_BASE) return;
    gc::MonoMillis used = r.createdAt;
    KJ_IF_MAYBE(t, lastUsed.find(r.id.lo)) { used = *t; }
    candidates.push_back({used, r.id, r.size});
  });
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) { return a.used < b.used; });
  uint64_t chosen = 0;
  for (auto& candidate: candidates) {
    if (chosen >= toFree) break;
    startSpill(candidate.id);
    chosen += candidate.size;
  }
}

void ObjectStore::startSpill(gc::ObjectId id) {
  // The pin keeps the bytes in place (and the object from being reclaimed) while a pool
  // thread writes them out.
  KJ_ASSERT(objects.pin(id));
  const gc::ObjectRecord& object = *objects.find(id);
  uint64_t size = object.size;
  spillInFlightBytes += size;
  kj::ArrayPtr<const kj::byte> data = memoryOf(object);  // not bytes(): spilling is no "use"
  // Restoring checks the bytes against the hash: a value whose hash was still deferred is
  // hashed now, before its bytes leave memory. (evalNow: if that throws, the error branch below
  // still unpins.) A value left without a hash (its hashing failed) stays in memory: written
  // out, it could never be read back.
  background.add(kj::evalNow([&]() { return whenHashed(id); }).then([this, id, data]() {
    const gc::ObjectRecord& hashed = *objects.find(id);  // our pin keeps it in the table
    KJ_REQUIRE(hashed.dead || hashed.hashHi != 0 || hashed.hashLo != 0,
               "it has no hash to check it against when it comes back");
    return KJ_ASSERT_NONNULL(spill).write(data);
  }).then(
      [this, id](SpillLocation where) { finishSpill(id, where); },
      [this, id, size](kj::Exception&& e) {
        spillInFlightBytes -= size;
        counters.spillFailures++;
        objects.unpin(id);
        logWarning("could not spill ", gc::toHex(id).c_str(), ": ", e.getDescription());
      }));
}

void ObjectStore::finishSpill(gc::ObjectId id, SpillLocation where) {
  auto& disk = KJ_ASSERT_NONNULL(spill);
  const gc::ObjectRecord* object = objects.find(id);
  KJ_ASSERT(object != nullptr);  // our pin kept it in the table
  spillInFlightBytes -= object->size;
  // Commit only if nobody else pinned it (a View taken meanwhile keeps it in memory) and it
  // still has references; otherwise the disk copy is simply dropped.
  if (object->dead || object->pins > 1) {
    disk.remove(where);
    objects.unpin(id);
    return;
  }
  uint64_t inMemory = object->userData;
  uint64_t size = object->size;
  KJ_ASSERT(objects.setSpilled(id, true, where.pack()));
  objects.unpin(id);
  release(inMemory, size);
  counters.spills++;
  counters.spilledBytes += size;
  schedulePump();
}

// --- restore ---------------------------------------------------------------------------

kj::Promise<void> ObjectStore::ensureResident(gc::ObjectId id) {
  const gc::ObjectRecord& object = record(id);
  if (object.state != gc::ObjectState::SPILLED) return kj::READY_NOW;
  KJ_IF_MAYBE(inProgress, restoring.find(id.lo)) { return inProgress->addBranch(); }
  auto forked = restore(id).fork();
  auto branch = forked.addBranch();
  restoring.insert(id.lo, kj::mv(forked));
  return kj::mv(branch);
}

kj::Promise<void> ObjectStore::restore(gc::ObjectId id) {
  KJ_ASSERT(objects.pin(id));  // keeps it from being reclaimed while we read it back
  uint64_t size = objects.find(id)->size;
  auto unpinAndForget = [this, id]() {
    restoring.erase(id.lo);
    objects.unpin(id);
  };
  // Restores wait in a line of their own (client 0: the daemon's), taking turns with clients'.
  return reserve(size, policy.defaultWait, /*client=*/0)
      .then([this, id](kj::Own<Reservation> memory) {
        const gc::ObjectRecord& object = *objects.find(id);
        SpillLocation where = SpillLocation::unpack(object.userData, object.size);
        auto target = kj::arrayPtr(memory->get().ptr, object.size);
        return KJ_ASSERT_NONNULL(spill)
            .read(where, target)
            .then([this, target]() { return hashOf(target); })
            .then([this, id, where, memory = kj::mv(memory)](XXH128_hash_t hash) mutable {
              const gc::ObjectRecord& object = *objects.find(id);
              RS_REQUIRE(hash.high64 == object.hashHi && hash.low64 == object.hashLo, CORRUPTED,
                         "object ", gc::toHex(id).c_str(), " read back from ",
                         KJ_ASSERT_NONNULL(spill).pathOf(where.fileId),
                         " does not match its XXH3-128 hash");
              if (object.dead) return;  // nobody wants it any more; the reservation frees
              auto allocation = memory->take();
              KJ_ASSERT(objects.setSpilled(
                  id, false, packLocation(allocation.segmentId, allocation.offset)));
              KJ_ASSERT_NONNULL(spill).remove(where);
              counters.restores++;
              counters.restoredBytes += object.size;
            });
      })
      .then([unpinAndForget]() mutable { unpinAndForget(); },
            [unpinAndForget](kj::Exception&& e) mutable {
              unpinAndForget();
              kj::throwFatalException(kj::mv(e));
            });
}

// --- stats -----------------------------------------------------------------------------

void ObjectStore::fillMemoryStats(proto::Stats::Builder stats) const {
  stats.setSpilledBytes(spill == nullptr ? 0 : KJ_ASSERT_NONNULL(spill).bytesOnDisk());
  stats.setSpillFiles(spill == nullptr ? 0 : KJ_ASSERT_NONNULL(spill).fileCount());
  stats.setSpillsTotal(counters.spills);
  stats.setSpilledBytesTotal(counters.spilledBytes);
  stats.setRestoresTotal(counters.restores);
  stats.setRestoredBytesTotal(counters.restoredBytes);
  stats.setSpillFailuresTotal(counters.spillFailures);
  stats.setFileBackedBytes(files == nullptr ? 0 : KJ_ASSERT_NONNULL(files).bytesAllocated());
  stats.setQueueLength(queue.length());
  KJ_IF_MAYBE(since, queue.oldestSince()) {
    stats.setOldestWaiterMs((timer.now() - *since) / kj::MILLISECONDS);
  }
}

}  // namespace refstore::server
