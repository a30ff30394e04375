// Tests for server/shm/segment.h: a segment's bytes are shared, its read-only fd really is
// read-only (mmap and mprotect refuse writes), its size is sealed, and creation is thread-safe
// and reports clear errors.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <kj/exception.h>

#include "server/shm/segment.h"

using refstore::shm::Segment;

namespace {

constexpr uint64_t kMiB = 1ull << 20;

std::string describe(const kj::Exception& e) { return std::string(e.getDescription().cStr()); }

// Runs `body` and returns the description of the kj::Exception it throws ("" if none).
template <typename Body>
std::string thrownDescription(Body&& body) {
  try {
    body();
  } catch (const kj::Exception& e) {
    return describe(e);
  }
  return "";
}

}  // namespace

TEST_CASE("create: size, ids, fds and mapping") {
  auto seg = Segment::create(7, 4 * kMiB);
  CHECK(seg->id() == 7);
  CHECK(seg->size() == 4 * kMiB);
  CHECK(seg->fd() >= 0);
  CHECK(seg->readOnlyFd() >= 0);
  CHECK(seg->fd() != seg->readOnlyFd());
  REQUIRE(seg->base() != nullptr);
  CHECK(seg->bytes().size() == 4 * kMiB);

  // Both descriptors are close-on-exec (daemon children must not inherit shared memory).
  CHECK((fcntl(seg->fd(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK((fcntl(seg->readOnlyFd(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK((fcntl(seg->fd(), F_GETFL) & O_ACCMODE) == O_RDWR);
  CHECK((fcntl(seg->readOnlyFd(), F_GETFL) & O_ACCMODE) == O_RDONLY);

  // The file really has the size, and every page is reserved (fallocate): st_blocks covers it.
  struct stat st;
  REQUIRE(fstat(seg->fd(), &st) == 0);
  CHECK(uint64_t(st.st_size) == 4 * kMiB);
  CHECK(uint64_t(st.st_blocks) * 512 >= 4 * kMiB);

  // Fresh memory is zero.
  bool allZero = true;
  for (uint64_t i = 0; i < seg->size(); i += 4096) allZero &= seg->base()[i] == 0;
  CHECK(allZero);

  CHECK(seg->contains(seg->base()));
  CHECK(seg->contains(seg->base(), seg->size()));
  CHECK(!seg->contains(seg->base(), seg->size() + 1));
  CHECK(seg->contains(seg->base() + seg->size() - 1));
  CHECK(!seg->contains(seg->base() + seg->size()));
  CHECK(!seg->contains(seg->base() - 1));
}

TEST_CASE("bytes written through the daemon mapping are visible through the read-only fd") {
  auto seg = Segment::create(1, 2 * kMiB);
  const char msg[] = "hello, shared memory";
  memcpy(seg->base() + 12345, msg, sizeof(msg));
  seg->base()[seg->size() - 1] = 0x5a;

  // Same process, separate read-only mapping.
  void* ro = mmap(nullptr, seg->size(), PROT_READ, MAP_SHARED, seg->readOnlyFd(), 0);
  REQUIRE(ro != MAP_FAILED);
  auto* bytes = static_cast<const uint8_t*>(ro);
  CHECK(memcmp(bytes + 12345, msg, sizeof(msg)) == 0);
  CHECK(bytes[seg->size() - 1] == 0x5a);

  // Shared, not a snapshot: a later write by the daemon shows up in the reader's mapping.
  seg->base()[0] = 0x77;
  CHECK(bytes[0] == 0x77);
  munmap(ro, seg->size());

  // Another process (fork inherits the fd as a client would receive it): maps it read-only,
  // checks the bytes, reports through its exit status.
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    void* p = mmap(nullptr, 2 * kMiB, PROT_READ, MAP_SHARED, seg->readOnlyFd(), 0);
    if (p == MAP_FAILED) _exit(2);
    auto* b = static_cast<const uint8_t*>(p);
    if (memcmp(b + 12345, msg, sizeof(msg)) != 0) _exit(3);
    if (b[2 * kMiB - 1] != 0x5a || b[0] != 0x77) _exit(4);
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("the read-only fd cannot be used to write") {
  auto seg = Segment::create(2, 1 * kMiB);
  seg->base()[100] = 42;

  // A writable shared mapping of the read-only fd is refused.
  errno = 0;
  void* w = mmap(nullptr, seg->size(), PROT_READ | PROT_WRITE, MAP_SHARED, seg->readOnlyFd(), 0);
  CHECK(w == MAP_FAILED);
  CHECK(errno == EACCES);
  if (w != MAP_FAILED) munmap(w, seg->size());

  // So is upgrading a read-only shared mapping with mprotect.
  void* r = mmap(nullptr, seg->size(), PROT_READ, MAP_SHARED, seg->readOnlyFd(), 0);
  REQUIRE(r != MAP_FAILED);
  errno = 0;
  CHECK(mprotect(r, seg->size(), PROT_READ | PROT_WRITE) == -1);
  CHECK(errno == EACCES);
  munmap(r, seg->size());

  // A private (copy-on-write) mapping may be written, but never reaches the shared pages.
  void* priv = mmap(nullptr, seg->size(), PROT_READ | PROT_WRITE, MAP_PRIVATE,
                    seg->readOnlyFd(), 0);
  REQUIRE(priv != MAP_FAILED);
  static_cast<uint8_t*>(priv)[100] = 99;
  CHECK(seg->base()[100] == 42);
  munmap(priv, seg->size());

  // Plain write() through the read-only fd fails too.
  uint8_t byte = 1;
  CHECK(pwrite(seg->readOnlyFd(), &byte, 1, 0) == -1);
  CHECK(errno == EBADF);
}

TEST_CASE("the segment's size is sealed") {
  auto seg = Segment::create(3, 1 * kMiB);
  int seals = fcntl(seg->fd(), F_GET_SEALS);
  REQUIRE(seals >= 0);
  CHECK((seals & F_SEAL_SHRINK) != 0);
  CHECK((seals & F_SEAL_GROW) != 0);
  CHECK((seals & F_SEAL_SEAL) != 0);
  // Even the read-write fd cannot shrink it (which would SIGBUS every mapping) or add seals.
  CHECK(ftruncate(seg->fd(), 4096) == -1);
  CHECK(errno == EPERM);
  CHECK(ftruncate(seg->fd(), 2 * kMiB) == -1);
  CHECK(fcntl(seg->fd(), F_ADD_SEALS, F_SEAL_WRITE) == -1);
  CHECK(errno == EPERM);
}

TEST_CASE("destruction unmaps and closes") {
  int rw, ro;
  {
    auto seg = Segment::create(4, 1 * kMiB);
    rw = seg->fd();
    ro = seg->readOnlyFd();
    CHECK(fcntl(rw, F_GETFD) >= 0);
  }
  CHECK(fcntl(rw, F_GETFD) == -1);
  CHECK(fcntl(ro, F_GETFD) == -1);
}

TEST_CASE("create is safe to call from several threads at once") {
  constexpr int kThreads = 4;
  std::vector<kj::Own<Segment>> made(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; i++) {
    threads.emplace_back([&, i]() {
      try {
        made[i] = Segment::create(100 + i, 8 * kMiB);
        memset(made[i]->base(), i + 1, made[i]->size());
      } catch (...) {
        ++failures;
      }
    });
  }
  for (auto& t: threads) t.join();
  CHECK(failures == 0);
  for (int i = 0; i < kThreads; i++) {
    REQUIRE(made[i].get() != nullptr);
    CHECK(made[i]->id() == uint32_t(100 + i));
    // Distinct memory: each still holds its own fill byte.
    CHECK(made[i]->base()[0] == i + 1);
    CHECK(made[i]->base()[made[i]->size() - 1] == i + 1);
  }
}

TEST_CASE("bad sizes are refused with INVALID_ARGUMENT") {
  CHECK(thrownDescription([]() { Segment::create(1, 0); })
            .rfind("refstore.INVALID_ARGUMENT:", 0) == 0);
  CHECK(thrownDescription([]() { Segment::create(1, 4096 + 1); })
            .rfind("refstore.INVALID_ARGUMENT:", 0) == 0);
}

TEST_CASE("a reservation the system refuses is refstore.OUT_OF_MEMORY, not a later SIGBUS") {
  // Make fallocate fail without exhausting real memory: RLIMIT_FSIZE caps file sizes, so
  // reserving more fails with EFBIG (and would raise SIGXFSZ, ignored here). Limits restored after.
  struct rlimit old;
  REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
  struct sigaction ignore = {}, oldAction;
  ignore.sa_handler = SIG_IGN;
  REQUIRE(sigaction(SIGXFSZ, &ignore, &oldAction) == 0);
  struct rlimit small = old;
  small.rlim_cur = 1 * kMiB;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);

  std::string description = thrownDescription([]() { Segment::create(9, 8 * kMiB); });

  REQUIRE(setrlimit(RLIMIT_FSIZE, &old) == 0);
  REQUIRE(sigaction(SIGXFSZ, &oldAction, nullptr) == 0);

  INFO(description);
  CHECK(description.rfind("refstore.OUT_OF_MEMORY: cannot reserve 8388608 bytes of shared memory: ",
                          0) == 0);
  // And after the failure, creation works again (nothing half-made was left behind).
  auto seg = Segment::create(10, 8 * kMiB);
  CHECK(seg->size() == 8 * kMiB);
}
