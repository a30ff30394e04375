// Tests for file-backed segments (shm::Segment::createFileBacked) and FileBackedAllocator:
// zero-copy sharing through the read-only fd (and refusal to write through it), the file's
// lifetime, segment ids, the disk budget and a full disk (RLIMIT_FSIZE).

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <kj/debug.h>
#include <kj/exception.h>

#include "server/shm/segment.h"
#include "server/spill/file_backed.h"

using refstore::server::FileBackedAllocator;
using refstore::shm::Allocation;
using refstore::shm::Segment;

namespace {

constexpr uint64_t kMiB = 1 << 20;

// Like refstored, the test process must survive exceeding RLIMIT_FSIZE (EFBIG, not death).
const bool sigxfszIgnored = signal(SIGXFSZ, SIG_IGN) != SIG_ERR;

std::string freshDir(const char* name) {
  const char* base = getenv("TEST_TMPDIR");
  std::string templ = std::string(base != nullptr ? base : "/tmp") + "/" + name + "-XXXXXX";
  REQUIRE(mkdtemp(&templ[0]) != nullptr);
  return templ;
}

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

size_t entries(const std::string& dir) {
  size_t n = 0;
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) ++n;
  }
  closedir(d);
  return n;
}

template <typename Body>
std::string thrownDescription(Body&& body) {
  try {
    body();
  } catch (const kj::Exception& e) {
    return std::string(e.getDescription().cStr());
  }
  return "";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

struct FileSizeLimit {
  struct rlimit saved;
  explicit FileSizeLimit(uint64_t bytes) {
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    struct rlimit l = saved;
    l.rlim_cur = bytes;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &l) == 0);
  }
  ~FileSizeLimit() { setrlimit(RLIMIT_FSIZE, &saved); }
};

}  // namespace

