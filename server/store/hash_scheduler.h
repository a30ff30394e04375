// HashScheduler: every sealed value gets an XXH3-128 hash (ObjectInfo.hash), which Ref.info
// reports and restores from disk check. Small values are hashed inline when sealed. Large ones
// are hashed later, on the BackgroundHasher's thread, once they have lived --hash-delay-ms or as
// soon as someone needs the hash (info, spilling), whichever comes first.
//
// Why later: most large values in a data pipeline are read and dropped within milliseconds of
// sealing, and a pass over each of them took a core and memory bandwidth from the very readers
// it raced (refprobe's 64 MiB handoff on 2 cores: seal to reading every byte 7.4-10.1 ms with an
// immediate hash, 5.2 without). A value that dies before its turn is never hashed; one that
// lives is hashed in the background, pinned meanwhile; a value that dies during its pass has
// its hash cancelled (the thread stops at its next 1 MiB step), so its memory comes back soon.
#pragma once

#include "third_party/fast_xxhash.h"

#include <atomic>
#include <deque>
#include <memory>

#include <kj/async.h>
#include <kj/map.h>
#include <kj/timer.h>

#include "gc/object_table.h"
#include "server/runtime/uv_loop.h"
#include "server/store/background_hasher.h"
#include "server/store/object_memory.h"

namespace refstore::server {

class HashScheduler {
 public:
  // Values up to this size are hashed on the event loop (~0.1 ms at XXH3's ~10 GB/s); larger
  // ones on the background hasher, when there is one.
  static constexpr uint64_t kInlineBytes = 1 << 20;
  static constexpr uint64_t kDefaultDelayMillis = 200;

  struct Options {
    // Without a hasher and a pool every hash is computed inline.
    kj::Maybe<BackgroundHasher&> hasher;
    kj::Maybe<UvLoop&> pool;  // for hashes someone waits for (a restore's check)
    uint64_t delayMillis = kDefaultDelayMillis;
  };
  HashScheduler(gc::ObjectTable& objects, const ObjectMemory& memory, kj::Timer& timer,
                Options options);
  ~HashScheduler() noexcept(false);
  KJ_DISALLOW_COPY(HashScheduler);

  // Records the hash of the just-sealed `id`: now (small values), or queues it.
  void sealed(gc::ObjectId id);
  // Resolves once the sealed object `owner` (not an alias) has its hash recorded, starting a
  // deferred hash at once. Also resolves, with the hash still zero, if the value died, its hash
  // was cancelled, or hashing failed (logged). Throws if the hash cannot be started.
  kj::Promise<void> whenHashed(gc::ObjectId owner);
  // XXH3-128 of `data`, which someone waits for (a restore's check): inline when small, else
  // on the pool. The caller keeps `data` alive and in place until it resolves.
  kj::Promise<XXH128_hash_t> hashOf(kj::ArrayPtr<const kj::byte> data);

  // References were dropped: hashes of values that died stop (their pins then go).
  void referencesDropped();
  // Whether a cancelled hash is still running: its value's memory is freed only when the
  // hashing thread notices, so the loop should not busy-poll and take its core meanwhile.
  bool cancelledHashesRunning() const;
  // Resolves once every cancelled hash has stopped and unpinned its value; null if none.
  kj::Maybe<kj::Promise<void>> whenCancelledHashesStop();

  uint64_t backgroundHashes() const { return backgroundHashesTotal; }

 private:
  bool hashesInline(uint64_t size) const;
  kj::Promise<void> queueLoop();                // one timer at the earliest queued hash
  bool awaitsHash(const gc::ObjectRecord& object) const;
  void startDeferred(gc::ObjectId id);          // if it awaitsHash: start it now
  void startInBackground(gc::ObjectId id);      // pinned while the thread reads it

  gc::ObjectTable& objects;
  const ObjectMemory& memory;
  kj::Timer& timer;
  Options options;
  struct InProgress {
    gc::ObjectId id;
    kj::ForkedPromise<void> done;
    std::shared_ptr<std::atomic<bool>> cancelled;  // read by the hashing thread
  };
  kj::HashMap<uint64_t, InProgress> hashing;  // by id.lo
  struct Queued {
    gc::MonoMillis due;
    gc::ObjectId id;
  };
  std::deque<Queued> queue;  // by due time; entries no longer awaitsHash are skipped
  bool queueArmed = false;   // queueTask waits for the front's due time
  kj::Promise<void> queueTask = nullptr;
  uint64_t backgroundHashesTotal = 0;
  struct ErrorLogger: kj::TaskSet::ErrorHandler {
    void taskFailed(kj::Exception&& e) override;
  } errorLogger;
  kj::TaskSet tasks{errorLogger};
};

}  // namespace refstore::server
