// Segment creation: memfd -> seal size -> fallocate -> map populated -> reopen read-only.
// See segment.h for why each step exists.

#include "server/shm/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <kj/debug.h>
#include <kj/exception.h>
#include <kj/string.h>

namespace refstore::shm {

namespace {

// Every error leaves the daemon as an exception whose description starts with a stable code
// word (DESIGN.md, "Errors"). KJ_SYSCALL's own messages do not, so failures are built here.
[[noreturn]] void fail(kj::Exception::Type type, kj::String description) {
  kj::throwFatalException(kj::Exception(type, __FILE__, __LINE__, kj::mv(description)));
}

[[noreturn]] void failOutOfMemory(uint64_t size, int error) {
  fail(kj::Exception::Type::OVERLOADED,
       kj::str("refstore.OUT_OF_MEMORY: cannot reserve ", size, " bytes of shared memory: ",
               strerror(error)));
}

[[noreturn]] void failInternal(const char* what, uint64_t size, int error) {
  fail(kj::Exception::Type::FAILED,
       kj::str("refstore.INTERNAL: creating a shared-memory segment of ", size, " bytes: ", what,
               ": ", strerror(error)));
}

[[noreturn]] void failOutOfDisk(kj::StringPtr path, uint64_t size, int error) {
  fail(kj::Exception::Type::OVERLOADED,
       kj::str("refstore.OUT_OF_DISK: cannot reserve ", size, " bytes of disk for a file-backed ",
               "segment at ", path, ": ", strerror(error)));
}

[[noreturn]] void failFileInternal(const char* what, kj::StringPtr path, uint64_t size,
                                   int error) {
  fail(kj::Exception::Type::FAILED,
       kj::str("refstore.INTERNAL: creating a file-backed segment of ", size, " bytes at ", path,
               ": ", what, ": ", strerror(error)));
}

void checkSegmentSize(uint64_t size) {
  static const uint64_t pageSize = sysconf(_SC_PAGESIZE);
  if (size == 0 || size % pageSize != 0 || size > uint64_t(PTRDIFF_MAX)) {
    fail(kj::Exception::Type::FAILED,
         kj::str("refstore.INVALID_ARGUMENT: segment size ", size,
                 " is not a positive multiple of the page size (", pageSize, ")"));
  }
}

// Retries a syscall interrupted by a signal; returns the result or -1 with errno set.
template <typename Call>
auto retryEintr(Call&& call) {
  for (;;) {
    auto r = call();
    if (r >= 0 || errno != EINTR) return r;
  }
}

}  // namespace

kj::Own<Segment> Segment::create(uint32_t id, uint64_t size) {
  return kj::heap<Segment>(Private{}, id, size);
}

Segment::Segment(Private, uint32_t id, uint64_t size): id_(id), size_(size) {
  static const uint64_t pageSize = sysconf(_SC_PAGESIZE);
  if (size == 0 || size % pageSize != 0 || size > uint64_t(PTRDIFF_MAX)) {
    fail(kj::Exception::Type::FAILED,
         kj::str("refstore.INVALID_ARGUMENT: segment size ", size,
                 " is not a positive multiple of the page size (", pageSize, ")"));
  }

  // The name only shows up in /proc/<pid>/fd and /proc/<pid>/maps, where it helps debugging.
  auto name = kj::str("refstore-segment-", id);
  int fd = memfd_create(name.cStr(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) failInternal("memfd_create", size, errno);
  rwFd_ = kj::AutoCloseFd(fd);

  // fallocate both sets the size and reserves every page. ENOSPC means tmpfs/memcg has no room;
  // ENOMEM likewise. Either way nothing stays reserved: the memfd is closed as we unwind.
  if (retryEintr([&]() { return fallocate(fd, 0, 0, off_t(size)); }) < 0) {
    int error = errno;
    if (error == ENOSPC || error == ENOMEM || error == EFBIG) failOutOfMemory(size, error);
    failInternal("fallocate", size, error);
  }

  // Seal after sizing: the size can never change again, and nobody can add other seals.
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
    failInternal("fcntl(F_ADD_SEALS)", size, errno);
  }

  // Reopen read-only through /proc: a fresh open file description whose access mode is
  // O_RDONLY. (dup() would share the read-write description, and memfds cannot be opened by
  // any other path.) Works from any thread because the fd table is shared by the process.
  auto procPath = kj::str("/proc/self/fd/", fd);
  int ro = retryEintr([&]() { return open(procPath.cStr(), O_RDONLY | O_CLOEXEC); });
  if (ro < 0) failInternal("reopening the memfd read-only via /proc/self/fd", size, errno);
  roFd_ = kj::AutoCloseFd(ro);

  // MAP_POPULATE faults every (already reserved) page into the daemon's page tables now, so the
  // first write to an object never page-faults. MAP_SHARED: clients see the same pages.
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    int error = errno;
    if (error == ENOMEM) failOutOfMemory(size, error);
    failInternal("mmap", size, error);
  }
  base_ = static_cast<uint8_t*>(p);
}

