// Spiller: under memory pressure, the least recently used unpinned values move to the spill
// directory (through libuv's threadpool) and come back, checked against their XXH3-128 hash,
// when read. Spilling starts when shared memory plus what waiting requests want passes the
// high watermark, and stops once it is back under the low one (MemoryPolicy). Values pinned by
// a View, file-backed ones, aliases and promises never move. Local copies of other daemons'
// objects go first, and are dropped instead of written out (read again from the owner). A spill changes where an immutable
// value lives, never its identity, references or hash.
#pragma once

#include <kj/async.h>
#include <kj/map.h>

#include "gc/object_table.h"
#include "server/spill/spill_store.h"
#include "server/store/hash_scheduler.h"
#include "server/store/memory_admission.h"
#include "server/store/object_memory.h"

namespace refstore::server {

class Spiller {
 public:
  Spiller(gc::ObjectTable& objects, ObjectMemory& memory, MemoryAdmission& admission,
          HashScheduler& hashes, SpillStore& disk, kj::Timer& timer);
  KJ_DISALLOW_COPY(Spiller);

  // Starts spilling if demand is above the high watermark (and goes on to the low one).
  void maybeSpill();
  // Brings a spilled object back into memory (CORRUPTED if its hash does not match); resolves
  // at once for objects in memory. Use the bytes in the same turn as it resolves.
  kj::Promise<void> ensureResident(gc::ObjectId id);
  // `id`'s bytes were used: spilling takes the least recently used first.
  void used(gc::ObjectId id);
  // `object` was freed: forget it, and its disk copy if it was spilled.
  void reclaimed(const gc::ObjectRecord& object);

  struct Counters {
    uint64_t spills = 0, spilledBytes = 0, restores = 0, restoredBytes = 0, spillFailures = 0;
    uint64_t evictions = 0, evictedBytes = 0;  // proxies' local copies dropped
  };
  const Counters& counters() const { return totals; }
  const SpillStore& spillStore() const { return disk; }

 private:
  void startSpill(gc::ObjectId id);
  void evict(gc::ObjectId id);  // drops a proxy's local copy (its owner has the value)
  void finishSpill(gc::ObjectId id, SpillLocation where);
  kj::Promise<void> restore(gc::ObjectId id);

  gc::ObjectTable& objects;
  ObjectMemory& memory;
  MemoryAdmission& admission;
  HashScheduler& hashes;
  SpillStore& disk;
  kj::Timer& timer;
  bool spilling = false;  // between the high and the low watermark (for logs)
  uint64_t inFlightBytes = 0;
  kj::HashMap<uint64_t, kj::ForkedPromise<void>> restoring;  // by id.lo
  kj::HashMap<uint64_t, gc::MonoMillis> lastUsed;             // by id.lo; absent: createdAt
  Counters totals;
  struct ErrorLogger: kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override;
  } errorLogger;
  kj::TaskSet tasks{errorLogger};
};

}  // namespace refstore::server
