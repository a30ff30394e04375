#include "server/store/hash_scheduler.h"

#include "server/runtime/log.h"
#include "server/store/store_clock.h"

namespace refstore::server {

void HashScheduler::ErrorLogger::taskFailed(kj::Exception&& e) {
  logError("hash task failed: ", e.getDescription());
}

HashScheduler::HashScheduler(gc::ObjectTable& objects, const ObjectMemory& memory,
                             kj::Timer& timer, Options options)
    : objects(objects), memory(memory), timer(timer), options(options) {}

HashScheduler::~HashScheduler() noexcept(false) {
  // Destroying the hashes' promises waits for passes in progress: make them stop at their next
  // 1 MiB step rather than read the whole value.
  for (auto& entry: hashing) entry.value.cancelled->store(true);
}

bool HashScheduler::hashesInline(uint64_t size) const {
  return options.hasher == nullptr || options.pool == nullptr || size <= kInlineBytes;
}

kj::Promise<XXH128_hash_t> HashScheduler::hashOf(kj::ArrayPtr<const kj::byte> data) {
  if (hashesInline(data.size())) return XXH3_128bits(data.begin(), data.size());
  return KJ_ASSERT_NONNULL(options.pool).runInPool<XXH128_hash_t>(
      [data]() { return XXH3_128bits(data.begin(), data.size()); });
}

void HashScheduler::sealed(gc::ObjectId id) {
  auto data = memory.bytesOf(*objects.find(id));
  if (hashesInline(data.size())) {
    XXH128_hash_t hash = XXH3_128bits(data.begin(), data.size());
    KJ_ASSERT(objects.setHash(id, hash.high64, hash.low64));
    return;
  }
  queue.push_back({monoMillis(timer) + options.delayMillis, id});
  if (!queueArmed) {
    queueArmed = true;
    queueTask = queueLoop().eagerlyEvaluate([this](kj::Exception&& e) {
      // Not expected (each entry's failure is caught below), but never leave the queue unserved:
      // the next sealed() starts a new chain.
      logError("hash queue failed: ", e.getDescription());
      queueArmed = false;
    });
  }
}

kj::Promise<void> HashScheduler::queueLoop() {
  // A chain rather than re-arming from inside the callback: replacing queueTask from its own
  // continuation would destroy the running promise. sealed() starts a new chain after this one
  // has ended.
  if (queue.empty()) {
    queueArmed = false;
    return kj::READY_NOW;
  }
  gc::MonoMillis due = queue.front().due;
  return timer.atTime(kj::origin<kj::TimePoint>() + due * kj::MILLISECONDS).then([this]() {
    gc::MonoMillis now = monoMillis(timer);
    while (!queue.empty() && queue.front().due <= now) {
      gc::ObjectId id = queue.front().id;
      queue.pop_front();
      // Nothing to do if it already started or the value died. If it cannot start (the hashing
      // thread is gone), the value still awaits it: whenHashed tries again when it is needed.
      KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { startDeferred(id); })) {
        logError("cannot hash object ", gc::toHex(id).c_str(), ": ", e->getDescription());
      }
    }
    return queueLoop();
  });
}

bool HashScheduler::awaitsHash(const gc::ObjectRecord& object) const {
  // A zero hash means "not hashed yet": small values are hashed when sealed, and values
  // restored from disk keep theirs. A value that died waiting is never hashed: nobody can ask
  // for its hash any more.
  return object.state == gc::ObjectState::SEALED && !object.alias && !object.dead &&
         !hashesInline(object.size) && object.hashHi == 0 && object.hashLo == 0 &&
         hashing.find(object.id.lo) == nullptr;
}

void HashScheduler::startDeferred(gc::ObjectId id) {
  const gc::ObjectRecord* object = objects.find(id);
  if (object != nullptr && awaitsHash(*object)) startInBackground(id);  // may throw
}

void HashScheduler::startInBackground(gc::ObjectId id) {
  auto data = memory.bytesOf(*objects.find(id));
  auto cancelled = std::make_shared<std::atomic<bool>>(false);
  // Ask the thread first: if it is gone this throws before anything is pinned. The pass may
  // start reading at once, but only this thread frees values, and the pin follows right away.
  auto hashed = KJ_ASSERT_NONNULL(options.hasher).hash(data, cancelled);
  // The pin keeps the bytes from being freed or spilled under the hashing thread. So that
  // dropping the value during the pass still frees it at once, the thread stops as soon as the
  // value dies (referencesDropped) instead of holding it for the whole pass.
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
                    hashing.erase(id.lo);  // the branch in `tasks` keeps the fork alive
                    objects.unpin(id);
                  })
                  .fork();
  tasks.add(done.addBranch());
  hashing.insert(id.lo, InProgress{id, kj::mv(done), kj::mv(cancelled)});
}

void HashScheduler::referencesDropped() {
  for (auto& entry: hashing) {  // at most a few values are being hashed
    const gc::ObjectRecord* object = objects.find(entry.value.id);
    if (object == nullptr || object->dead) entry.value.cancelled->store(true);
  }
}

bool HashScheduler::cancelledHashesRunning() const {
  for (auto& entry: hashing) {
    if (entry.value.cancelled->load()) return true;
  }
  return false;
}

kj::Maybe<kj::Promise<void>> HashScheduler::whenCancelledHashesStop() {
  kj::Vector<kj::Promise<void>> stopping;
  for (auto& entry: hashing) {
    if (entry.value.cancelled->load()) stopping.add(entry.value.done.addBranch());
  }
  if (stopping.empty()) return nullptr;
  return kj::joinPromises(stopping.releaseAsArray());
}

kj::Promise<void> HashScheduler::whenHashed(gc::ObjectId owner) {
  startDeferred(owner);  // needed now: do not wait for the delay
  KJ_IF_MAYBE(inProgress, hashing.find(owner.lo)) { return inProgress->done.addBranch(); }
  return kj::READY_NOW;
}

}  // namespace refstore::server
