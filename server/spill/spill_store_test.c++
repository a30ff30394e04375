// Tests for server/spill/spill_store.h: round trips, batching of small objects, deletion of dead
// files, crash leftovers, the directory lock, a full disk (RLIMIT_FSIZE), corrupted files and
// dropped promises.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include <kj/async-io.h>
#include <kj/exception.h>

#include "server/spill/spill_store.h"
#include "server/runtime/uv_loop.h"

using refstore::server::SpillLocation;
using refstore::server::SpillStore;
using refstore::server::UvLoop;

namespace {

constexpr uint64_t kKiB = 1 << 10;
constexpr uint64_t kMiB = 1 << 20;

// Like refstored, the test process must survive exceeding RLIMIT_FSIZE (EFBIG, not death).
const bool sigxfszIgnored = signal(SIGXFSZ, SIG_IGN) != SIG_ERR;

struct Env {
  kj::AsyncIoContext io = kj::setupAsyncIo();
  UvLoop uv{io.unixEventPort};
  kj::WaitScope& ws = io.waitScope;

  // Runs the event loop for a while (pool jobs complete on their own; their callbacks need it).
  void settle(kj::Duration d = 5 * kj::MILLISECONDS) {
    io.provider->getTimer().afterDelay(d).wait(ws);
  }
  // Runs the loop until `cond` holds or ~5 s passed; returns cond().
  template <typename Cond>
  bool settleUntil(Cond&& cond) {
    for (int i = 0; i < 1000; ++i) {
      if (cond()) return true;
      settle();
    }
    return cond();
  }
};

std::string freshDir(const char* name) {
  const char* base = getenv("TEST_TMPDIR");
  std::string templ = std::string(base != nullptr ? base : "/tmp") + "/" + name + "-XXXXXX";
  REQUIRE(mkdtemp(&templ[0]) != nullptr);
  return templ + "/spill";  // not created yet: the store must mkdir it
}

std::vector<std::string> listDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  REQUIRE(d != nullptr);
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

void writeFile(const std::string& path, size_t size) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  REQUIRE(fd >= 0);
  std::string bytes(size, 'x');
  REQUIRE(write(fd, bytes.data(), bytes.size()) == ssize_t(size));
  close(fd);
}

kj::Array<kj::byte> pattern(size_t size, uint32_t seed) {
  auto a = kj::heapArray<kj::byte>(size);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b: a) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    b = kj::byte(x);
  }
  return a;
}

