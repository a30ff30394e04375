#include "server/store/spiller.h"

#include <algorithm>
#include <vector>

#include "server/runtime/errors.h"
#include "server/runtime/log.h"
#include "server/runtime/size_parse.h"
#include "server/store/packed_location.h"
#include "server/store/store_clock.h"

namespace refstore::server {

void Spiller::ErrorLogger::taskFailed(kj::Exception&& e) {
  logError("spill task failed: ", e.getDescription());
}

Spiller::Spiller(gc::ObjectTable& objects, ObjectMemory& memory, MemoryAdmission& admission,
                 HashScheduler& hashes, SpillStore& disk, kj::Timer& timer)
    : objects(objects), memory(memory), admission(admission), hashes(hashes), disk(disk),
      timer(timer) {}

void Spiller::used(gc::ObjectId id) {
  lastUsed.upsert(id.lo, monoMillis(timer),
                  [](gc::MonoMillis& old, gc::MonoMillis now) { old = now; });
}

void Spiller::reclaimed(const gc::ObjectRecord& object) {
  if (object.state == gc::ObjectState::SPILLED) {
    disk.remove(SpillLocation::unpack(object.userData, object.size));
  }
  lastUsed.erase(object.id.lo);
}

void Spiller::maybeSpill() {
  const shm::Allocator& shared = memory.sharedMemory();
  const MemoryPolicy& policy = admission.memoryPolicy();
  uint64_t capacity = shared.capacity();
  uint64_t demand = shared.bytesAllocated() + admission.bytesWanted();
  uint64_t high = capacity * policy.highWatermark, low = capacity * policy.lowWatermark;
  if (!spilling) {
    if (demand <= high) return;
    spilling = true;
    logInfo("spilling started: ", formatSize(shared.bytesAllocated()), " in memory + ",
            formatSize(admission.bytesWanted()), " requested, above the high watermark of ",
            formatSize(high));
  }
  if (demand <= low && inFlightBytes == 0) {
    spilling = false;
    logInfo("spilling stopped: ", formatSize(shared.bytesAllocated()), " in memory, ",
            formatSize(disk.bytesOnDisk()), " on disk");
    return;
  }
  if (demand <= low + inFlightBytes) return;  // enough is already on its way out
  uint64_t toFree = demand - low - inFlightBytes;

  // Least recently used first, among objects that can move: sealed, own bytes in shared
  // memory (not file-backed), and pinned by no View. Local copies of other daemons' objects
  // (proxies) go first, and are dropped rather than written out: their owner has the value.
  struct Candidate {
    bool secondary;  // a proxy's local copy
    gc::MonoMillis used;
    gc::ObjectId id;
    uint64_t size;
  };
  std::vector<Candidate> candidates;
  objects.forEach([&](const gc::ObjectRecord& r) {
    if (r.dead || r.pins > 0) return;
    bool secondary = r.state == gc::ObjectState::REMOTE && r.bytesLocal;
    if (!secondary && (r.state != gc::ObjectState::SEALED || r.alias)) return;
    if (ObjectMemory::isFileBacked(r.userData)) return;
    gc::MonoMillis used = r.createdAt;
    KJ_IF_MAYBE(t, lastUsed.find(r.id.lo)) { used = *t; }
    candidates.push_back({secondary, used, r.id, r.size});
  });
  std::sort(candidates.begin(), candidates.end(), [](const Candidate& a, const Candidate& b) {
    return a.secondary != b.secondary ? a.secondary : a.used < b.used;
  });
  uint64_t chosen = 0;
  for (auto& candidate: candidates) {
    if (chosen >= toFree) break;
    if (candidate.secondary) {
      evict(candidate.id);
    } else {
      startSpill(candidate.id);
    }
    chosen += candidate.size;
  }
}

void Spiller::evict(gc::ObjectId id) {
  const gc::ObjectRecord& proxy = *objects.find(id);
  uint64_t packed = proxy.userData, size = proxy.size;
  if (!objects.clearProxyBytes(id)) return;
  memory.release(packed, size);
  totals.evictions++;
  totals.evictedBytes += size;
  admission.memoryFreed();
}

void Spiller::startSpill(gc::ObjectId id) {
  // The pin keeps the bytes in place (and the object from being reclaimed) while a pool
  // thread writes them out.
  KJ_ASSERT(objects.pin(id));
  const gc::ObjectRecord& object = *objects.find(id);
  uint64_t size = object.size;
  inFlightBytes += size;
  kj::ArrayPtr<const kj::byte> data = memory.bytesOf(object);  // spilling is no "use"
  // Restoring checks the bytes against the hash: a value whose hash was still deferred is
  // hashed now, before its bytes leave memory. (evalNow: if that throws, the error branch below
  // still unpins.) A value left without a hash (its hashing failed) stays in memory: written
  // out, it could never be read back.
  tasks.add(kj::evalNow([&]() { return hashes.whenHashed(id); }).then([this, id, data]() {
    const gc::ObjectRecord& hashed = *objects.find(id);  // our pin keeps it in the table
    KJ_REQUIRE(hashed.dead || hashed.hashHi != 0 || hashed.hashLo != 0,
               "it has no hash to check it against when it comes back");
    return disk.write(data);
  }).then(
      [this, id](SpillLocation where) { finishSpill(id, where); },
      [this, id, size](kj::Exception&& e) {
        inFlightBytes -= size;
        totals.spillFailures++;
        objects.unpin(id);
        logWarning("could not spill ", gc::toHex(id).c_str(), ": ", e.getDescription());
      }));
}

void Spiller::finishSpill(gc::ObjectId id, SpillLocation where) {
  const gc::ObjectRecord* object = objects.find(id);
  KJ_ASSERT(object != nullptr);  // our pin kept it in the table
  inFlightBytes -= object->size;
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
  memory.release(inMemory, size);
  totals.spills++;
  totals.spilledBytes += size;
  admission.memoryFreed();
}

kj::Promise<void> Spiller::ensureResident(gc::ObjectId id) {
  const gc::ObjectRecord* object = objects.find(id);
  if (object == nullptr || object->state != gc::ObjectState::SPILLED) return kj::READY_NOW;
  KJ_IF_MAYBE(inProgress, restoring.find(id.lo)) { return inProgress->addBranch(); }
  auto forked = restore(id).fork();
  auto branch = forked.addBranch();
  restoring.insert(id.lo, kj::mv(forked));
  return kj::mv(branch);
}

kj::Promise<void> Spiller::restore(gc::ObjectId id) {
  KJ_ASSERT(objects.pin(id));  // keeps it from being reclaimed while we read it back
  uint64_t size = objects.find(id)->size;
  auto unpinAndForget = [this, id]() {
    restoring.erase(id.lo);
    objects.unpin(id);
  };
  // Restores wait in a line of their own (client 0: the daemon's), taking turns with clients'.
  return admission.reserve(size, admission.memoryPolicy().defaultWait, /*client=*/0)
      .then([this, id](kj::Own<Reservation> reserved) {
        const gc::ObjectRecord& object = *objects.find(id);
        SpillLocation where = SpillLocation::unpack(object.userData, object.size);
        auto target = kj::arrayPtr(reserved->get().ptr, object.size);
        return disk.read(where, target)
            .then([this, target]() { return hashes.hashOf(target); })
            .then([this, id, where, reserved = kj::mv(reserved)](XXH128_hash_t hash) mutable {
              const gc::ObjectRecord& object = *objects.find(id);
              RS_REQUIRE(hash.high64 == object.hashHi && hash.low64 == object.hashLo, CORRUPTED,
                         "object ", gc::toHex(id).c_str(), " read back from ",
                         disk.pathOf(where.fileId), " does not match its XXH3-128 hash");
              if (object.dead) return;  // nobody wants it any more; the reservation frees
              auto allocation = reserved->take();
              KJ_ASSERT(objects.setSpilled(
                  id, false, packLocation(allocation.segmentId, allocation.offset)));
              disk.remove(where);
              totals.restores++;
              totals.restoredBytes += object.size;
            });
      })
      .then([unpinAndForget]() mutable { unpinAndForget(); },
            [unpinAndForget](kj::Exception&& e) mutable {
              unpinAndForget();
              kj::throwFatalException(kj::mv(e));
            });
}

}  // namespace refstore::server
