// ObjectStore's content hashes: every sealed value gets an XXH3-128 hash (ObjectInfo.hash),
// which info() reports and restores from disk check. Small values are hashed inline when
// sealed. Large ones are hashed later, on the BackgroundHasher's thread, once they have lived
// hashDelayMillis (--hash-delay-ms) or as soon as someone needs the hash (info, spilling),
// whichever comes first. See kDefaultHashDelayMillis in object_store.h for why.
#include <xxhash.h>

#include "server/log.h"
#include "server/object_store.h"

namespace refstore::server {

bool ObjectStore::hashesInline(uint64_t size) const {
  return backgroundHasher == nullptr || hashPool == nullptr || size <= kHashInlineBytes;
}

kj::Promise<XXH128_hash_t> ObjectStore::hashOf(kj::ArrayPtr<const kj::byte> data) {
  if (hashesInline(data.size())) return XXH3_128bits(data.begin(), data.size());
  return KJ_ASSERT_NONNULL(hashPool).runInPool<XXH128_hash_t>(
      [data]() { return XXH3_128bits(data.begin(), data.size()); });
}

void ObjectStore::recordHash(gc::ObjectId id) {
  auto data = memoryOf(*objects.find(id));
  if (hashesInline(data.size())) {
    XXH128_hash_t hash = XXH3_128bits(data.begin(), data.size());
    KJ_ASSERT(objects.setHash(id, hash.high64, hash.low64));
    return;
  }
  hashQueue.push_back({nowMillis() + hashDelayMillis, id});
  if (!hashQueueArmed) {
    hashQueueArmed = true;
    hashQueueTask = hashQueueLoop().eagerlyEvaluate([this](kj::Exception&& e) {
      // Not expected (each entry's failure is caught below), but never leave the queue unserved:
      // the next recordHash starts a new chain.
      logError("hash queue failed: ", e.getDescription());
      hashQueueArmed = false;
    });
  }
}

kj::Promise<void> ObjectStore::hashQueueLoop() {
  // A chain rather than re-arming from inside the callback: replacing hashQueueTask from its own
  // continuation would destroy the running promise. recordHash starts a new chain after this
  // one has ended.
  if (hashQueue.empty()) {
    hashQueueArmed = false;
    return kj::READY_NOW;
  }
  gc::MonoMillis due = hashQueue.front().due;
  return timer.atTime(kj::origin<kj::TimePoint>() + due * kj::MILLISECONDS).then([this]() {
    gc::MonoMillis now = nowMillis();
    while (!hashQueue.empty() && hashQueue.front().due <= now) {
      gc::ObjectId id = hashQueue.front().id;
      hashQueue.pop_front();
      // Nothing to do if it already started or the value died. If it cannot start (the hashing
      // thread is gone), the value still awaits it: whenHashed tries again when it is needed.
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { startDeferredHash(id); })) {
        logError("cannot hash object ", gc::toHex(id).c_str(), ": ", e->getDescription());
      }
    }
    return hashQueueLoop();
  });
}

bool ObjectStore::awaitsHash(const gc::ObjectRecord& object) const {
  // A zero hash means "not hashed yet": small values are hashed when sealed, and values
  // restored from disk keep theirs. A value that died waiting is never hashed: nobody can ask
  // for its hash any more.
  return object.state == gc::ObjectState::SEALED && !object.alias && !object.dead &&
         !hashesInline(object.size) && object.hashHi == 0 && object.hashLo == 0 &&
         hashing.find(object.id.lo) == nullptr;
}

void ObjectStore::startDeferredHash(gc::ObjectId id) {
  const gc::ObjectRecord* object = objects.find(id);
  if (object != nullptr && awaitsHash(*object)) startBackgroundHash(id);  // may throw
}

void ObjectStore::startBackgroundHash(gc::ObjectId id) {
  auto data = memoryOf(*objects.find(id));
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  // Ask the thread first: if it is gone this throws before anything is pinned. The pass may
  // start reading at once, but only this thread frees values, and the pin follows right away.
  auto hashed = KJ_ASSERT_NONNULL(backgroundHasher).hash(data, cancelled);
  // The pin keeps the bytes from being freed or spilled under the hashing thread. So that
  // dropping the value during the pass still frees it at once, the thread stops as soon as the
  // value dies (cancelDeadHashes) instead of holding it for the whole pass.
  KJ_ASSERT(objects.pin(id));
  auto done = kj::mv(hashed)
                  .then(
                      [this, id, cancelled](XXH128_hash_t hash) {
                        if (cancelled->load()) return;
                        objects.setHash(id, hash.high64, hash.low64);
                        backgroundHashesTotal++;
                      },
                      [id](kj::Exception&& e) {
                        // The value keeps a zero hash; the pin and the entry must go regardless.
                        logError("hashing object ", gc::toHex(id).c_str(),
                                 " failed: ", e.getDescription());
                      })
                  .then([this, id]() {
                    hashing.erase(id.lo);  // the branch in `background` keeps the fork alive
                    objects.unpin(id);
                  })
                  .fork();
  background.add(done.addBranch());
  hashing.insert(id.lo, HashInProgress{id, kj::mv(done), kj::mv(cancelled)});
}

void ObjectStore::cancelDeadHashes() {
  for (auto& entry: hashing) {
    const gc::ObjectRecord* object = objects.find(entry.value.id);
    if (object == nullptr || object->dead) entry.value.cancelled->store(true);
  }
}

bool ObjectStore::cancelledHashesRunning() const {
  for (auto& entry: hashing) {
    if (entry.value.cancelled->load()) return true;
  }
  return false;
}

kj::Maybe<kj::Promise<void>> ObjectStore::whenCancelledHashesStop() {
  kj::Vector<kj::Promise<void>> stopping;
  for (auto& entry: hashing) {
    if (entry.value.cancelled->load()) stopping.add(entry.value.done.addBranch());
  }
  if (stopping.empty()) return nullptr;
  return kj::joinPromises(stopping.releaseAsArray());
}

kj::Promise<void> ObjectStore::whenHashed(gc::ObjectId owner) {
  startDeferredHash(owner);  // needed now: do not wait for the delay
  KJ_IF_MAYBE(inProgress, hashing.find(owner.lo)) { return inProgress->done.addBranch(); }
  return kj::READY_NOW;
}

}  // namespace refstore::server
