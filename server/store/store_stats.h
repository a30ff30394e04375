// A snapshot of the store's figures, in plain C++ (the RPC layer turns it into `Stats`, the
// metrics endpoint into Prometheus lines).
#pragma once

#include <cstdint>

#include "gc/object_table.h"
#include "server/store/spiller.h"

namespace refstore::server {

struct StoreStats {
  gc::ObjectTable::Stats table;  // objects, holders, tokens, names, by state, ...
  uint64_t bytesUsed = 0;        // shared memory allocated to objects
  uint64_t capacity = 0;
  uint32_t segments = 0;
  uint64_t segmentBytes = 0;
  uint32_t clients = 0;
  uint64_t uptimeMs = 0;
  uint64_t putsTotal = 0;  // allocations granted
  uint64_t reclaimedTotal = 0;
  uint64_t lastReclaimMonoUs = 0;
  uint64_t backgroundHashesTotal = 0;
  uint64_t spilledBytes = 0;  // on disk now
  uint64_t spillFiles = 0;
  Spiller::Counters spills;
  uint64_t fileBackedBytes = 0;
  uint32_t queueLength = 0;
  uint32_t prefetchesWaiting = 0;  // of queueLength
  uint64_t oldestWaiterMs = 0;
};

}  // namespace refstore::server
