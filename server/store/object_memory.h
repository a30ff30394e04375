// Where objects' bytes live: the shared-memory allocator (memfd segments) and, when the daemon
// has a spill directory, the file-backed one for values larger than memory. The two are told
// apart by segment id (file-backed ids start at kFileSegmentBase), and an allocation is packed
// into gc::ObjectRecord::userData (packed_location.h), so that a record alone says where its
// bytes are.
#pragma once

#include <kj/common.h>

#include "gc/object_table.h"
#include "server/shm/allocator.h"

namespace refstore::server {

// A value's location in shared memory, as sent in `Placement`.
struct Location {
  uint32_t segmentId;
  uint64_t offset;
  uint64_t length;
  uint64_t segmentSize;
  bool dedicated;  // the segment holds only this object (see Placement.dedicated)
};

class ObjectMemory {
 public:
  // Segment ids at or above this belong to the file-backed allocator (see server/spill/).
  static constexpr uint32_t kFileSegmentBase = 1u << 23;

  ObjectMemory(shm::Allocator& shared, kj::Maybe<shm::Allocator&> fileBacked)
      : shared(shared), files(nullptr) {
    KJ_IF_MAYBE(f, fileBacked) { files = f; }
  }

  shm::Allocator& sharedMemory() const { return shared; }
  kj::Maybe<shm::Allocator&> fileBacked() const { return kj::Maybe<shm::Allocator&>(files); }
  shm::Allocator& allocatorFor(uint32_t segmentId) const;
  // Whether a packed location (userData of an object in memory) is in a file-backed segment.
  static bool isFileBacked(uint64_t packed);

  // The bytes of a resident object that owns bytes.
  kj::ArrayPtr<kj::byte> bytesOf(const gc::ObjectRecord& object) const;
  Location locationOf(const gc::ObjectRecord& object) const;
  // Gives back the allocation packed in `packed` (`size` bytes).
  void release(uint64_t packed, uint64_t size);

 private:
  shm::Allocator& shared;
  shm::Allocator* files;  // null without a spill directory
};

}  // namespace refstore::server