TEST_CASE("file-backed segment: shared through the read-only fd, not writable through it") {
  auto dir = freshDir("segment");
  auto path = dir + "/filebacked-42.dat";
  void* client = MAP_FAILED;
  {
    auto seg = Segment::createFileBacked(42, 4 * kMiB, path.c_str());
    CHECK(seg->fileBacked());
    CHECK(seg->id() == 42);
    CHECK(seg->size() == 4 * kMiB);
    CHECK(std::string(seg->path().cStr()) == path);
    CHECK(seg->fd() != seg->readOnlyFd());
    CHECK((fcntl(seg->fd(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((fcntl(seg->readOnlyFd(), F_GETFD) & FD_CLOEXEC) != 0);
    CHECK((fcntl(seg->fd(), F_GETFL) & O_ACCMODE) == O_RDWR);
    CHECK((fcntl(seg->readOnlyFd(), F_GETFL) & O_ACCMODE) == O_RDONLY);

    // The file exists, private to the daemon's uid, with every block reserved.
    struct stat st;
    REQUIRE(stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK(uint64_t(st.st_size) == 4 * kMiB);
    CHECK(uint64_t(st.st_blocks) * 512 >= 4 * kMiB);

    // The daemon writes; a reader's mapping of the read-only fd sees the bytes.
    for (uint64_t i = 0; i < seg->size(); i += 4096) seg->base()[i] = uint8_t(i / 4096 + 1);
    client = mmap(nullptr, seg->size(), PROT_READ, MAP_SHARED, seg->readOnlyFd(), 0);
    REQUIRE(client != MAP_FAILED);
    bool same = true;
    for (uint64_t i = 0; i < seg->size(); i += 4096) {
      same &= static_cast<uint8_t*>(client)[i] == uint8_t(i / 4096 + 1);
    }
    CHECK(same);

    // Writable mappings of the read-only fd are refused, and so is upgrading one.
    errno = 0;
    CHECK(mmap(nullptr, seg->size(), PROT_READ | PROT_WRITE, MAP_SHARED, seg->readOnlyFd(), 0) ==
          MAP_FAILED);
    CHECK(errno == EACCES);
    errno = 0;
    CHECK(mprotect(client, seg->size(), PROT_READ | PROT_WRITE) == -1);
    CHECK(errno == EACCES);

    // A writer's mapping of the read-write fd shares the same pages.
    void* writer = mmap(nullptr, seg->size(), PROT_READ | PROT_WRITE, MAP_SHARED, seg->fd(), 0);
    REQUIRE(writer != MAP_FAILED);
    static_cast<uint8_t*>(writer)[5] = 77;
    CHECK(seg->base()[5] == 77);
    CHECK(static_cast<uint8_t*>(client)[5] == 77);
    munmap(writer, seg->size());
  }
  // Destroyed: the file is gone, but a client's existing mapping stays valid.
  CHECK(!exists(path));
  CHECK(static_cast<uint8_t*>(client)[4096] == 2);
  munmap(client, 4 * kMiB);
}

TEST_CASE("file-backed segment: errors") {
  auto dir = freshDir("segerr");
  CHECK(contains(thrownDescription([&]() {
                   Segment::createFileBacked(1, 1000, (dir + "/filebacked-1.dat").c_str());
                 }),
                 "refstore.INVALID_ARGUMENT"));
  CHECK(!exists(dir + "/filebacked-1.dat"));

  // An existing file is never reused or removed.
  auto taken = dir + "/filebacked-2.dat";
  int fd = open(taken.c_str(), O_WRONLY | O_CREAT, 0600);
  REQUIRE(fd >= 0);
  close(fd);
  auto error = thrownDescription([&]() { Segment::createFileBacked(2, 4096, taken.c_str()); });
  CHECK(contains(error, "refstore.INTERNAL"));
  CHECK(contains(error, taken));
  CHECK(exists(taken));

  // memfd segments are unchanged.
  auto memfd = Segment::create(3, 4096);
  CHECK(!memfd->fileBacked());
}

TEST_CASE("FileBackedAllocator: ids, files, budget, release") {
  auto dir = freshDir("alloc");
  FileBackedAllocator alloc(dir.c_str(), 3 * kMiB);
  CHECK(alloc.capacity() == 3 * kMiB);
  CHECK(alloc.segmentCount() == 0);

  auto a = KJ_ASSERT_NONNULL(alloc.allocate(1));
  CHECK(a.segmentId >= FileBackedAllocator::kFirstSegmentId);
  CHECK(a.segmentId >= (1u << 23));
  CHECK(a.offset == 0);
  CHECK(a.size == uint64_t(sysconf(_SC_PAGESIZE)));
  auto b = KJ_ASSERT_NONNULL(alloc.allocate(2 * kMiB));
  CHECK(b.segmentId != a.segmentId);
  CHECK(b.segmentId >= (1u << 23));
  CHECK(b.size == 2 * kMiB);
  CHECK(alloc.isDedicated(a.segmentId));
  CHECK(alloc.isDedicated(b.segmentId));
  CHECK(alloc.bytesAllocated() == a.size + b.size);
  CHECK(alloc.segmentBytes() == a.size + b.size);
  CHECK(alloc.segmentCount() == 2);

  auto& segB = alloc.segment(b.segmentId);
  CHECK(segB.fileBacked());
  CHECK(segB.id() == b.segmentId);
  CHECK(segB.base() == b.ptr);
  auto pathB = std::string(alloc.pathOf(b.segmentId).cStr());
  CHECK(std::string(segB.path().cStr()) == pathB);
  CHECK(contains(pathB, dir + "/filebacked-"));
  CHECK(exists(pathB));
  memset(b.ptr, 0xab, b.size);  // the daemon's mapping is writable

  // 4 KiB + 2 MiB + 1 MiB > 3 MiB: over the budget, not an error.
  CHECK(alloc.allocate(kMiB) == nullptr);
  CHECK(alloc.allocate(4 * kMiB) == nullptr);
  CHECK(alloc.segmentCount() == 2);
  CHECK(entries(dir) == 2);

  alloc.release(b);
  CHECK(!exists(pathB));
  CHECK(alloc.bytesAllocated() == a.size);
  CHECK(contains(thrownDescription([&]() { alloc.segment(b.segmentId); }), "refstore.NOT_FOUND"));
  auto c = KJ_ASSERT_NONNULL(alloc.allocate(kMiB));  // fits now
  CHECK(c.segmentId != b.segmentId);
  alloc.release(a);
  alloc.release(c);
  CHECK(alloc.bytesAllocated() == 0);
  CHECK(entries(dir) == 0);

  FileBackedAllocator unlimited(dir.c_str(), 0);
  CHECK(unlimited.capacity() == UINT64_MAX);
  auto big = KJ_ASSERT_NONNULL(unlimited.allocate(8 * kMiB));
  CHECK(big.size == 8 * kMiB);
  // Destroying the allocator removes its remaining files.
}

TEST_CASE("FileBackedAllocator: a full disk is OUT_OF_DISK and leaves no file") {
  REQUIRE(sigxfszIgnored);
  auto dir = freshDir("full");
  FileBackedAllocator alloc(dir.c_str(), 0);
  std::string error;
  {
    FileSizeLimit limit(kMiB);
    error = thrownDescription([&]() { alloc.allocate(4 * kMiB); });
  }
  CHECK(contains(error, "refstore.OUT_OF_DISK"));
  CHECK(contains(error, dir));
  CHECK(entries(dir) == 0);
  CHECK(alloc.segmentCount() == 0);
  CHECK(alloc.bytesAllocated() == 0);

  auto a = KJ_ASSERT_NONNULL(alloc.allocate(4 * kMiB));  // limit lifted
  CHECK(entries(dir) == 1);
  alloc.release(a);
  CHECK(entries(dir) == 0);
}