kj::Own<Segment> Segment::createFileBacked(uint32_t id, uint64_t size, kj::StringPtr path) {
  return kj::heap<Segment>(Private{}, id, size, path);
}

// File-backed: create the file -> fallocate -> reopen read-only -> map (not populated).
Segment::Segment(Private, uint32_t id, uint64_t size, kj::StringPtr path)
    : id_(id), size_(size), fileBacked_(true), path_(kj::heapString(path)) {
  checkSegmentSize(size);

  int fd = retryEintr([&]() {
    return open(path.cStr(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  });
  if (fd < 0) {
    int error = errno;
    if (error == ENOSPC || error == EDQUOT) failOutOfDisk(path, size, error);
    failFileInternal("open(O_CREAT | O_EXCL)", path, size, error);
  }
  rwFd_ = kj::AutoCloseFd(fd);
  // The destructor does not run when the constructor throws: remove the file we created here.
  // (The descriptors are closed by the AutoCloseFd members as we unwind.)
  KJ_ON_SCOPE_FAILURE(unlink(path.cStr()));

  // Sets the size and allocates every block now, so writing through a mapping can never hit a
  // full disk (SIGBUS). Under RLIMIT_FSIZE the kernel answers EFBIG (SIGXFSZ is ignored by the
  // daemon; otherwise it would kill the process).
  if (retryEintr([&]() { return fallocate(fd, 0, 0, off_t(size)); }) < 0) {
    int error = errno;
    if (error == ENOSPC || error == EDQUOT || error == EFBIG) failOutOfDisk(path, size, error);
    if (error == EOPNOTSUPP) {
      failFileInternal("fallocate (the filesystem cannot reserve space, so a full disk would "
                       "SIGBUS readers; put the spill directory on ext4, xfs, btrfs or tmpfs)",
                       path, size, error);
    }
    failFileInternal("fallocate", path, size, error);
  }

  // A new open file description with O_RDONLY, exactly as for memfds (see the header).
  auto procPath = kj::str("/proc/self/fd/", fd);
  int ro = retryEintr([&]() { return open(procPath.cStr(), O_RDONLY | O_CLOEXEC); });
  if (ro < 0) failFileInternal("reopening the file read-only via /proc/self/fd", path, size, errno);
  roFd_ = kj::AutoCloseFd(ro);

  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int error = errno;
    if (error == ENOMEM) failOutOfMemory(size, error);
    failFileInternal("mmap", path, size, error);
  }
  base_ = static_cast<uint8_t*>(p);
}

Segment::~Segment() noexcept(false) {
  if (base_ != nullptr) {
    // munmap of a mapping we created can only fail on a bug; do not throw from a destructor
    // for it (the descriptors still get closed by their AutoCloseFd members).
    if (munmap(base_, size_) < 0) {
      KJ_LOG(ERROR, "munmap of a shared-memory segment failed", id_, size_, strerror(errno));
    }
  }
  if (fileBacked_) {
    // Clients may still have it mapped; their mappings (and the disk blocks) stay valid until
    // they unmap, like an unlinked file always does.
    if (unlink(path_.cStr()) < 0 && errno != ENOENT) {
      KJ_LOG(ERROR, "unlinking a file-backed segment failed", id_, path_, strerror(errno));
    }
  }
}

}  // namespace refstore::shm
