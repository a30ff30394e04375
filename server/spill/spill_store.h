// SpillStore: sealed objects' bytes on disk, for when shared memory runs short (DESIGN.md,
// "Memory pressure").
//
// Layout of the spill directory (created 0700, owned by one daemon at a time):
//   LOCK                 flock(LOCK_EX) held for the store's lifetime; contains the owner's pid.
//   spill-<id>.dat       batch file: objects up to Options::smallObjectLimit, appended one after
//                        another (a million tiny objects make a handful of files, not a million).
//   object-<id>.dat      one larger object per file (reserved with fallocate, then written).
//   filebacked-<id>.dat  file-backed segments of FileBackedAllocator (file_backed.h).
// Spilled bytes do not survive the daemon: at start every file matching these three patterns is a
// leftover of a crashed daemon and is deleted (other files are left alone); the destructor
// deletes the store's own files.
//
// Threading and I/O. Everything here runs on the event-loop thread, except the data I/O:
// creating a spill file and fallocate/pwrite/pread/hole punching/the final close run on libuv's
// threadpool (UvLoop::runInPool). Pool jobs capture only plain values and a reference-counted
// descriptor (SharedFd) that is only ever add-ref'd or released on the loop thread, so a job
// never touches SpillStore state and may outlive both its promise and the store. Unlinking a file
// is done on the loop thread while the store still holds it open (a directory-entry removal; the
// expensive freeing of the blocks happens at the final close, which runs on the pool).
// The constructor's startup work (mkdir, lock, deleting leftovers) is synchronous.
//
// Disk full. ENOSPC, EDQUOT and EFBIG (RLIMIT_FSIZE) reject the write with
// "refstore.OUT_OF_DISK: ..." naming the directory; the failed entry is dead at once (no
// reservation stays behind) and the store keeps working. EFBIG comes with SIGXFSZ, whose default
// action kills the process: refstored ignores SIGXFSZ (main: signal(SIGXFSZ, SIG_IGN)), and so
// must any other process using this class.
//
// Cancellation. Dropping the promise of write() or read() never leaves dangling state: the pool
// job keeps its own descriptor reference, and the store finishes the bookkeeping when the job
// completes (an abandoned write's entry is dead and its space is released). The job may however
// still be reading `data` or writing `out` after the promise is gone: pass `keepAlive` (anything
// that keeps that memory valid and unused) and it is released on the loop thread only after the
// job has finished.

#pragma once

#include <cstddef>
#include <cstdint>

#include <kj/async.h>
#include <kj/common.h>
#include <kj/io.h>
#include <kj/map.h>
#include <kj/memory.h>
#include <kj/refcount.h>
#include <kj/string.h>

#include "server/runtime/uv_loop.h"

namespace refstore::server {

// Where write() put an object's bytes. fileId 0 means "no file" (a zero-length object).
struct SpillLocation {
  uint32_t fileId = 0;
  uint64_t offset = 0;
  uint64_t length = 0;

  static constexpr uint32_t kFileIdBits = 24;
  static constexpr uint32_t kOffsetBits = 40;
  static constexpr uint32_t kMaxFileId = (uint32_t(1) << kFileIdBits) - 1;
  static constexpr uint64_t kMaxOffset = (uint64_t(1) << kOffsetBits) - 1;

  // fileId (24 bits) and offset (40 bits) in one word: fileId << 40 | offset. The length is not
  // packed: the caller knows the object's size.
  uint64_t pack() const { return (uint64_t(fileId) << kOffsetBits) | offset; }
  static SpillLocation unpack(uint64_t packed, uint64_t length) {
    return SpillLocation{uint32_t(packed >> kOffsetBits), packed & kMaxOffset, length};
  }
  bool operator==(const SpillLocation& o) const {
    return fileId == o.fileId && offset == o.offset && length == o.length;
  }
};

class SpillStore {
 public:
  struct Options {
    kj::String directory;
    uint64_t smallObjectLimit = 1 << 20;  // objects up to this size go into batch files
    uint64_t batchFileBytes = 64 << 20;   // a batch file takes no more appends beyond this
  };

  // Startup: creates `directory` (mkdir -p, mode 0700), takes the exclusive lock on
  // "<directory>/LOCK" and deletes leftover spill files (logging how many files and bytes).
  // Throws "refstore.FAILED_PRECONDITION: ..." if another live process holds the lock,
  // "refstore.INVALID_ARGUMENT: ..." for bad options and "refstore.INTERNAL: ..." when the
  // directory cannot be created or read.
  SpillStore(UvLoop& uv, Options options);
  // Deletes the store's spill files and releases the lock. Pool jobs still in flight finish on
  // their own (they own what they use); the UvLoop must outlive the store.
  ~SpillStore() noexcept(false);
  KJ_DISALLOW_COPY(SpillStore);

