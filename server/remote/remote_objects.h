// RemoteObjects: this daemon's proxies of other daemons' objects (DESIGN.md "Many hosts"), the
// reader's side of references across hosts. It is the store's ProxyDoor and the RPC layer's
// RemoteGateway:
//   - restoring another daemon's token dials that owner (PeerDirectory), redeems the token there
//     and makes (or reuses) the local proxy -- one per object, holding exactly one of the owner's
//     Refs whatever the number of local references;
//   - the first read pulls the bytes once, however many readers wait: memory reserved like a
//     create (admission applies; the copy evicts other copies rather than becoming file-backed;
//     a prefetch's copy waits behind every ordinary request until a reader wants it: see
//     MemoryAdmission::reserveCopy), a one-time ticket from the owner, the bytes over its data port
//     straight into that memory, checked chunk by chunk and against the owner's XXH3-128 (a
//     broken transfer resumes from its last good chunk; a mismatch is retried once, then
//     CORRUPTED);
//   - a large value read on several hosts at once crosses the owner's link once: each copy is
//     offered, through the owner, to the next reader, which copies from it chunk by chunk as it
//     arrives (schema/peer.capnp, Relay; falling back to the owner if the relay fails);
//   - promises wait for the owner's promise; share, info and children ask the owner;
//   - when the last local reference goes, the store frees the copy and this drops the owner's
//     Ref (Cap'n Proto releases it there, and the owner frees the object if nothing else holds
//     it);
//   - if the owner's connection breaks, the next use reconnects and takes the references back
//     (PeerService.reattach) within the grace period; past it, or if the owner restarted, the
//     proxy's owner is lost: a complete copy stays readable, what needs the owner fails with
//     OWNER_LOST.
#pragma once

#include <kj/async.h>
#include <deque>
#include <kj/map.h>

#include "server/dataplane/data_receiver.h"
#include "server/dataplane/arriving_bytes.h"
#include "server/peer/peer_directory.h"
#include "server/remote/copy_relay.h"
#include "server/rpc/gateways.h"
#include "server/rpc/services.h"
#include "server/store/proxy_door.h"

