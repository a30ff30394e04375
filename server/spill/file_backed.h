// FileBackedAllocator: objects larger than shared memory, each in its own file-backed segment
// (shm::Segment::createFileBacked) in the spill directory, "<directory>/filebacked-<id>.dat".
//
// Clients map these segments zero-copy through the same fd passing as memfd segments; every
// segment is dedicated (holds exactly one allocation and is freed with it). Segment ids start at
// kFirstSegmentId = 2^23, so they never collide with the shared-memory arena's (small) ids.
//
// Disk: each allocation reserves its whole (page-rounded) size with fallocate at allocate() time,
// so nothing can SIGBUS later. capacity() is the disk budget given to the constructor (0 means
// unlimited, reported as UINT64_MAX); an allocation beyond the budget returns nullptr (the caller
// queues it), a full disk throws "refstore.OUT_OF_DISK: ..." (SIGXFSZ must be ignored by the
// process, as refstored does, for RLIMIT_FSIZE to surface as EFBIG).
//
// The directory must exist and belong to this daemon: construct the SpillStore of the same
// directory first (it takes the directory's lock and deletes leftover filebacked-*.dat files of
// a crashed daemon; ids restart at 2^23 every run).
//
// Threading: loop thread only, like every Allocator; no threads are created. allocate() creates
// and fallocates a file, release() unmaps and unlinks it, synchronously (fast metadata operations
// on ext4/xfs; the blocks are freed when the last client unmaps).

#pragma once

#include <cstdint>

#include <kj/map.h>
#include <kj/memory.h>
#include <kj/string.h>

#include "server/shm/allocator.h"
#include "server/shm/segment.h"

namespace refstore::server {

class FileBackedAllocator final: public shm::Allocator {
 public:
  static constexpr uint32_t kFirstSegmentId = uint32_t(1) << 23;

  // diskBudget: most bytes (page-rounded sizes) allocated at once; 0 = unlimited.
  FileBackedAllocator(kj::StringPtr directory, uint64_t diskBudget);
  ~FileBackedAllocator() noexcept;  // destroys the remaining segments (unlinks their files)
  KJ_DISALLOW_COPY(FileBackedAllocator);

  // A whole new segment of `size` rounded up to the page size (Allocation.offset == 0,
  // Allocation.size == the rounded size); nullptr when the budget would be exceeded.
  kj::Maybe<shm::Allocation> allocate(uint64_t size) override;
  void release(const shm::Allocation& allocation) override;
  bool isDedicated(uint32_t /*segmentId*/) const override { return true; }
  const shm::Segment& segment(uint32_t id) const override;

  uint64_t bytesAllocated() const override { return allocated; }
  uint64_t capacity() const override { return budget; }
  uint64_t segmentBytes() const override { return allocated; }  // one allocation per segment
  size_t segmentCount() const override { return segments.size(); }

  kj::String pathOf(uint32_t segmentId) const;  // where segment `segmentId`'s file is (or was)

 private:
  uint32_t allocateId();

  kj::String directory;
  uint64_t budget;  // UINT64_MAX when unlimited
  uint64_t allocated = 0;
  uint32_t nextId = kFirstSegmentId;
  kj::HashMap<uint32_t, kj::Own<shm::Segment>> segments;
};

}  // namespace refstore::server
