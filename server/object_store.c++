#include "server/object_store.h"

#include <time.h>
#include <xxhash.h>

#include "server/errors.h"
#include "server/log.h"
#include "server/segment_server.h"
#include "server/token.h"

namespace refstore::server {
namespace {

// gc::ObjectRecord::userData holds where the bytes are: segment id in the top 24 bits,
// offset in the low 40 (1 TiB segments are far beyond anything we create).
constexpr int OFFSET_BITS = 40;
uint64_t packLocation(uint32_t segmentId, uint64_t offset) {
  KJ_ASSERT(offset < (uint64_t(1) << OFFSET_BITS) && segmentId < (1u << 24));
  return (uint64_t(segmentId) << OFFSET_BITS) | offset;
}
uint32_t segmentOf(uint64_t packed) { return packed >> OFFSET_BITS; }
uint64_t offsetOf(uint64_t packed) { return packed & ((uint64_t(1) << OFFSET_BITS) - 1); }

uint64_t unixSecondsNow() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return now.tv_sec;
}

}  // namespace

ObjectStore::ObjectStore(shm::Allocator& allocator, kj::Timer& timer, uint64_t origin)
    : allocator(allocator),
      timer(timer),
      originEpoch(origin),
      startedAt(timer.now()),
      objects(origin, [this](const gc::ObjectRecord& record) { reclaim(record); }) {}

ObjectStore::~ObjectStore() noexcept(false) {}

gc::MonoMillis ObjectStore::nowMillis() const {
  return (timer.now() - kj::origin<kj::TimePoint>()) / kj::MILLISECONDS;
}

// --- clients ---------------------------------------------------------------------------

gc::ClientId ObjectStore::addClient(ClientInfo info) {
  gc::ClientId id = nextClientId++;
  clients.insert(id, kj::mv(info));
  return id;
}

void ObjectStore::removeClient(gc::ClientId id) { clients.erase(id); }

ClientInfo& ObjectStore::client(gc::ClientId id) { return KJ_ASSERT_NONNULL(clients.find(id)); }

// --- objects ---------------------------------------------------------------------------

gc::ObjectTable::Created ObjectStore::create(uint64_t size, gc::ClientId creator) {
  RS_REQUIRE(size > 0, INVALID_ARGUMENT, "object size must be at least 1 byte");
  RS_REQUIRE(size <= allocator.capacity(), TOO_LARGE, "object of ", size,
             " bytes exceeds the store's whole capacity of ", allocator.capacity(), " bytes");
  KJ_IF_MAYBE(allocation, allocator.allocate(size)) {
    putsTotal++;
    KJ_IF_MAYBE(listener, afterAllocate) { (*listener)(); }
    return objects.create(size, packLocation(allocation->segmentId, allocation->offset), creator,
                          nowMillis());
  }
  RS_FAIL(OUT_OF_MEMORY, "cannot allocate ", size, " bytes: ", allocator.bytesAllocated(), " of ",
          allocator.capacity(), " bytes in use");
}

void ObjectStore::seal(gc::ObjectId id) {
  auto& object = record(id);
  RS_REQUIRE(object.state == gc::ObjectState::CREATING, FAILED_PRECONDITION,
             "object is already ", gc::stateName(object.state));
  auto data = bytes(id);
  // TODO(perf): hash large objects on the libuv threadpool instead of the event loop.
  XXH128_hash_t hash = XXH3_128bits(data.begin(), data.size());
  KJ_ASSERT(objects.seal(id, hash.high64, hash.low64));
}

gc::ObjectTable::Created ObjectStore::put(kj::ArrayPtr<const kj::byte> data,
                                          gc::ClientId creator) {
  auto created = create(data.size(), creator);
  memcpy(bytes(created.id).begin(), data.begin(), data.size());
  seal(created.id);
  return created;
}

