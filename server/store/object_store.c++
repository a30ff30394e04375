#include "server/store/object_store.h"

#include <time.h>

#include "server/runtime/errors.h"
#include "server/runtime/log.h"
#include "server/store/names.h"
#include "server/store/packed_location.h"
#include "server/store/store_clock.h"

namespace refstore::server {

ObjectStore::ObjectStore(Options options)
    : originEpoch(options.origin),
      bounds(options.limits),
      timer(options.timer),
      startedAt(options.timer.now()),
      memory(options.memory, options.files),
      objects(options.origin, [this](const gc::ObjectRecord& record) { reclaim(record); }),
      hashes(objects, memory, options.timer, options.hashing),
      admission(memory, hashes, options.timer, options.policy, bounds,
                kj::mv(options.afterAllocate),
                [this]() {
                  KJ_IF_MAYBE(s, spiller) { (*s)->maybeSpill(); }
                }),
      proxies(options.proxies),
      tokens(objects, options.timer, options.origin, bounds, options.advertise) {
  KJ_IF_MAYBE(disk, options.spill) {
    KJ_REQUIRE(options.files != nullptr, "spilling needs a file-backed allocator too");
    spiller = kj::heap<Spiller>(objects, memory, admission, hashes, *disk, options.timer);
  }
}

ObjectStore::~ObjectStore() noexcept(false) {}

// --- objects ---------------------------------------------------------------------------

gc::ObjectTable::Created ObjectStore::create(kj::Own<Reservation> memory, uint64_t size,
                                             gc::ClientId creator) {
  shm::Allocation allocation = memory->take();
  return objects.create(size, packLocation(allocation.segmentId, allocation.offset), creator,
                        monoMillis(timer));
}

void ObjectStore::throwChildrenRefused(gc::ObjectId id,
                                       const std::vector<gc::ObjectId>& children) const {
  for (auto child: children) {
    auto found = objects.find(child);
    RS_REQUIRE(found != nullptr && !found->dead, NOT_FOUND, "child ", gc::toHex(child).c_str(),
               " no longer exists");
  }
  RS_FAIL(CYCLE, "object ", gc::toHex(id).c_str(),
          " would contain itself through its children");
}

void ObjectStore::seal(gc::ObjectId id, const std::vector<gc::ObjectId>& children) {
  auto& object = record(id);
  RS_REQUIRE(object.state == gc::ObjectState::CREATING, FAILED_PRECONDITION,
             "object is already ", gc::stateName(object.state));
  bytes(id);  // marks it used
  if (!objects.seal(id, 0, 0, children)) throwChildrenRefused(id, children);
  hashes.sealed(id);
}

gc::ObjectTable::Created ObjectStore::put(kj::Own<Reservation> memory,
                                          kj::ArrayPtr<const kj::byte> data,
                                          const std::vector<gc::ObjectId>& children,
                                          gc::ClientId creator) {
  KJ_ASSERT(memory->get().size >= data.size());
  memcpy(memory->get().ptr, data.begin(), data.size());
  uint64_t packed = packLocation(memory->get().segmentId, memory->get().offset);
  auto created = objects.createSealed(data.size(), 0, 0, packed, creator, monoMillis(timer), children);
  if (created.writer == 0) throwChildrenRefused(created.id, children);  // memory goes back
  memory->take();
  hashes.sealed(created.id);
  return created;
}

// --- futures ---------------------------------------------------------------------------

gc::ObjectTable::Created ObjectStore::promise(gc::ClientId creator) {
  return objects.createPromise(creator, monoMillis(timer));
}

void ObjectStore::fulfill(gc::ObjectId id, kj::Own<Reservation> memory,
                          kj::ArrayPtr<const kj::byte> data,
                          const std::vector<gc::ObjectId>& children) {
  auto& object = record(id);
  RS_REQUIRE(object.state == gc::ObjectState::PROMISED && !object.dead, FAILED_PRECONDITION,
             "the promise is already ", gc::stateName(object.state));
  KJ_ASSERT(memory->get().size >= data.size());
  memcpy(memory->get().ptr, data.begin(), data.size());
  uint64_t packed = packLocation(memory->get().segmentId, memory->get().offset);
  if (!objects.fulfill(id, data.size(), packed, 0, 0, children)) {
    throwChildrenRefused(id, children);  // the reservation gives the memory back
  }
  memory->take();
  hashes.sealed(id);
  waiters.wake(id);
}

void ObjectStore::fulfillWith(gc::ObjectId id, gc::ObjectId target) {
  auto& object = record(id);
  RS_REQUIRE(object.state == gc::ObjectState::PROMISED && !object.dead, FAILED_PRECONDITION,
             "the promise is already ", gc::stateName(object.state));
  if (!objects.fulfillWith(id, target)) throwChildrenRefused(id, {target});
  waiters.wake(id);
}

bool ObjectStore::fail(gc::ObjectId id, kj::String description) {
  auto found = objects.find(id);
  if (found == nullptr || found->state != gc::ObjectState::PROMISED || found->dead) return false;
  KJ_ASSERT(objects.reject(id));
  waiters.setFailure(id, kj::mv(description));
  waiters.wake(id);
  return true;
}

kj::Promise<void> ObjectStore::whenReady(gc::ObjectId id) {
  gc::ObjectId target = resolve(id);
  auto& object = record(target);
  switch (object.state) {
    case gc::ObjectState::REMOTE:
      return KJ_ASSERT_NONNULL(proxies).whenSettled(target);
    case gc::ObjectState::PROMISED:
      // Re-evaluate from `id` once it settles: it may have become an alias of another promise.
      return waiters.wait(target).then([this, id]() { return whenReady(id); });
    case gc::ObjectState::FAILED: {
      kj::StringPtr failure = waiters.failure(target);
      kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                            kj::str(failure)));
    }
    default:
      return kj::READY_NOW;
  }
}

