// Segment: one block of shared memory that the daemon allocates objects inside and that clients
// map once (DESIGN.md, "Data paths").
//
// A segment is a memfd of a fixed size whose pages are reserved up front (fallocate) and faulted
// into the daemon's mapping up front (MAP_POPULATE). Why both:
//   * fallocate reserves the tmpfs pages now, so a shortage of shared memory is a clean error at
//     creation ("refstore.OUT_OF_MEMORY: ...") instead of a SIGBUS later, in the daemon or in a
//     client, when some page is first touched. This is the Ray / Vineyard "/dev/shm too small"
//     failure, made impossible by construction.
//   * MAP_POPULATE pays the page-fault cost (tens of ms per 64 MiB) once, ahead of demand, so
//     writing an object later runs at memcpy speed. That is also why create() is thread-safe: the
//     daemon calls it on a libuv threadpool thread to keep a spare segment ready.
//
// Two descriptors are kept for the same memory:
//   * fd()         read-write; handed only to clients of the daemon's own uid that create objects.
//   * readOnlyFd() the memfd reopened through /proc/self/fd with O_RDONLY. A new open file
//                  description with read-only access mode: the kernel refuses mmap(PROT_WRITE,
//                  MAP_SHARED) and mprotect(PROT_WRITE) of mappings made from it (EACCES), so a
//                  reader cannot modify a sealed object even by mistake.
//
// The file is sealed against resizing (F_SEAL_SHRINK | F_SEAL_GROW) and further sealing
// (F_SEAL_SEAL): a client holding the read-write fd could otherwise ftruncate() the segment and
// make every other mapping SIGBUS, or add F_SEAL_FUTURE_WRITE and break later writers.
//
// A Segment is immutable after creation and owns its mapping and both descriptors; the
// destructor unmaps and closes them.
//
// File-backed segments (createFileBacked) hold one object larger than shared memory in a regular
// file of the spill directory instead of a memfd. The same two descriptors and the same fd
// passing apply, so clients map them zero-copy exactly like memfd segments. Differences:
//   * the space is reserved with fallocate on the file's disk, so neither the daemon nor a client
//     gets SIGBUS for lack of disk; a shortage is "refstore.OUT_OF_DISK: ..." at creation;
//   * no MAP_POPULATE (the pages come from the page cache on demand);
//   * a regular file cannot be sealed: a holder of the read-write fd could ftruncate it (the
//     same uid could also open the path). The read-only fd still refuses PROT_WRITE mappings;
//   * the destructor also unlinks the file.

#pragma once

#include <cstddef>
#include <cstdint>

#include <kj/common.h>
#include <kj/io.h>
#include <kj/memory.h>
#include <kj/string.h>

namespace refstore::shm {

class Segment {
  struct Private {};  // Makes the constructor usable only through create().

public:
  // Creates, reserves and pre-faults a segment of `size` bytes (a positive multiple of the page
  // size). Safe to call concurrently from any thread: it touches no shared state.
  // Throws "refstore.OUT_OF_MEMORY: ..." when the system cannot reserve the memory (ENOSPC /
  // ENOMEM / mapping failure), "refstore.INVALID_ARGUMENT: ..." for a bad size, and
  // "refstore.INTERNAL: ..." for other operating-system failures (e.g. no /proc, fd limit).
  static kj::Own<Segment> create(uint32_t id, uint64_t size);

  // Creates a segment of `size` bytes (a positive multiple of the page size) backed by a new
  // regular file at `path` (O_EXCL: the file must not exist; mode 0600), reserves its disk space
  // with fallocate and maps it MAP_SHARED read-write. Blocking file I/O (fallocate of unwritten
  // extents is fast on ext4/xfs/btrfs/tmpfs); thread-safe like create().
  // Throws "refstore.OUT_OF_DISK: ..." on ENOSPC / EDQUOT / EFBIG (incl. RLIMIT_FSIZE; the daemon
  // ignores SIGXFSZ), "refstore.INVALID_ARGUMENT: ..." for a bad size, and "refstore.INTERNAL: ..."
  // otherwise (e.g. the path exists, the filesystem lacks fallocate). On failure the file is
  // removed again. The destructor unmaps, closes and unlinks the file.
  static kj::Own<Segment> createFileBacked(uint32_t id, uint64_t size, kj::StringPtr path);

  Segment(Private, uint32_t id, uint64_t size);  // Use create().
  Segment(Private, uint32_t id, uint64_t size, kj::StringPtr path);  // Use createFileBacked().
  ~Segment() noexcept(false);
  KJ_DISALLOW_COPY(Segment);

  uint32_t id() const { return id_; }
  uint64_t size() const { return size_; }
  int fd() const { return rwFd_.get(); }                // read-write memfd
  int readOnlyFd() const { return roFd_.get(); }        // O_RDONLY reopening of the same file
  uint8_t* base() const { return base_; }               // the daemon's read-write mapping
  kj::ArrayPtr<uint8_t> bytes() const { return kj::arrayPtr(base_, size_); }
  bool fileBacked() const { return fileBacked_; }     // created by createFileBacked()
  kj::StringPtr path() const { return path_; }         // the backing file ("" for memfds)

  // True when [p, p + n) lies entirely inside this segment's daemon mapping.
  bool contains(const void* p, uint64_t n = 1) const {
    auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(base_);
    return a >= b && a - b <= size_ && n <= size_ - (a - b);
  }

private:
  uint32_t id_;
  uint64_t size_;
  kj::AutoCloseFd rwFd_;
  kj::AutoCloseFd roFd_;
  uint8_t* base_ = nullptr;
  bool fileBacked_ = false;
  kj::String path_ = kj::heapString("");
};

}  // namespace refstore::shm
