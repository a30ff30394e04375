// FileBackedAllocator: see file_backed.h.

#include "server/spill/file_backed.h"

#include <unistd.h>

#include <kj/debug.h>

#include "server/runtime/errors.h"

namespace refstore::server {

FileBackedAllocator::FileBackedAllocator(kj::StringPtr directory, uint64_t diskBudget)
    : directory(kj::heapString(directory)), budget(diskBudget == 0 ? kj::maxValue : diskBudget) {
  RS_REQUIRE(directory.size() > 0, INVALID_ARGUMENT, "the spill directory is empty");
}

FileBackedAllocator::~FileBackedAllocator() noexcept {}

kj::String FileBackedAllocator::pathOf(uint32_t segmentId) const {
  return kj::str(directory, "/filebacked-", segmentId, ".dat");
}

uint32_t FileBackedAllocator::allocateId() {
  // 2^32 - 2^23 ids before wrapping; after that, skip the ones still in use.
  for (uint64_t tries = 0; tries <= uint64_t(kj::maxValue) - kFirstSegmentId; ++tries) {
    uint32_t id = nextId;
    nextId = nextId == uint32_t(kj::maxValue) ? kFirstSegmentId : nextId + 1;
    if (segments.find(id) == nullptr) return id;
  }
  RS_FAIL(INTERNAL, "all file-backed segment ids are in use");
}

kj::Maybe<shm::Allocation> FileBackedAllocator::allocate(uint64_t size) {
  static const uint64_t pageSize = sysconf(_SC_PAGESIZE);
  RS_REQUIRE(size > 0, INVALID_ARGUMENT, "cannot allocate 0 bytes");
  RS_REQUIRE(size <= uint64_t(PTRDIFF_MAX) - pageSize, TOO_LARGE, "allocation of ", size,
             " bytes is too large");
  uint64_t rounded = (size + pageSize - 1) / pageSize * pageSize;
  if (rounded > budget || allocated > budget - rounded) return nullptr;  // over the disk budget

  uint32_t id = allocateId();
  auto segment = shm::Segment::createFileBacked(id, rounded, pathOf(id));
  shm::Allocation result{segment->base(), id, 0, rounded};
  segments.insert(id, kj::mv(segment));
  allocated += rounded;
  return result;
}

void FileBackedAllocator::release(const shm::Allocation& allocation) {
  KJ_IF_MAYBE(segment, segments.find(allocation.segmentId)) {
    KJ_REQUIRE(allocation.offset == 0 && allocation.ptr == (*segment)->base(),
               "releasing an allocation that does not match its file-backed segment",
               allocation.segmentId, allocation.offset);
    allocated -= (*segment)->size();
    segments.erase(allocation.segmentId);  // unmaps, closes and unlinks the file
    return;
  }
  KJ_FAIL_REQUIRE("releasing an unknown file-backed segment", allocation.segmentId);
}

const shm::Segment& FileBackedAllocator::segment(uint32_t id) const {
  KJ_IF_MAYBE(segment, segments.find(id)) {
    return **segment;
  }
  KJ_FAIL_REQUIRE("refstore.NOT_FOUND: no file-backed segment with this id", id);
}

}  // namespace refstore::server