bool sameBytes(kj::ArrayPtr<const kj::byte> a, kj::ArrayPtr<const kj::byte> b) {
  return a.size() == b.size() && memcmp(a.begin(), b.begin(), a.size()) == 0;
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

SpillStore::Options options(const std::string& dir, uint64_t smallLimit = kMiB,
                            uint64_t batchBytes = 64 * kMiB) {
  SpillStore::Options o;
  o.directory = kj::heapString(dir.c_str());
  o.smallObjectLimit = smallLimit;
  o.batchFileBytes = batchBytes;
  return o;
}

const std::vector<std::string> kOnlyLock = {"LOCK"};

// Sets the soft RLIMIT_FSIZE for its lifetime.
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

TEST_CASE("SpillLocation packs file id and offset into 64 bits") {
  SpillLocation l{SpillLocation::kMaxFileId, SpillLocation::kMaxOffset, 12345};
  CHECK(SpillLocation::unpack(l.pack(), 12345) == l);
  SpillLocation m{7, 1ull << 39, 1};
  CHECK(m.pack() == ((7ull << 40) | (1ull << 39)));
  CHECK(SpillLocation::unpack(m.pack(), 1) == m);
}

TEST_CASE("round trip of small and large objects, accounting and deletion") {
  REQUIRE(sigxfszIgnored);
  Env env;
  auto dir = freshDir("roundtrip");
  SpillStore store(env.uv, options(dir, 64 * kKiB, kMiB));
  struct stat st;
  REQUIRE(stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(listDir(dir) == kOnlyLock);
  CHECK(store.fileCount() == 0);

  auto small1 = pattern(1000, 1), small2 = pattern(64 * kKiB, 2), large = pattern(3 * kMiB + 17, 3);
  auto p1 = store.write(small1);
  auto p2 = store.write(small2);
  auto p3 = store.write(large);
  auto l1 = p1.wait(env.ws), l2 = p2.wait(env.ws), l3 = p3.wait(env.ws);

  CHECK(l1.fileId == l2.fileId);  // both appended to the same batch file
  CHECK(l1.offset == 0);
  CHECK(l2.offset == 1000);
  CHECK(l3.fileId != l1.fileId);
  CHECK(l3.offset == 0);
  CHECK(l3.length == large.size());
  CHECK(store.fileCount() == 2);
  CHECK(store.bytesOnDisk() == 1000 + 64 * kKiB + large.size());
  auto batchPath = std::string(store.pathOf(l1.fileId).cStr());
  auto objectPath = std::string(store.pathOf(l3.fileId).cStr());
  CHECK(contains(batchPath, "/spill-"));
  CHECK(contains(objectPath, "/object-"));
  CHECK(exists(batchPath));
  CHECK(exists(objectPath));
  CHECK(listDir(dir).size() == 3);

  auto out1 = kj::heapArray<kj::byte>(small1.size());
  auto out2 = kj::heapArray<kj::byte>(small2.size());
  auto out3 = kj::heapArray<kj::byte>(large.size());
  store.read(l1, out1).wait(env.ws);
  store.read(l2, out2).wait(env.ws);
  store.read(l3, out3).wait(env.ws);
  CHECK(sameBytes(out1, small1));
  CHECK(sameBytes(out2, small2));
  CHECK(sameBytes(out3, large));

  // A location survives packing (what the object store keeps).
  auto again = kj::heapArray<kj::byte>(small2.size());
  store.read(SpillLocation::unpack(l2.pack(), l2.length), again).wait(env.ws);
  CHECK(sameBytes(again, small2));

  // A wrong-size buffer is refused.
  auto wrong = kj::heapArray<kj::byte>(10);
  CHECK(thrownDescription([&]() { store.read(l1, wrong).wait(env.ws); }) != "");

  store.remove(l3);  // per-object file: gone at once
  CHECK(!exists(objectPath));
  CHECK(store.fileCount() == 1);
  CHECK(store.bytesOnDisk() == 1000 + 64 * kKiB);
  store.remove(l1);  // the batch still has a live entry
  CHECK(exists(batchPath));
  store.read(l2, out2).wait(env.ws);
  CHECK(sameBytes(out2, small2));
  store.remove(l2);  // last entry: the batch file goes
  CHECK(!exists(batchPath));
  CHECK(store.fileCount() == 0);
  CHECK(store.bytesOnDisk() == 0);
  CHECK(listDir(dir) == kOnlyLock);

  // Zero-length objects need no file.
  auto l0 = store.write(kj::ArrayPtr<const kj::byte>()).wait(env.ws);
  CHECK(l0.fileId == 0);
  CHECK(l0.length == 0);
  store.read(l0, kj::ArrayPtr<kj::byte>()).wait(env.ws);
  store.remove(l0);
  CHECK(store.fileCount() == 0);

  // After the last removal the store keeps working (a new batch file).
  auto l4 = store.write(small1).wait(env.ws);
  CHECK(store.fileCount() == 1);
  store.read(l4, out1).wait(env.ws);
  CHECK(sameBytes(out1, small1));
  store.remove(l4);
  CHECK(listDir(dir) == kOnlyLock);
}

TEST_CASE("10,000 tiny objects share a handful of batch files") {
  Env env;
  auto dir = freshDir("tiny");
  SpillStore store(env.uv, options(dir, 4 * kKiB, 256 * kKiB));
  constexpr size_t kCount = 10000, kSize = 100;

  auto data = pattern(kCount * kSize, 9);
  kj::Vector<kj::Promise<SpillLocation>> promises;
  for (size_t i = 0; i < kCount; ++i) {
    promises.add(store.write(data.slice(i * kSize, (i + 1) * kSize)));
  }
  auto locations = kj::joinPromises(promises.releaseAsArray()).wait(env.ws);

  // 1,000,000 bytes in 256 KiB batch files: 4 files.
  CHECK(store.fileCount() == 4);
  CHECK(listDir(dir).size() == 5);
  CHECK(store.bytesOnDisk() == kCount * kSize);

  bool allMatch = true;
  auto out = kj::heapArray<kj::byte>(kSize);
  for (size_t i = 0; i < kCount; i += 37) {
    store.read(locations[i], out).wait(env.ws);
    allMatch &= sameBytes(out, data.slice(i * kSize, (i + 1) * kSize));
  }
  CHECK(allMatch);

  // Removing every other object deletes nothing; removing the rest deletes every file.
  for (size_t i = 0; i < kCount; i += 2) store.remove(locations[i]);
  CHECK(store.fileCount() == 4);
  CHECK(store.bytesOnDisk() == kCount * kSize / 2);
  store.read(locations[kCount - 1], out).wait(env.ws);
  CHECK(sameBytes(out, data.slice((kCount - 1) * kSize, kCount * kSize)));
  for (size_t i = 1; i < kCount; i += 2) store.remove(locations[i]);
  CHECK(store.fileCount() == 0);
  CHECK(store.bytesOnDisk() == 0);
  CHECK(listDir(dir) == kOnlyLock);
}

TEST_CASE("dead ranges of a live batch file are hole-punched") {
  Env env;
  auto dir = freshDir("punch");
  SpillStore store(env.uv, options(dir, kMiB, 64 * kMiB));
  auto a = pattern(512 * kKiB, 1), b = pattern(512 * kKiB, 2);
  auto la = store.write(a).wait(env.ws);
  auto lb = store.write(b).wait(env.ws);
  REQUIRE(la.fileId == lb.fileId);
  auto path = std::string(store.pathOf(la.fileId).cStr());
  auto blocks = [&]() {
    struct stat st;
    REQUIRE(stat(path.c_str(), &st) == 0);
    return uint64_t(st.st_blocks) * 512;
  };
  REQUIRE(blocks() >= kMiB);
  store.remove(la);
  CHECK(env.settleUntil([&]() { return blocks() < 768 * kKiB; }));
  auto out = kj::heapArray<kj::byte>(b.size());
  store.read(lb, out).wait(env.ws);
  CHECK(sameBytes(out, b));
  store.remove(lb);
  CHECK(listDir(dir) == kOnlyLock);
}

TEST_CASE("leftovers of a crashed daemon are deleted at start, other files survive") {
  Env env;
  auto dir = freshDir("leftovers");
  REQUIRE(mkdir(dir.c_str(), 0700) == 0);
  writeFile(dir + "/spill-3.dat", 1000);
  writeFile(dir + "/object-12.dat", 5000);
  writeFile(dir + "/filebacked-8388608.dat", 10);
  writeFile(dir + "/notes.txt", 1);
  writeFile(dir + "/spill-x.dat", 1);
  writeFile(dir + "/object-1.dat.bak", 1);
  writeFile(dir + "/spill-.dat", 1);
  REQUIRE(mkdir((dir + "/spill-4.dat").c_str(), 0700) == 0);  // not a regular file
  writeFile(dir + "/LOCK", 0);  // a stale lock file of the dead daemon: not locked any more

  SpillStore store(env.uv, options(dir));
  CHECK(store.leftoversRemoved().files == 3);
  CHECK(store.leftoversRemoved().bytes == 6010);
  CHECK(listDir(dir) == std::vector<std::string>{"LOCK", "notes.txt", "object-1.dat.bak",
                                                 "spill-.dat", "spill-4.dat", "spill-x.dat"});

  // New files never collide with the survivors' names.
  auto data = pattern(100, 1);
  auto l = store.write(data).wait(env.ws);
  auto out = kj::heapArray<kj::byte>(100);
  store.read(l, out).wait(env.ws);
  CHECK(sameBytes(out, data));
  store.remove(l);
}

TEST_CASE("a second store on the same directory fails while the first lives") {
  Env env;
  auto dir = freshDir("lock");
  {
    SpillStore first(env.uv, options(dir));
    auto error = thrownDescription([&]() { SpillStore second(env.uv, options(dir)); });
    CHECK(contains(error, "refstore.FAILED_PRECONDITION"));
    CHECK(contains(error, "in use by another refstored"));
    CHECK(contains(error, std::to_string(getpid())));  // the holder's pid, from LOCK
    CHECK(contains(error, dir + "/LOCK"));
    // The failed attempt did not disturb the first store.
    auto data = pattern(100, 1);
    auto l = first.write(data).wait(env.ws);
    first.remove(l);
  }
  SpillStore again(env.uv, options(dir));  // released with the first store
  CHECK(again.fileCount() == 0);
}

TEST_CASE("disk full (RLIMIT_FSIZE): OUT_OF_DISK, no orphaned reservation, recovery") {
  REQUIRE(sigxfszIgnored);
  Env env;
  auto dir = freshDir("full");
  SpillStore store(env.uv, options(dir, 64 * kKiB, kMiB));
  auto a = pattern(2000, 1), b = pattern(2000, 2), c = pattern(2000, 3), d = pattern(2000, 4);
  auto large = pattern(4 * kMiB, 5);
  SpillLocation la, lb;
  std::string largeError, smallError;
  {
    FileSizeLimit limit(4096);
    largeError = thrownDescription([&]() { store.write(large).wait(env.ws); });
    la = store.write(a).wait(env.ws);  // [0, 2000)
    lb = store.write(b).wait(env.ws);  // [2000, 4000)
    smallError = thrownDescription([&]() { store.write(c).wait(env.ws); });  // crosses 4096
  }
  CHECK(contains(largeError, "refstore.OUT_OF_DISK"));
  CHECK(contains(largeError, dir));
  CHECK(contains(smallError, "refstore.OUT_OF_DISK"));
  // The failed large object left no file; the failed small entry is not counted.
  CHECK(store.fileCount() == 1);
  CHECK(listDir(dir).size() == 2);
  CHECK(store.bytesOnDisk() == 4000);

  // Limit lifted: small and large writes work again.
  auto ld = store.write(d).wait(env.ws);
  auto ll = store.write(large).wait(env.ws);
  CHECK(store.bytesOnDisk() == 6000 + large.size());
  auto out = kj::heapArray<kj::byte>(2000);
  store.read(la, out).wait(env.ws);
  CHECK(sameBytes(out, a));
  store.read(lb, out).wait(env.ws);
  CHECK(sameBytes(out, b));
  store.read(ld, out).wait(env.ws);
  CHECK(sameBytes(out, d));
  auto outLarge = kj::heapArray<kj::byte>(large.size());
  store.read(ll, outLarge).wait(env.ws);
  CHECK(sameBytes(outLarge, large));

  // Every live entry removed: the batch file that saw the failure is deleted too.
  store.remove(la);
  store.remove(lb);
  store.remove(ld);
  store.remove(ll);
  CHECK(store.fileCount() == 0);
  CHECK(listDir(dir) == kOnlyLock);
}

TEST_CASE("a truncated spill file reads as CORRUPTED") {
  Env env;
  auto dir = freshDir("corrupt");
  SpillStore store(env.uv, options(dir, 64 * kKiB, kMiB));
  auto large = pattern(2 * kMiB, 1), small = pattern(1000, 2);
  auto ll = store.write(large).wait(env.ws);
  auto ls = store.write(small).wait(env.ws);

  REQUIRE(truncate(store.pathOf(ll.fileId).cStr(), kMiB) == 0);
  auto out = kj::heapArray<kj::byte>(large.size());
  auto error = thrownDescription([&]() { store.read(ll, out).wait(env.ws); });
  CHECK(contains(error, "refstore.CORRUPTED"));
  CHECK(contains(error, "shorter than expected"));

  REQUIRE(truncate(store.pathOf(ls.fileId).cStr(), 500) == 0);
  auto outSmall = kj::heapArray<kj::byte>(small.size());
  CHECK(contains(thrownDescription([&]() { store.read(ls, outSmall).wait(env.ws); }),
                 "refstore.CORRUPTED"));

  store.remove(ll);
  store.remove(ls);
  CHECK(listDir(dir) == kOnlyLock);
}

TEST_CASE("dropped promises and a destroyed store leave no files or reservations") {
  Env env;
  auto dir = freshDir("dropped");
  auto large = pattern(8 * kMiB, 1), small = pattern(1000, 2);

  struct Flag {
    bool* destroyed;
    explicit Flag(bool* destroyed): destroyed(destroyed) {}
    KJ_DISALLOW_COPY(Flag);
    ~Flag() { *destroyed = true; }
  };
  bool largeReleased = false, smallReleased = false;
  {
    SpillStore store(env.uv, options(dir, 64 * kKiB, kMiB));
    // Dropped at once: the jobs still run; the store buries the entries when they complete.
    { auto p = store.write(large, kj::heap<Flag>(&largeReleased)); }
    { auto p = store.write(small, kj::heap<Flag>(&smallReleased)); }
    CHECK(env.settleUntil([&]() { return largeReleased && smallReleased; }));
    CHECK(env.settleUntil([&]() { return store.fileCount() == 0; }));
    CHECK(store.bytesOnDisk() == 0);
    CHECK(listDir(dir) == kOnlyLock);

    // A dropped read of a live entry, then removal: nothing dangles.
    auto l = store.write(large).wait(env.ws);
    // The buffer belongs to the read's keepAlive: the job may still fill it after the drop.
    auto out = kj::heapArray<kj::byte>(large.size());
    auto outPtr = out.asPtr();
    { auto p = store.read(l, outPtr, kj::heap<kj::Array<kj::byte>>(kj::mv(out))); }
    store.remove(l);
    CHECK(store.fileCount() == 0);
  }

  // In flight when the store goes away. A UvLoop of its own: destroying it waits for the pool
  // jobs (and runs their completions), which makes the final check deterministic.
  largeReleased = smallReleased = false;
  {
    auto uv = kj::heap<UvLoop>(env.io.unixEventPort);
    {
      SpillStore store(*uv, options(dir, 64 * kKiB, kMiB));
      auto p1 = store.write(large, kj::heap<Flag>(&largeReleased));  // creates object-<n>.dat
      auto p2 = store.write(small, kj::heap<Flag>(&smallReleased));  // creates spill-<n>.dat
    }
    // The batch write had not been submitted yet (its file was still being created), so its
    // keepAlive went with the store; the large write's job still owns its keepAlive.
    CHECK(smallReleased);
    uv = nullptr;
  }
  CHECK(largeReleased);
  CHECK(listDir(dir) == kOnlyLock);  // the jobs removed the files they had created
}

TEST_CASE("bad options are refused") {
  Env env;
  auto dir = freshDir("options");
  CHECK(contains(thrownDescription([&]() { SpillStore s(env.uv, options(dir, 2 * kMiB, kMiB)); }),
                 "refstore.INVALID_ARGUMENT"));
  CHECK(contains(thrownDescription([&]() { SpillStore s(env.uv, options("")); }),
                 "refstore.INVALID_ARGUMENT"));
  CHECK(contains(thrownDescription([&]() { SpillStore s(env.uv, options("/proc/self/nope/x")); }),
                 "refstore.INTERNAL"));
}
