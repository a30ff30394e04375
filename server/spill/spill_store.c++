// SpillStore: see spill_store.h for the layout, the threading and the failure model.

#include "server/spill/spill_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <kj/debug.h>

#include "server/runtime/errors.h"
#include "server/runtime/log.h"

namespace refstore::server {
namespace {

// Dead ranges of a batch file are hole-punched only when they cover whole blocks of this size.
constexpr uint64_t kPunchBlock = 4096;
// Largest single pwrite/pread (Linux transfers at most ~2 GiB per call anyway).
constexpr uint64_t kMaxIoChunk = uint64_t(1) << 30;

const char* const kNamePrefixes[] = {"spill-", "object-", "filebacked-"};
constexpr const char kNameSuffix[] = ".dat";

template <typename Call>
auto retryEintr(Call&& call) {
  for (;;) {
    auto r = call();
    if (r >= 0 || errno != EINTR) return r;
  }
}

bool isDiskFull(int error) { return error == ENOSPC || error == EDQUOT || error == EFBIG; }

// "<prefix><decimal id>.dat" for one of the store's prefixes: the only names startup deletes.
bool isSpillFileName(kj::StringPtr name) {
  for (const char* prefix: kNamePrefixes) {
    kj::StringPtr p(prefix);
    size_t suffixLength = sizeof(kNameSuffix) - 1;
    if (!name.startsWith(p) || !name.endsWith(kNameSuffix)) continue;
    if (name.size() <= p.size() + suffixLength) continue;
    size_t begin = p.size(), end = name.size() - suffixLength;
    if (end - begin > 10) continue;
    bool allDigits = true;
    for (size_t i = begin; i < end; ++i) allDigits &= name[i] >= '0' && name[i] <= '9';
    if (allDigits) return true;
  }
  return false;
}

// A file created on a pool thread. Until adopted, its destructor unlinks it again, so a job
// whose result nobody takes (a failed write, a store destroyed meanwhile) leaves no file behind.
// Runs on whichever thread drops it; unlink and close are thread-safe.
struct CreatedFile {
  kj::String path;
  kj::AutoCloseFd fd;
  CreatedFile(kj::String path, kj::AutoCloseFd fd): path(kj::mv(path)), fd(kj::mv(fd)) {}
  ~CreatedFile() noexcept(false) {
    if (fd.get() >= 0) unlink(path.cStr());
  }
  kj::AutoCloseFd adopt() { return kj::mv(fd); }
};

// --- Pool-thread functions: they use only their arguments. ---

[[noreturn]] void failWrite(int error, uint64_t length, kj::StringPtr directory, const char* what,
                            kj::StringPtr path) {
  if (isDiskFull(error)) {
    RS_FAIL(OUT_OF_DISK, "cannot spill ", length, " bytes to ", directory, ": ", strerror(error));
  }
  RS_FAIL(INTERNAL, "spilling ", length, " bytes: ", what, " ", path, ": ", strerror(error));
}

kj::Own<CreatedFile> createFile(kj::String path, uint64_t length, kj::StringPtr directory) {
  int fd = retryEintr([&]() {
    return open(path.cStr(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  });
  if (fd < 0) failWrite(errno, length, directory, "creating", path);
  return kj::heap<CreatedFile>(kj::mv(path), kj::AutoCloseFd(fd));
}

void writeAll(int fd, const kj::byte* data, uint64_t length, uint64_t offset,
              kj::StringPtr directory, kj::StringPtr path) {
  uint64_t done = 0;
  while (done < length) {
    size_t chunk = std::min(length - done, kMaxIoChunk);
    ssize_t n = pwrite(fd, data + done, chunk, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      failWrite(errno, length, directory, "writing", path);
    }
    if (n == 0) failWrite(ENOSPC, length, directory, "writing", path);  // no progress: full
    done += uint64_t(n);
  }
}

void readAll(int fd, kj::byte* out, uint64_t length, uint64_t offset, kj::StringPtr path) {
  uint64_t done = 0;
  while (done < length) {
    size_t chunk = std::min(length - done, kMaxIoChunk);
    ssize_t n = pread(fd, out + done, chunk, off_t(offset + done));
    if (n < 0) {
      int error = errno;
      if (error == EINTR) continue;
      if (error == EIO) {
        RS_FAIL(CORRUPTED, "spill file ", path, " is unreadable at offset ", offset + done, ": ",
                strerror(error));
      }
      RS_FAIL(INTERNAL, "reading spill file ", path, ": ", strerror(error));
    }
    if (n == 0) {
      RS_FAIL(CORRUPTED, "spill file ", path, " is shorter than expected: read ", done, " of ",
              length, " bytes at offset ", offset);
    }
    done += uint64_t(n);
  }
}

}  // namespace

struct SpillStore::PendingWrite {
  uint32_t fileId;
  uint64_t offset;
  kj::ArrayPtr<const kj::byte> data;
  kj::Own<void> keepAlive;  // moved into the pool job once it is submitted
  kj::Own<kj::PromiseFulfiller<SpillLocation>> fulfiller;
};

void SpillStore::ErrorHandler::taskFailed(kj::Exception&& exception) {
  // Every task catches its own errors; reaching this is a bug.
  logError("spill store: internal task failed: ", exception);
}

SpillStore::SpillStore(UvLoop& uv, Options optionsParam)
    : uv(uv), options(kj::mv(optionsParam)), tasks(errorHandler) {
  auto& dir = options.directory;
  RS_REQUIRE(dir.size() > 0, INVALID_ARGUMENT, "the spill directory is empty");
  RS_REQUIRE(options.batchFileBytes > 0 && options.batchFileBytes <= SpillLocation::kMaxOffset + 1,
             INVALID_ARGUMENT, "spill batch file size ", options.batchFileBytes,
             " must be in [1, 2^40]");
  RS_REQUIRE(options.smallObjectLimit <= options.batchFileBytes, INVALID_ARGUMENT,
             "spill small-object limit ", options.smallObjectLimit,
             " exceeds the batch file size ", options.batchFileBytes);

  // mkdir -p, every created level 0700.
  for (size_t i = 1; i <= dir.size(); ++i) {
    if (i < dir.size() && dir[i] != '/') continue;
    auto prefix = kj::heapString(dir.slice(0, i));
    if (mkdir(prefix.cStr(), 0700) < 0 && errno != EEXIST) {
      RS_FAIL(INTERNAL, "cannot create the spill directory ", prefix, ": ", strerror(errno));
    }
  }
  struct stat st;
  if (stat(dir.cStr(), &st) < 0 || !S_ISDIR(st.st_mode)) {
    RS_FAIL(INTERNAL, "the spill directory ", dir, " is not a directory");
  }
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    snprintf(mode, sizeof(mode), "%03o", unsigned(st.st_mode & 0777));
    logWarning("spill store: the spill directory ", dir, " is accessible to other users (mode ",
               mode, "); spilled objects are private data, use mode 0700");
  }

  // One daemon per directory: flock is per open file description, so it also excludes a second
  // store in this process, and the kernel drops it when the holder dies (no stale locks).
  auto lockPath = kj::str(dir, "/LOCK");
  int fd = retryEintr([&]() { return open(lockPath.cStr(), O_RDWR | O_CREAT | O_CLOEXEC, 0600); });
  if (fd < 0) RS_FAIL(INTERNAL, "cannot open ", lockPath, ": ", strerror(errno));
  lockFd = kj::AutoCloseFd(fd);
  if (retryEintr([&]() { return flock(fd, LOCK_EX | LOCK_NB); }) < 0) {
    int error = errno;
    if (error == EWOULDBLOCK) {
      char buffer[32] = {};
      ssize_t n = pread(fd, buffer, sizeof(buffer) - 1, 0);
      kj::String owner = kj::heapString("unknown");
      if (n > 0) {
        size_t end = 0;
        while (end < size_t(n) && buffer[end] >= '0' && buffer[end] <= '9') ++end;
        if (end > 0) owner = kj::heapString(buffer, end);
      }
      RS_FAIL(FAILED_PRECONDITION, "the spill directory ", dir,
              " is in use by another refstored (pid ", owner, " holds the lock on ", lockPath,
              "); give each daemon its own spill directory");
    }
    RS_FAIL(INTERNAL, "cannot lock ", lockPath, ": ", strerror(error));
  }
  auto pid = kj::str(getpid(), "\n");
  if (ftruncate(fd, 0) < 0 || pwrite(fd, pid.begin(), pid.size(), 0) < 0) {
    logWarning("spill store: cannot record the pid in ", lockPath, ": ", strerror(errno));
  }

  removeLeftovers();
}

SpillStore::~SpillStore() noexcept(false) {
  // Files still being created are removed by their pool job's CreatedFile (never adopted now).
  // The others are unlinked here; their descriptors close as `files` is destroyed (pool jobs
  // still holding a reference close theirs when they finish).
  for (auto& entry: files) {
    auto& file = *entry.value;
    if (file.fd.get() != nullptr && unlink(file.path.cStr()) < 0 && errno != ENOENT) {
      logWarning("spill store: cannot delete ", file.path, ": ", strerror(errno));
    }
  }
}

void SpillStore::removeLeftovers() {
  auto& dir = options.directory;
  DIR* d = opendir(dir.cStr());
  if (d == nullptr) RS_FAIL(INTERNAL, "cannot list the spill directory ", dir, ": ", strerror(errno));
  KJ_DEFER(closedir(d));
  int dfd = dirfd(d);
  for (;;) {
    errno = 0;
    struct dirent* e = readdir(d);
    if (e == nullptr) {
      if (errno != 0) RS_FAIL(INTERNAL, "cannot list the spill directory ", dir, ": ", strerror(errno));
      break;
    }
    kj::StringPtr name = e->d_name;
    if (!isSpillFileName(name)) continue;
    struct stat st;
    if (fstatat(dfd, name.cStr(), &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) continue;
    if (unlinkat(dfd, name.cStr(), 0) < 0) {
      logWarning("spill store: cannot delete leftover ", dir, "/", name, ": ", strerror(errno));
      continue;
    }
    leftovers.files++;
    leftovers.bytes += uint64_t(st.st_size);
  }
  if (leftovers.files > 0) {
    logInfo("spill store: removed ", leftovers.files, " leftover spill files (", leftovers.bytes,
            " bytes) of a previous daemon from ", dir);
  }
}

kj::String SpillStore::makePath(Kind kind, uint32_t id) const {
  return kj::str(options.directory, kind == Kind::BATCH ? "/spill-" : "/object-", id, kNameSuffix);
}

kj::String SpillStore::pathOf(uint32_t fileId) const {
  KJ_IF_MAYBE(file, files.find(fileId)) {
    return kj::str((*file)->path);
  }
  KJ_FAIL_REQUIRE("no spill file with this id", fileId);
}

uint32_t SpillStore::allocateFileId() {
  // Ids are reused after wrapping (2^24 - 1 of them), skipping the ones in use: a file is
  // unlinked before its id leaves `files`, so a reused id never meets an old file.
  for (uint32_t tries = 0; tries < SpillLocation::kMaxFileId; ++tries) {
    uint32_t id = nextFileId;
    nextFileId = nextFileId == SpillLocation::kMaxFileId ? 1 : nextFileId + 1;
    if (files.find(id) == nullptr) return id;
  }
  RS_FAIL(INTERNAL, "all ", SpillLocation::kMaxFileId, " spill file ids are in use");
}

SpillStore::File& SpillStore::newFile(Kind kind) {
  uint32_t id = allocateFileId();
  auto file = kj::heap<File>();
  file->id = id;
  file->kind = kind;
  file->path = makePath(kind, id);
  auto& ref = *file;
  files.insert(id, kj::mv(file));
  return ref;
}

SpillStore::File& SpillStore::fileFor(uint32_t fileId, const char* what) {
  KJ_IF_MAYBE(file, files.find(fileId)) {
    return **file;
  }
  RS_FAIL(INTERNAL, what, ": no spill file ", fileId, " (already removed?)");
}

kj::Promise<SpillLocation> SpillStore::write(kj::ArrayPtr<const kj::byte> data,
                                             kj::Own<void> keepAlive) {
  if (data.size() == 0) return SpillLocation{0, 0, 0};
  return kj::evalNow([&]() {
    return data.size() <= options.smallObjectLimit ? writeSmall(data, kj::mv(keepAlive))
                                                   : writeLarge(data, kj::mv(keepAlive));
  });
}

SpillStore::File& SpillStore::currentBatchFor(uint64_t length) {
  KJ_IF_MAYBE(id, currentBatch) {
    File& file = fileFor(*id, "append");
    if (!file.broken && file.appendOffset + length <= options.batchFileBytes) return file;
    currentBatch = nullptr;
    destroyIfDead(file);
  }
  File& file = newFile(Kind::BATCH);
  currentBatch = file.id;
  uint32_t id = file.id;
  file.created =
      uv.runInPool<kj::Own<CreatedFile>>(
            [path = kj::str(file.path), dir = kj::str(options.directory)]() mutable {
              return createFile(kj::mv(path), 0, dir);
            })
          .then(
              [this, id](kj::Own<CreatedFile> created) {
                File& file = fileFor(id, "batch created");
                file.fd = kj::refcounted<SharedFd>(created->adopt());
                file.creating = false;
                // No cleanup here: the writes waiting on this fork settle the entries.
              },
              [this, id](kj::Exception&& e) {
                File& file = fileFor(id, "batch failed");
                file.creating = false;
                file.broken = true;
                KJ_IF_MAYBE(current, currentBatch) {
                  if (*current == id) currentBatch = nullptr;
                }
                kj::throwFatalException(kj::mv(e));
              })
          .fork();
  return file;
}

kj::Promise<SpillLocation> SpillStore::writeSmall(kj::ArrayPtr<const kj::byte> data,
                                                  kj::Own<void> keepAlive) {
  File& file = currentBatchFor(data.size());
  // Reserve [offset, offset + size) now, on the loop thread; the pool only fills it in.
  uint64_t offset = file.appendOffset;
  file.appendOffset += data.size();
  file.entries++;

  auto paf = kj::newPromiseAndFulfiller<SpillLocation>();
  auto pending = kj::heap<PendingWrite>(
      PendingWrite{file.id, offset, data, kj::mv(keepAlive), kj::mv(paf.fulfiller)});
  auto& w = *pending;
  kj::Promise<void> ready = file.fd.get() != nullptr
                                ? kj::Promise<void>(kj::READY_NOW)
                                : KJ_ASSERT_NONNULL(file.created).addBranch();
  tasks.add(ready
                .then([this, &w]() -> kj::Promise<void> {
                  if (!w.fulfiller->isWaiting()) return kj::READY_NOW;  // abandoned: skip I/O
                  File& file = fileFor(w.fileId, "batch write");
                  return uv.runInPool<void>([fd = kj::addRef(*file.fd), data = w.data, offset = w.offset,
                       keepAlive = kj::mv(w.keepAlive), path = kj::str(file.path),
                       dir = kj::str(options.directory)]() {
                        writeAll(fd->get(), data.begin(), data.size(), offset, dir, path);
                      });
                })
                .then([this, &w]() { finishWrite(w, nullptr); },
                      [this, &w](kj::Exception&& e) { finishWrite(w, kj::mv(e)); })
                .attach(kj::mv(pending)));
  return kj::mv(paf.promise);
}

kj::Promise<SpillLocation> SpillStore::writeLarge(kj::ArrayPtr<const kj::byte> data,
                                                  kj::Own<void> keepAlive) {
  File& file = newFile(Kind::OBJECT);
  file.entries = 1;

  auto paf = kj::newPromiseAndFulfiller<SpillLocation>();
  auto pending = kj::heap<PendingWrite>(
      PendingWrite{file.id, 0, data, kj::Own<void>(), kj::mv(paf.fulfiller)});
  auto& w = *pending;
  tasks.add(
      uv.runInPool<kj::Own<CreatedFile>>(
            [path = kj::str(file.path), dir = kj::str(options.directory), data,
             keepAlive = kj::mv(keepAlive)]() mutable {
              auto created = createFile(kj::mv(path), data.size(), dir);
              int fd = created->fd.get();
              // Reserve all blocks first: a full disk fails here, before any byte is written.
              // A filesystem without fallocate just allocates as pwrite goes.
              if (retryEintr([&]() { return fallocate(fd, 0, 0, off_t(data.size())); }) < 0 &&
                  errno != EOPNOTSUPP) {
                failWrite(errno, data.size(), dir, "reserving", created->path);
              }
              writeAll(fd, data.begin(), data.size(), 0, dir, created->path);
              return created;  // on any throw above, `created` unlinks the file
            })
          .then(
              [this, &w](kj::Own<CreatedFile> created) {
                File& file = fileFor(w.fileId, "object written");
                file.fd = kj::refcounted<SharedFd>(created->adopt());
                file.creating = false;
                finishWrite(w, nullptr);
              },
              [this, &w](kj::Exception&& e) {
                fileFor(w.fileId, "object failed").creating = false;
                finishWrite(w, kj::mv(e));
              })
          .attach(kj::mv(pending)));
  return kj::mv(paf.promise);
}

void SpillStore::finishWrite(PendingWrite& w, kj::Maybe<kj::Exception> error) {
  KJ_IF_MAYBE(e, error) {
    entryDead(w.fileId, 0);  // no reservation outlives a failed write
    if (w.fulfiller->isWaiting()) w.fulfiller->reject(kj::mv(*e));
  } else if (!w.fulfiller->isWaiting()) {
    entryDead(w.fileId, 0);  // nobody will ever know the location: the entry is dead
  } else {
    File& file = fileFor(w.fileId, "commit");
    file.liveBytes += w.data.size();
    liveBytes += w.data.size();
    w.fulfiller->fulfill(SpillLocation{w.fileId, w.offset, w.data.size()});
  }
}

kj::Promise<void> SpillStore::read(SpillLocation where, kj::ArrayPtr<kj::byte> out,
                                   kj::Own<void> keepAlive) {
  return kj::evalNow([&]() -> kj::Promise<void> {
    KJ_REQUIRE(out.size() == where.length, "spill read buffer size mismatch", out.size(),
               where.length);
    if (where.length == 0) return kj::READY_NOW;
    File& file = fileFor(where.fileId, "read");
    KJ_REQUIRE(file.fd.get() != nullptr, "reading a spill entry that was never written");
    return uv.runInPool<void>([fd = kj::addRef(*file.fd), out = out.begin(), where,
                               path = kj::str(file.path), keepAlive = kj::mv(keepAlive)]() {
      readAll(fd->get(), out, where.length, where.offset, path);
    });
  });
}

void SpillStore::remove(SpillLocation where) {
  if (where.fileId == 0) return;  // zero-length object: nothing on disk
  File& file = fileFor(where.fileId, "remove");
  KJ_REQUIRE(file.entries > 0 && file.liveBytes >= where.length && file.fd.get() != nullptr,
             "removing a spill entry that is not live", where.fileId, where.offset, where.length);
  file.entries--;
  file.liveBytes -= where.length;
  liveBytes -= where.length;
  if (file.entries == 0) {
    destroyIfDead(file);
    return;
  }
  // A live batch file: give the dead range's whole blocks back to the filesystem. Only bytes of
  // this entry are zeroed, so concurrent writes and reads of other entries are unaffected.
  uint64_t start = (where.offset + kPunchBlock - 1) / kPunchBlock * kPunchBlock;
  uint64_t end = (where.offset + where.length) / kPunchBlock * kPunchBlock;
  if (end > start) {
    // Fire and forget: the job owns its descriptor reference; failure (EOPNOTSUPP) is harmless.
    (void)uv.runInPool<void>([fd = kj::addRef(*file.fd), start, end]() {
      fallocate(fd->get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(start),
                off_t(end - start));
    });
  }
}

void SpillStore::entryDead(uint32_t fileId, uint64_t committed) {
  File& file = fileFor(fileId, "entry dead");
  KJ_ASSERT(file.entries > 0 && file.liveBytes >= committed);
  file.entries--;
  file.liveBytes -= committed;
  liveBytes -= committed;
  destroyIfDead(file);
}

void SpillStore::destroyIfDead(File& file) {
  // An empty batch file goes even while it is the one being appended to: an idle store keeps
  // no files, and the next small write simply starts a new batch.
  if (file.entries > 0 || file.creating) return;
  KJ_IF_MAYBE(current, currentBatch) {
    if (*current == file.id) currentBatch = nullptr;
  }
  destroyFile(file);
}

void SpillStore::destroyFile(File& file) {
  uint32_t id = file.id;
  if (file.fd.get() != nullptr) {
    // Unlink now, while we hold the file open: only the directory entry goes. The blocks are
    // freed at the last close, which we move to the pool unless a pool job still uses the fd
    // (then that job's reference is the last one).
    if (unlink(file.path.cStr()) < 0 && errno != ENOENT) {
      logWarning("spill store: cannot delete ", file.path, ": ", strerror(errno));
    }
    if (!file.fd->isShared()) {
      int raw = file.fd->release().release();
      (void)uv.runInPool<void>([raw]() { close(raw); });
    }
  }
  // A file whose creation failed has nothing on disk (the pool job removed what it made).
  files.erase(id);
}

}  // namespace refstore::server
