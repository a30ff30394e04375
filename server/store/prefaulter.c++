#include "server/store/prefaulter.h"

#include "server/runtime/log.h"

namespace refstore::server {

void SegmentPrefaulter::TaskErrors::taskFailed(kj::Exception&& e) {
  logWarning("pre-faulting task failed: ", e.getDescription());
}

void SegmentPrefaulter::refill() {
  if (building || !arena.wantsSpare()) return;
  building = true;
  uint32_t id = arena.reserveSegmentId();
  uint64_t size = arena.segmentSize();
  // The continuation only flips `building`: it must not destroy the promise it runs in (an
  // earlier version reset its own promise here, which dropped every spare it built).
  tasks.add(uv.runInPool<kj::Own<shm::Segment>>([id, size]() {
                return shm::Segment::create(id, size);
              })
                .then([this](kj::Own<shm::Segment> segment) {
                  building = false;
                  arena.adoptSpare(kj::mv(segment));
                }, [this](kj::Exception&& e) {
                  // Not fatal: the allocator falls back to creating segments synchronously.
                  building = false;
                  logWarning("could not pre-fault a spare segment: ", e.getDescription());
                }));
}

}  // namespace refstore::server