const gc::ObjectRecord& ObjectStore::record(gc::ObjectId id) const {
  const gc::ObjectRecord* found = objects.find(id);
  RS_REQUIRE(found != nullptr, NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
  return *found;
}

kj::ArrayPtr<kj::byte> ObjectStore::bytes(gc::ObjectId id) {
  auto& object = record(id);
  auto& segment = allocator.segment(segmentOf(object.userData));
  return kj::arrayPtr(segment.base() + offsetOf(object.userData), object.size);
}

Location ObjectStore::location(gc::ObjectId id) const {
  auto& object = record(id);
  uint32_t segmentId = segmentOf(object.userData);
  return Location{segmentId, offsetOf(object.userData), object.size,
                  allocator.segment(segmentId).size(), allocator.isDedicated(segmentId)};
}

gc::HolderId ObjectStore::addHolder(gc::ObjectId id, gc::ClientId client) {
  gc::HolderId holder = objects.addHolder(id, client);
  RS_REQUIRE(holder != 0, NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
  return holder;
}

void ObjectStore::removeHolder(gc::HolderId holder) { objects.removeHolder(holder); }

void ObjectStore::pin(gc::ObjectId id) {
  RS_REQUIRE(objects.pin(id), NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists");
}

void ObjectStore::unpin(gc::ObjectId id) { objects.unpin(id); }

void ObjectStore::reclaim(const gc::ObjectRecord& object) {
  uint32_t segmentId = segmentOf(object.userData);
  uint64_t offset = offsetOf(object.userData);
  auto& segment = allocator.segment(segmentId);
  allocator.release(shm::Allocation{segment.base() + offset, segmentId, offset, object.size});
  reclaimedTotal++;
}

// --- tokens ----------------------------------------------------------------------------

kj::String ObjectStore::share(gc::ObjectId id, uint32_t ttlSeconds, uint32_t uses) {
  RS_REQUIRE(ttlSeconds >= 1 && ttlSeconds <= proto::MAX_TOKEN_TTL_SECONDS, INVALID_ARGUMENT,
             "ttlSeconds must be between 1 and ", proto::MAX_TOKEN_TTL_SECONDS, ", got ",
             ttlSeconds);
  auto& object = record(id);
  RS_REQUIRE(object.state == gc::ObjectState::SEALED, FAILED_PRECONDITION,
             "only sealed objects can be shared; this one is ", gc::stateName(object.state));
  Token token{id, unixSecondsNow() + ttlSeconds, randomSecret()};
  gc::MonoMillis expiresAt = nowMillis() + uint64_t(ttlSeconds) * 1000;
  RS_REQUIRE(objects.addLease(id, token.secret, expiresAt, uses), NOT_FOUND, "object ",
             gc::toHex(id).c_str(), " no longer exists");
  armLeaseTimer();
  return formatToken(token);
}

std::pair<gc::ObjectId, gc::HolderId> ObjectStore::restore(kj::StringPtr text,
                                                           gc::ClientId client) {
  Token token;
  KJ_IF_MAYBE(parsed, parseToken(text)) {
    token = *parsed;
  } else {
    RS_FAIL(MALFORMED, "not a refstore token (expected rs1.<32 hex>.<16 hex>.<32 hex>)");
  }
  RS_REQUIRE(token.id.hi == originEpoch, WRONG_STORE, "token was minted by another refstored (",
             kj::hex(token.id.hi), "), this one is ", kj::hex(originEpoch));
  // Expire due leases first so that the answer does not depend on timer scheduling.
  objects.expireLeases(nowMillis());
  gc::HolderId holder = 0;
  switch (objects.redeemLease(token.id, token.secret, nowMillis(), client, &holder)) {
    case gc::RedeemResult::OK:
      armLeaseTimer();
      return {token.id, holder};
    case gc::RedeemResult::EXPIRED:
      RS_FAIL(EXPIRED, "token expired");
    case gc::RedeemResult::NOT_FOUND:
      break;
  }
  RS_REQUIRE(token.expiresUnixSeconds > unixSecondsNow(), EXPIRED, "token expired");
  RS_FAIL(NOT_FOUND, "token unknown, used up, or its object is gone");
}

void ObjectStore::armLeaseTimer() {
  auto next = objects.nextLeaseExpiry();
  KJ_IF_MAYBE(armed, leaseTimerAt) {
    if (next && *armed == *next) return;  // already waiting for exactly that moment
  }
  if (!next && leaseTimerAt == nullptr) return;
  leaseTimerTask = leaseTimerLoop().eagerlyEvaluate(
      [](kj::Exception&& e) { logError("lease timer failed: ", e.getDescription()); });
}

kj::Promise<void> ObjectStore::leaseTimerLoop() {
  // A chain rather than re-arming from inside the callback: replacing leaseTimerTask from its
  // own continuation would destroy the running promise.
  auto next = objects.nextLeaseExpiry();
  if (!next) {
    leaseTimerAt = nullptr;
    return kj::NEVER_DONE;
  }
  leaseTimerAt = *next;
  return timer.atTime(kj::origin<kj::TimePoint>() + *next * kj::MILLISECONDS).then([this]() {
    size_t expired = objects.expireLeases(nowMillis());
    if (expired > 0) logDebug("expired ", expired, " share token(s)");
    return leaseTimerLoop();
  });
}

// --- segments --------------------------------------------------------------------------

proto::Segment::Client ObjectStore::segmentCap(uint32_t segmentId, bool writable) {
  // A fresh server per placement (one fcntl): nothing cached can outlive a released segment.
  return kj::heap<SegmentServer>(allocator.segment(segmentId), writable);
}

// --- introspection ---------------------------------------------------------------------

void ObjectStore::fillStats(proto::Stats::Builder stats) const {
  auto counts = objects.stats();
  stats.setObjects(counts.objects);
  stats.setBytesUsed(allocator.bytesAllocated());
  stats.setCapacity(allocator.capacity());
  stats.setClients(clients.size());
  stats.setSegments(allocator.segmentCount());
  stats.setSegmentBytes(allocator.segmentBytes());
  stats.setHolders(counts.holders);
  stats.setTokens(counts.leases);
  stats.setPinnedDead(counts.deadPinned);
  stats.setCreating(counts.perState[size_t(gc::ObjectState::CREATING)]);
  stats.setSealed(counts.perState[size_t(gc::ObjectState::SEALED)]);
  stats.setUptimeMs((timer.now() - startedAt) / kj::MILLISECONDS);
  stats.setPutsTotal(putsTotal);
  stats.setReclaimedTotal(reclaimedTotal);
}

kj::Array<const gc::ObjectRecord*> ObjectStore::allRecords() const {
  auto out = kj::heapArrayBuilder<const gc::ObjectRecord*>(objects.size());
  objects.forEach([&](const gc::ObjectRecord& record) { out.add(&record); });
  return out.finish();
}

void ObjectStore::fillListing(capnp::List<proto::ObjectListing>::Builder out,
                              kj::ArrayPtr<const gc::ObjectRecord* const> records) const {
  gc::MonoMillis now = nowMillis();
  for (size_t i = 0; i < records.size(); i++) {
    const gc::ObjectRecord& object = *records[i];
    auto row = out[i];
    fillObjectInfo(row.initInfo(), object);
    auto holders = objects.holdersOf(object.id);
    auto holderList = row.initHolders(holders.size());
    for (size_t h = 0; h < holders.size(); h++) {
      holderList[h].setClientId(holders[h].second);
      KJ_IF_MAYBE(info, clients.find(holders[h].second)) {
        holderList[h].setLabel(info->label);
        holderList[h].setPid(info->pid);
      }
    }
    row.setTokens(object.leases);
    row.setPins(object.pins);
    row.setAgeMs(now - object.createdAt);
    row.setDead(object.dead);
  }
}

void fillObjectInfo(proto::ObjectInfo::Builder info, const gc::ObjectRecord& object) {
  static_assert(uint16_t(proto::ObjectState::REMOTE) == uint16_t(gc::ObjectState::REMOTE),
                "gc and wire state orders must match");
  info.initId().setOrigin(object.id.hi);
  info.getId().setSerial(object.id.lo);
  info.setSize(object.size);
  info.initHash().setHigh(object.hashHi);
  info.getHash().setLow(object.hashLo);
  info.setState(static_cast<proto::ObjectState>(object.state));
}

void fillPlacement(proto::Placement::Builder placement, ObjectStore& store, gc::ObjectId id,
                   bool writable) {
  Location where = store.location(id);
  placement.setOrigin(store.origin());
  placement.setSegmentId(where.segmentId);
  placement.setOffset(where.offset);
  placement.setLength(where.length);
  placement.setSegmentSize(where.segmentSize);
  placement.setSegment(store.segmentCap(where.segmentId, writable));
  placement.setDedicated(where.dedicated);
}

}  // namespace refstore::server