namespace refstore::server {

class RemoteObjects final: public ProxyDoor,
                           public RemoteGateway,
                           public dataplane::ArrivingBytes,
                           public CopySource,
                           private kj::TaskSet::ErrorHandler {
 public:
  // Attempts at copying one value before giving up: broken transfers resume from the last good
  // chunk; a value that fails its whole-value check is copied again once.
  static constexpr int kPullAttempts = 4;
  // Values up to this size are asked for inline, in the owner's openPull answer: no data
  // connection (schema/peer.capnp; the owner caps it at 64 KiB).
  static constexpr uint64_t kInlinePullBytes = 64u << 10;
  // Small values' bytes that come with a restore (PeerService.restore) are kept in the heap, for
  // the read that usually follows at once, for at most this long and within these totals: proxies
  // restored and never read must not hold memory.
  static constexpr auto kEarlyBytesLife = 1 * kj::SECONDS;
  static constexpr uint64_t kEarlyBytesLimit = 4u << 20;
  static constexpr size_t kEarlyBytesMaxCount = 65536;

  RemoteObjects(RpcServices& services, PeerDirectory& peers,
                dataplane::DataReceiver& receiver, kj::Timer& timer);
  ~RemoteObjects() noexcept(false);
  KJ_DISALLOW_COPY(RemoteObjects);

  // ProxyDoor.
  kj::Promise<void> whenSettled(gc::ObjectId proxy) override;
  kj::Promise<void> whenLocal(gc::ObjectId proxy, Wanted wanted) override;
  void reclaimed(const gc::ObjectRecord& proxy) override;

  // RemoteGateway.
  kj::Promise<HeldObject> restore(Token token, gc::ClientId client) override;
  kj::Promise<kj::String> share(gc::ObjectId proxy, uint32_t ttlSeconds, uint32_t uses) override;
  kj::Promise<void> describe(gc::ObjectId proxy) override;
  kj::Promise<kj::Array<HeldObject>> children(gc::ObjectId proxy, gc::ClientId client) override;
  Whereabouts whereabouts(gc::ObjectId proxy) override;
  void fillStats(proto::Stats::Builder stats) override;

  // ArrivingBytes: the data port relays a copy while it arrives.
  kj::Promise<Arrived> whenArrived(gc::ObjectId proxy, uint64_t end) override;
  // CopySource: other readers copy from this daemon's copy (schema/peer.capnp, Relay).
  gc::Secret relayTicket(gc::ObjectId proxy, uint64_t copy, gc::PeerId reader) override;
  kj::StringPtr dataAddress() override { return peers.options().dataAddress; }

  uint64_t proxiesOf(gc::PeerId owner) const;

 private:
  // One per proxied object, for as long as the proxy lives: only what every proxy needs. What
  // exists only for a while (a copy in flight, a restore's early bytes, a wait for the owner's
  // promise) lives in side maps below, so that the millions of proxies nobody is reading pay
  // nothing for it. Kept by value in `proxies` (56 bytes, no allocation of its own): a Proxy&
  // is good only until a proxy is added or reclaimed, so code that waits finds it again by id.
  struct Proxy {
    gc::ObjectId id;  // the owner's: id.hi is the owner (gc::PeerId), its address in `owners`
    proto::Ref::Client ownerRef = nullptr;  // our one reference on the owner's object
    gc::ClientId linkClient = 0;            // the connection it came through
    bool settled = false;                   // the owner's object is not a pending promise
    bool described = false;                 // size and hash are known here
    bool ownerLost = false;
  };
  static_assert(sizeof(Proxy) <= 56,
                "one per proxied object: measure refbench's proxy_bytes before growing it");
  // A copy of a proxy's bytes in flight: made by whenLocal() with the copy, gone at pullEnded()
  // (or with the proxy).
  struct Copying {
    explicit Copying(kj::ForkedPromise<void> pulling): pulling(kj::mv(pulling)) {}
    kj::ForkedPromise<void> pulling;  // the copy, every waiter a branch
    // Whether a reader waits for it; if not (a prefetch), its memory request waits behind every
    // ordinary one, and `readerCame` promotes it when a reader comes to want this value.
    bool readerWaits = false;
    kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> readerCame;
  };
  struct IdKey {
    uint64_t hi, lo;
    bool operator==(const IdKey& other) const { return hi == other.hi && lo == other.lo; }
    unsigned int hashCode() const { return unsigned(lo ^ (lo >> 32) ^ hi); }
  };
  static IdKey keyOf(gc::ObjectId id) { return IdKey{id.hi, id.lo}; }
  struct ProxyById {  // kj::HashIndex callbacks: proxies are found by id
    gc::ObjectId keyForRow(const Proxy& p) const { return p.id; }
    bool matches(const Proxy& p, gc::ObjectId id) const { return p.id == id; }
    uint hashCode(gc::ObjectId id) const { return keyOf(id).hashCode(); }
  };

  void taskFailed(kj::Exception&& e) override;
  // Forgets a fork from inside its own continuation (server/runtime/drop_later.h).
  template <typename T>
  void forget(kj::HashMap<IdKey, kj::ForkedPromise<T>>& forks, gc::ObjectId id);
  void forgetReconnect(gc::PeerId owner);
  Proxy& proxy(gc::ObjectId id);  // a live proxy (NOT_FOUND otherwise)
  // Where the owner of proxies here is (an owner with none is not known).
  kj::StringPtr addressOf(gc::PeerId owner);
  // A new holder for `client` on the proxy of `id`, made with `ownerRef` if there is none yet
  // (otherwise `ownerRef` is dropped: one owner reference per proxy). DISCONNECTED, and nothing
  // held, if `client`'s connection has closed meanwhile.
  HeldObject hold(gc::ObjectId id, gc::PeerId owner, kj::StringPtr address,
                  proto::Ref::Client ownerRef, gc::ClientId linkClient, gc::ClientId client);
  // The owner's Ref for `token`, over a link to `owner` at `address` (dialed if need be), and
  // the connection of that link.
  struct Redeemed {
    proto::Ref::Client ref;
    gc::ClientId linkClient;
    // What the owner said of the object in the same answer (PeerService.restore).
    bool settled = false;
    uint64_t size = 0, hashHi = 0, hashLo = 0;
    kj::Array<kj::byte> early;  // a small value's bytes, if the owner sent them along
  };
  kj::Promise<Redeemed> redeem(kj::String token, gc::PeerId owner, kj::String address,
                               int retries);
  // The up link the proxy's owner reference works over, reconnecting (and taking the
  // references of every proxy of that owner back) if its connection was lost; OWNER_LOST once
  // the owner cannot be reached within the grace period, or has restarted.
  kj::Promise<PeerLink*> ownerLink(Proxy& proxy);
  kj::Promise<PeerLink*> reconnect(gc::PeerId owner, kj::String address, kj::TimePoint deadline);
  // A link to `owner` went down: reconnect at once if proxies here depend on it.
  void linkLost(gc::PeerId owner, kj::StringPtr address);
  kj::Promise<void> reattachAll(PeerLink& link);
  void ownerIsLost(gc::PeerId owner, kj::StringPtr why);
  struct PullState;
  kj::Promise<void> pull(gc::ObjectId id);
  void readerWants(Copying& copy);  // a reader waits for the copy in flight
  void pullEnded(gc::ObjectId id);
  kj::Promise<void> pullAttempt(gc::ObjectId id, kj::Own<PullState> state);
  // One attempt from another reader's copy (the owner named `relay`); resolves to `expected`.
  kj::Promise<XXH128_hash_t> copyFromRelay(peer::Relay::Client relay, kj::Own<PullState> state,
                                           XXH128_hash_t expected);
  void keepEarlyBytes(Proxy& proxy, kj::Array<kj::byte> bytes);
  // The proxy's early bytes, no longer kept (empty if there were none).
  kj::Array<kj::byte> takeEarlyBytes(gc::ObjectId id);
  // Drops early bytes as they reach kEarlyBytesLife, oldest first, while any are kept: one
  // timer for all of them (one each cost ~80 B per restore at 10,000 restores/s).
  kj::Promise<void> expireEarlyBytes();
  // Makes the proxy's copy from the bytes that came with its restore; false if there are none
  // or they do not match the owner's hash (then the copy is pulled as usual).
  bool copyEarlyBytes(Proxy& proxy, kj::Own<Reservation>& memory);
  // The proxy's copy is complete and checked: the store takes it, the counts grow.
  void storeCopy(Proxy& proxy, kj::Own<Reservation> memory, uint64_t size, XXH128_hash_t hash);
  // The owner's object is a value of this size and hash (zero: not hashed yet).
  void settle(Proxy& proxy, uint64_t size, uint64_t hashHi, uint64_t hashLo);

  RpcServices& services;
  ObjectStore& store;
  PeerDirectory& peers;
  dataplane::DataReceiver& receiver;
  kj::Timer& timer;
  kj::Table<Proxy, kj::HashIndex<ProxyById>> proxies;
  // Each owner that proxies here belong to: its address, kept once per owner rather than once
  // per proxy (the first proxy's; a daemon advertises one address, and reconnecting is per
  // owner anyway), and its number of proxies (proxiesOf). Gone with its last proxy.
  struct Owner {
    kj::String address;
    uint64_t proxies = 0;
  };
  kj::HashMap<gc::PeerId, Owner> owners;
  // Proxies whose owner's object is a pending promise and someone waits for it (whenSettled).
  kj::HashMap<IdKey, kj::ForkedPromise<void>> settling;
  // Proxies whose bytes are being copied here (whenLocal).
  kj::HashMap<IdKey, kj::Own<Copying>> copying;
  // A small value's bytes that came with its restore, kept until the first read copies them
  // into shared memory (no round trip to the owner) or kEarlyBytesLife passes.
  kj::HashMap<IdKey, kj::Array<kj::byte>> earlyBytes;
  kj::HashMap<gc::PeerId, kj::ForkedPromise<PeerLink*>> reconnecting;
  kj::HashMap<gc::PeerId, kj::TimePoint> unreachableSince;
  uint64_t pullsInFlight = 0, pullsTotal = 0, bytesPulled = 0, lostTotal = 0;
  uint64_t bytesRelayed = 0;  // received from relays (Stats.bytesRelayedTotal)
  uint64_t earlyBytesKept = 0;  // total size of everything in earlyBytes
  // The copies whose bytes are arriving now (PullState registers itself), for relaying them.
  kj::HashMap<IdKey, PullState*> receiving;
  // The number of each complete copy of a large value (RelayOffers::kMinBytes) here, for
  // relaying it: copies are numbered as they start (PullState::copy, copiesStarted).
  kj::HashMap<IdKey, uint64_t> relayable;
  uint64_t copiesStarted = 0;
  struct EarlyExpiry {
    kj::TimePoint at;
    gc::ObjectId id;
  };
  std::deque<EarlyExpiry> earlyExpiries;  // kept early bytes, oldest first
  bool earlyExpiring = false;             // expireEarlyBytes() is running
  kj::TaskSet tasks{*this};  // things dropped later
};

}  // namespace refstore::server
