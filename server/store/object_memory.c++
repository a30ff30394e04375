#include "server/store/object_memory.h"

#include "server/store/packed_location.h"

namespace refstore::server {

shm::Allocator& ObjectMemory::allocatorFor(uint32_t segmentId) const {
  if (segmentId >= kFileSegmentBase && files != nullptr) return *files;
  return shared;
}

bool ObjectMemory::isFileBacked(uint64_t packed) {
  return segmentOf(packed) >= kFileSegmentBase;
}

kj::ArrayPtr<kj::byte> ObjectMemory::bytesOf(const gc::ObjectRecord& object) const {
  uint32_t segmentId = segmentOf(object.userData);
  auto& segment = allocatorFor(segmentId).segment(segmentId);
  return kj::arrayPtr(segment.base() + offsetOf(object.userData), object.size);
}

Location ObjectMemory::locationOf(const gc::ObjectRecord& object) const {
  uint32_t segmentId = segmentOf(object.userData);
  auto& owner = allocatorFor(segmentId);
  return Location{segmentId, offsetOf(object.userData), object.size,
                  owner.segment(segmentId).size(), owner.isDedicated(segmentId)};
}

void ObjectMemory::release(uint64_t packed, uint64_t size) {
  uint32_t segmentId = segmentOf(packed);
  uint64_t offset = offsetOf(packed);
  auto& owner = allocatorFor(segmentId);
  auto& segment = owner.segment(segmentId);
  owner.release(shm::Allocation{segment.base() + offset, segmentId, offset, size});
}

}  // namespace refstore::server
