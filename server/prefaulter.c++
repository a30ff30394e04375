#include "server/prefaulter.h"

#include "server/log.h"

namespace refstore::server {

void SegmentPrefaulter::refill() {
  if (inFlight != nullptr || !arena.wantsSpare()) return;
  uint32_t id = arena.reserveSegmentId();
  uint64_t size = arena.segmentSize();
  inFlight = uv.runInPool<kj::Own<shm::Segment>>([id, size]() { return shm::Segment::create(id, size); })
                 .then([this](kj::Own<shm::Segment> segment) {
                   inFlight = nullptr;
                   arena.adoptSpare(kj::mv(segment));
                 }, [this](kj::Exception&& e) {
                   // Not fatal: the allocator falls back to creating segments synchronously.
                   inFlight = nullptr;
                   logWarning("could not pre-fault a spare segment: ", e.getDescription());
                 }).eagerlyEvaluate(nullptr);
}

}  // namespace refstore::server