  // Writes `data` to disk. `data` must stay valid and unchanged until the promise resolves (or,
  // if the promise is dropped earlier, until `keepAlive` is released; see "Cancellation").
  // Rejects with "refstore.OUT_OF_DISK: ..." when the disk (quota, file-size limit) is full.
  kj::Promise<SpillLocation> write(kj::ArrayPtr<const kj::byte> data,
                                   kj::Own<void> keepAlive = {});

  // Reads a live entry back; out.size() must equal where.length. Rejects with
  // "refstore.CORRUPTED: ..." when the file is shorter than the entry or unreadable (EIO).
  // Removing the entry while a read of it is in flight makes the read's result unspecified.
  kj::Promise<void> read(SpillLocation where, kj::ArrayPtr<kj::byte> out,
                         kj::Own<void> keepAlive = {});

  // The entry is dead (call exactly once per successful write). A per-object file is deleted
  // now; a batch file when all its entries are dead and it is no longer appended to. Dead ranges
  // inside a live batch file are hole-punched when they cover whole 4 KiB blocks.
  void remove(SpillLocation where);

  uint64_t bytesOnDisk() const { return liveBytes; }  // sum of lengths of live entries
  size_t fileCount() const { return files.size(); }    // spill files (being) created, not deleted
  kj::String pathOf(uint32_t fileId) const;            // of a file the store currently has
  kj::StringPtr directory() const { return options.directory; }

  // What the constructor deleted (for tests and logs).
  struct Leftovers {
    size_t files = 0;
    uint64_t bytes = 0;
  };
  Leftovers leftoversRemoved() const { return leftovers; }

  // A descriptor shared by the store and its pool jobs. Only add-ref'd and released on the loop
  // thread; pool threads only use get(). Public for the implementation's helper functions.
  class SharedFd final: public kj::Refcounted {
   public:
    explicit SharedFd(kj::AutoCloseFd fd): fd(kj::mv(fd)) {}
    int get() const { return fd.get(); }
    kj::AutoCloseFd release() { return kj::mv(fd); }

   private:
    kj::AutoCloseFd fd;
  };

 private:
  enum class Kind { BATCH, OBJECT };
  struct File {
    uint32_t id;
    Kind kind;
    kj::String path;
    kj::Own<SharedFd> fd;              // null while being created (or if creation failed)
    kj::Maybe<kj::ForkedPromise<void>> created;  // BATCH: resolves once `fd` is set
    uint64_t appendOffset = 0;         // BATCH: where the next reservation starts
    uint64_t entries = 0;              // reserved or live entries
    uint64_t liveBytes = 0;            // committed bytes of live entries
    bool creating = true;              // the pool job creating the file has not completed
    bool broken = false;               // creating failed: never append again
  };
  struct PendingWrite;
  class ErrorHandler final: public kj::TaskSet::ErrorHandler {
   public:
    void taskFailed(kj::Exception&& exception) override;
  };

  uint32_t allocateFileId();
  File& newFile(Kind kind);
  File& fileFor(uint32_t fileId, const char* what);
  kj::String makePath(Kind kind, uint32_t id) const;
  File& currentBatchFor(uint64_t length);
  kj::Promise<SpillLocation> writeSmall(kj::ArrayPtr<const kj::byte> data,
                                        kj::Own<void> keepAlive);
  kj::Promise<SpillLocation> writeLarge(kj::ArrayPtr<const kj::byte> data,
                                        kj::Own<void> keepAlive);
  // Commits (or, on error or if nobody waits any more, buries) a write's entry; settles its promise.
  void finishWrite(PendingWrite& write, kj::Maybe<kj::Exception> error);
  // One entry of `file` is dead; `committed` is how many of its bytes counted as live.
  void entryDead(uint32_t fileId, uint64_t committed);
  void destroyIfDead(File& file);
  void destroyFile(File& file);  // unlink now, close on the pool, forget
  void removeLeftovers();

  UvLoop& uv;
  Options options;
  kj::AutoCloseFd lockFd;
  kj::HashMap<uint32_t, kj::Own<File>> files;
  kj::Maybe<uint32_t> currentBatch;  // the batch file being appended to
  uint32_t nextFileId = 1;
  uint64_t liveBytes = 0;
  Leftovers leftovers;
  ErrorHandler errorHandler;
  kj::TaskSet tasks;  // last: destroyed first, cancelling continuations that use `this`
};

}  // namespace refstore::server