bool ObjectStore::readableNow(gc::ObjectId id) const {
  const gc::ObjectRecord& object = record(resolve(id));
  gc::ObjectState state = object.state;
  if (state == gc::ObjectState::REMOTE) return object.bytesLocal;
  return state != gc::ObjectState::PROMISED && state != gc::ObjectState::FAILED &&
         state != gc::ObjectState::SPILLED;
}

// --- access ----------------------------------------------------------------------------

const gc::ObjectRecord& ObjectStore::record(gc::ObjectId id) const {
  const gc::ObjectRecord* found = objects.find(id);
  RS_REQUIRE(found != nullptr, NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
  return *found;
}

kj::ArrayPtr<kj::byte> ObjectStore::bytes(gc::ObjectId id) {
  auto& object = record(id);
  KJ_ASSERT(gc::ObjectTable::ownsBytes(object) && object.state != gc::ObjectState::SPILLED,
            "object has no bytes in memory", gc::stateName(object.state));
  KJ_IF_MAYBE(s, spiller) { (*s)->used(id); }
  return memory.bytesOf(object);
}

Location ObjectStore::location(gc::ObjectId id) const { return memory.locationOf(record(id)); }

kj::Promise<void> ObjectStore::ensureResident(gc::ObjectId id) {
  return bringHere(id, ProxyDoor::Wanted::BY_READER);
}

kj::Promise<void> ObjectStore::prefetch(gc::ObjectId id) {
  return bringHere(id, ProxyDoor::Wanted::AHEAD);
}

kj::Promise<void> ObjectStore::bringHere(gc::ObjectId id, ProxyDoor::Wanted wanted) {
  const gc::ObjectRecord& object = record(id);  // NOT_FOUND if it is gone
  if (object.state == gc::ObjectState::REMOTE) {
    if (object.bytesLocal) return kj::READY_NOW;
    return KJ_ASSERT_NONNULL(proxies).whenLocal(id, wanted);
  }
  KJ_IF_MAYBE(s, spiller) { return (*s)->ensureResident(id); }
  return kj::READY_NOW;
}

gc::HolderId ObjectStore::addHolder(gc::ObjectId id, gc::ClientId client) {
  gc::HolderId holder = objects.addHolder(id, client, monoMillis(timer));
  RS_REQUIRE(holder != 0, NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
  return holder;
}

void ObjectStore::removeHolder(gc::HolderId holder) {
  objects.removeHolder(holder);
  hashes.referencesDropped();
}

void ObjectStore::pin(gc::ObjectId id) {
  RS_REQUIRE(objects.pin(id), NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
}

void ObjectStore::unpin(gc::ObjectId id) {
  objects.unpin(id);
  // Its last View gone, a value may be spilled (or a copy evicted) for requests that wait for
  // memory: nothing else would reconsider spilling for them until some memory is freed.
  const gc::ObjectRecord* object = objects.find(id);
  if (object != nullptr && object->pins == 0 && admission.waiting() > 0) admission.memoryFreed();
}

void ObjectStore::reviveProxy(gc::ObjectId id) { objects.reviveProxy(id); }

void ObjectStore::reclaim(const gc::ObjectRecord& object) {
  if (object.state != gc::ObjectState::SPILLED && gc::ObjectTable::ownsBytes(object)) {
    memory.release(object.userData, object.size);
    admission.memoryFreed();  // waiting requests may fit now
  }
  KJ_IF_MAYBE(s, spiller) { (*s)->reclaimed(object); }  // and its disk copy, if spilled
  if (object.state == gc::ObjectState::REMOTE) KJ_ASSERT_NONNULL(proxies).reclaimed(object);
  waiters.forget(object.id);
  reclaimedTotal++;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  lastReclaimMonoUs = uint64_t(now.tv_sec) * 1000000 + uint64_t(now.tv_nsec) / 1000;
}

// --- names -----------------------------------------------------------------------------

void ObjectStore::addName(gc::ObjectId id, kj::StringPtr name) {
  validateName(name);
  RS_REQUIRE(objects.stats().names < bounds.maxNames, RESOURCE_EXHAUSTED, "the daemon holds ",
             bounds.maxNames, " names, its limit (--max-names): unname some");
  switch (objects.addName(id, std::string(name.cStr(), name.size()))) {
    case gc::NameResult::OK: return;
    case gc::NameResult::DUPLICATE: RS_FAIL(ALREADY_EXISTS, "the name '", name, "' is taken");
    case gc::NameResult::NOT_FOUND: break;
  }
  RS_FAIL(NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
}

gc::ObjectId ObjectStore::lookupName(kj::StringPtr name) const {
  validateName(name);
  auto found = objects.lookupName(std::string(name.cStr(), name.size()));
  RS_REQUIRE(found.has_value(), NOT_FOUND, "no object is named '", name, "'");
  return *found;
}

void ObjectStore::removeName(kj::StringPtr name) {
  validateName(name);
  RS_REQUIRE(objects.removeName(std::string(name.cStr(), name.size())) == gc::NameResult::OK,
             NOT_FOUND, "no object is named '", name, "'");
}

// --- other daemons' objects ----------------------------------------------------------------

gc::ObjectTable::Created ObjectStore::createProxy(gc::ObjectId ownerId, gc::ClientId creator) {
  KJ_REQUIRE(proxies != nullptr, "this store makes no proxies");
  auto created = objects.createProxy(ownerId, creator, monoMillis(timer));
  RS_REQUIRE(created.writer != 0, FAILED_PRECONDITION, "a proxy of object ",
             gc::toHex(ownerId).c_str(), " exists already");
  return created;
}

void ObjectStore::setProxyInfo(gc::ObjectId proxy, uint64_t size, uint64_t hashHi,
                               uint64_t hashLo) {
  objects.setProxyInfo(proxy, size, hashHi, hashLo);
}

void ObjectStore::storeProxyBytes(gc::ObjectId proxy, kj::Own<Reservation> memory,
                                  uint64_t size, uint64_t hashHi, uint64_t hashLo) {
  const shm::Allocation& allocation = memory->get();
  uint64_t packed = packLocation(allocation.segmentId, allocation.offset);
  RS_REQUIRE(objects.setProxyBytes(proxy, size, packed, hashHi, hashLo), NOT_FOUND, "proxy ",
             gc::toHex(proxy).c_str(), " no longer exists or already has its bytes");
  memory->take();  // the proxy owns them now; reclaiming or evicting it frees them
}

// --- introspection ---------------------------------------------------------------------

StoreStats ObjectStore::stats() const {
  StoreStats stats;
  stats.table = objects.stats();
  const shm::Allocator& shared = memory.sharedMemory();
  stats.bytesUsed = shared.bytesAllocated();
  stats.capacity = shared.capacity();
  stats.segments = shared.segmentCount();
  stats.segmentBytes = shared.segmentBytes();
  stats.clients = registry.size();
  stats.uptimeMs = (timer.now() - startedAt) / kj::MILLISECONDS;
  stats.putsTotal = admission.grantsTotal();
  stats.reclaimedTotal = reclaimedTotal;
  stats.lastReclaimMonoUs = lastReclaimMonoUs;
  stats.backgroundHashesTotal = hashes.backgroundHashes();
  KJ_IF_MAYBE(s, spiller) {
    stats.spilledBytes = (*s)->spillStore().bytesOnDisk();
    stats.spillFiles = (*s)->spillStore().fileCount();
    stats.spills = (*s)->counters();
  }
  KJ_IF_MAYBE(files, memory.fileBacked()) { stats.fileBackedBytes = files->bytesAllocated(); }
  stats.queueLength = admission.waiting();
  stats.prefetchesWaiting = admission.prefetchesWaiting();
  KJ_IF_MAYBE(since, admission.oldestWaiterSince()) {
    stats.oldestWaiterMs = (timer.now() - *since) / kj::MILLISECONDS;
  }
  return stats;
}

}  // namespace refstore::server
