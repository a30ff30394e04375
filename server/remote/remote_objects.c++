#include "server/remote/remote_objects.h"

#include "third_party/fast_xxhash.h"

#include "server/rpc/adoption.h"
#include "server/runtime/drop_later.h"
#include "server/runtime/errors.h"
#include "server/runtime/log.h"

namespace refstore::server {
namespace {

// An owner's error as our client should see it: Cap'n Proto prefixes a remote exception's
// description ("remote exception: "), which is noise one host further on. A connection to the
// owner that broke under the call is `lostWord` (OWNER_LOST; UNREACHABLE for a restore), not
// DISCONNECTED, which the client would take for its own daemon going away (tools/soak: a share
// forwarded to an owner killed meanwhile said "refstored disconnected").
kj::Exception fromOwner(kj::Exception&& e, kj::StringPtr lostWord = RS_ERROR_WORD(OWNER_LOST)) {
  kj::StringPtr description = e.getDescription();
  kj::StringPtr prefix = "remote exception: ";
  while (description.startsWith(prefix)) description = description.slice(prefix.size());
  if (e.getType() == kj::Exception::Type::DISCONNECTED) {
    return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                         kj::str(lostWord, ": the connection to the owner broke: ", description));
  }
  return kj::Exception(e.getType(), __FILE__, __LINE__, kj::str(description));
}

// A data-port ticket as openPull and Relay.open send it.
gc::Secret ticketOf(capnp::Data::Reader bytes) {
  KJ_IF_MAYBE(ticket, dataplane::readTicket(bytes)) { return *ticket; }
  RS_FAIL(INTERNAL, "a malformed transfer ticket came (", bytes.size(), " bytes)");
}

bool isDisconnect(const kj::Exception& e) {
  return e.getType() == kj::Exception::Type::DISCONNECTED;
}

}  // namespace

RemoteObjects::RemoteObjects(RpcServices& services, PeerDirectory& peers,
                             dataplane::DataReceiver& receiver, kj::Timer& timer)
    : services(services), store(services.store), peers(peers), receiver(receiver), timer(timer) {
  peers.setProxyCounter([this](gc::PeerId owner) { return proxiesOf(owner); });
  peers.setOnLinkDown([this](gc::PeerId owner, kj::StringPtr address) {
    linkLost(owner, address);
  });
}


void RemoteObjects::taskFailed(kj::Exception&& e) {
  logDebug("remote objects: ", e.getDescription());
}

template <typename T>
void RemoteObjects::forget(kj::HashMap<IdKey, kj::ForkedPromise<T>>& forks, gc::ObjectId id) {
  KJ_IF_MAYBE(f, forks.find(keyOf(id))) { dropLater(tasks, kj::mv(*f)); }
  forks.erase(keyOf(id));
}

void RemoteObjects::forgetReconnect(gc::PeerId owner) {
  KJ_IF_MAYBE(f, reconnecting.find(owner)) { dropLater(tasks, kj::mv(*f)); }
  reconnecting.erase(owner);
}

RemoteObjects::Proxy& RemoteObjects::proxy(gc::ObjectId id) {
  KJ_IF_MAYBE(found, proxies.find(id)) { return *found; }
  RS_FAIL(NOT_FOUND, "object ", gc::toHex(id).c_str(), " no longer exists here");
}

kj::StringPtr RemoteObjects::addressOf(gc::PeerId owner) {
  return KJ_ASSERT_NONNULL(owners.find(owner)).address;
}

uint64_t RemoteObjects::proxiesOf(gc::PeerId owner) const {
  KJ_IF_MAYBE(found, owners.find(owner)) { return found->proxies; }
  return 0;
}

// ---- making and keeping proxies --------------------------------------------------------------

HeldObject RemoteObjects::hold(gc::ObjectId id, gc::PeerId owner, kj::StringPtr address,
                               proto::Ref::Client ownerRef, gc::ClientId linkClient,
                               gc::ClientId client) {
  // Called once the owner has answered, which may be after `client` went away (a restoreView's
  // view keeps its restore running): a holder made for it now would stay forever.
  services.requireOpen(client);
  KJ_IF_MAYBE(existing, proxies.find(id)) {
    Proxy& p = *existing;
    // One whose references are all gone but a View still pins it is held again: it is still
    // this host's one proxy of the object (tools/soak: restores failed NOT_FOUND meanwhile).
    store.reviveProxy(id);
    gc::HolderId holder = store.addHolder(id, client);
    if (p.ownerLost || services.findConnection(p.linkClient) == nullptr) {
      // Its reference had gone with an old connection: this one replaces it.
      p.ownerRef = kj::mv(ownerRef);
      p.linkClient = linkClient;
      p.ownerLost = false;
    }
    // Otherwise the new reference is dropped here: one owner reference per proxy.
    return HeldObject{id, holder};
  }
  KJ_ASSERT(id.hi == owner, "a proxy's owner is its id's origin");
  auto created = store.createProxy(id, client);
  owners.findOrCreate(owner, [&]() { return decltype(owners)::Entry{owner, {kj::str(address)}}; })
      .proxies++;
  Proxy p;
  p.id = id;
  p.ownerRef = kj::mv(ownerRef);
  p.linkClient = linkClient;
  proxies.insert(kj::mv(p));
  return HeldObject{id, created.writer};
}

kj::Promise<HeldObject> RemoteObjects::restore(Token token, gc::ClientId client) {
  gc::ObjectId id = token.id;
  kj::String address = kj::mv(token.ownerAddress);
  return redeem(formatToken(token), id.hi, kj::str(address), /*retries=*/1)
      .then([this, id, address = kj::mv(address), client](Redeemed redeemed) mutable {
        HeldObject held =
            hold(id, id.hi, address, kj::mv(redeemed.ref), redeemed.linkClient, client);
        Proxy& p = proxy(id);
        if (redeemed.settled && !p.settled) {
          // The owner said what it is in the same answer: the first read needs no whenReady.
          settle(p, redeemed.size, redeemed.hashHi, redeemed.hashLo);
        }
        if (redeemed.early.size() > 0 && redeemed.early.size() == redeemed.size) {
          keepEarlyBytes(p, kj::mv(redeemed.early));
        }
        return held;
      });
}

kj::Promise<RemoteObjects::Redeemed> RemoteObjects::redeem(kj::String token, gc::PeerId owner,
                                                           kj::String address, int retries) {
  auto linked = peers.link(address, owner);
  return linked.then([token = kj::str(token)](PeerLink* link) {
    // The link the reference comes through, not whichever link to the owner is up afterwards:
    // two daemons that dial each other at once have two, and the reference works only on its
    // own (the owner recognises it there, e.g. when this daemon pulls the bytes).
    gc::ClientId linkClient = link->client;
    auto request = link->service.restoreRequest();
    request.setToken(token);
    request.setInlineUpTo(kInlinePullBytes);
    return request.send().then(
        [linkClient](capnp::Response<peer::PeerService::RestoreResults> reply) -> Redeemed {
          Redeemed redeemed{reply.getRef(), linkClient};
          auto state = reply.getState();
          // A value (not a promise still pending or failed) is settled for good.
          redeemed.settled = state == proto::ObjectState::SEALED ||
                             state == proto::ObjectState::SPILLED;
          redeemed.size = reply.getSize();
          redeemed.hashHi = reply.getHash().getHigh();
          redeemed.hashLo = reply.getHash().getLow();
          if (reply.hasInlineBytes()) redeemed.early = kj::heapArray(reply.getInlineBytes());
          return redeemed;
        });
  }).catch_([this, token = kj::mv(token), owner, address = kj::mv(address), retries](
                kj::Exception&& e) mutable -> kj::Promise<Redeemed> {
    // A link that broke under the call (the owner restarted, a connection reset) is dialed
    // afresh once: the new connection tells a restarted owner (WRONG_STORE) from a gone one.
    if (isDisconnect(e) && retries > 0) {
      return redeem(kj::mv(token), owner, kj::mv(address), retries - 1);
    }
    kj::throwFatalException(fromOwner(kj::mv(e), RS_ERROR_WORD(UNREACHABLE)));
  });
}

void RemoteObjects::reclaimed(const gc::ObjectRecord& record) {
  // The store freed the local copy (if any); erasing the proxy drops our reference on the
  // owner, which Cap'n Proto releases there. This may run inside one of its forks (settling,
  // copying): those are dropped in a later turn.
  IdKey key = keyOf(record.id);
  if (proxies.eraseMatch(record.id)) {
    gc::PeerId owner = record.id.hi;
    Owner& o = KJ_ASSERT_NONNULL(owners.find(owner));
    if (--o.proxies == 0) owners.erase(owner);
  }
  takeEarlyBytes(record.id);  // dropped
  forget(settling, record.id);
  KJ_IF_MAYBE(copy, copying.find(key)) { dropLater(tasks, kj::mv(*copy)); }
  copying.erase(key);
  relayable.erase(key);
}

// ---- the owner's connection ----------------------------------------------------------------

kj::Promise<PeerLink*> RemoteObjects::ownerLink(Proxy& p) {
  if (p.ownerLost) {
    RS_FAIL(OWNER_LOST, "the refstored that owns object ", gc::toHex(p.id).c_str(), " (at ",
            addressOf(p.id.hi), ") is gone");
  }
  KJ_IF_MAYBE(link, peers.linkOf(p.linkClient)) {
    if (peers.usable(*link)) return &*link;
  }
  // The connection its reference came through is gone: reconnect and take the references back.
  gc::PeerId owner = p.id.hi;
  kj::TimePoint deadline = timer.now() + peers.options().grace;
  KJ_IF_MAYBE(since, unreachableSince.find(owner)) {
    deadline = *since + peers.options().grace;
  } else {
    unreachableSince.insert(owner, timer.now());
  }
  gc::ObjectId id = p.id;
  return reconnect(owner, kj::str(addressOf(owner)), deadline).then([this, id](PeerLink* link) {
    Proxy& again = proxy(id);
    if (again.ownerLost) {
      RS_FAIL(OWNER_LOST, "the refstored that owns object ", gc::toHex(id).c_str(),
              " no longer has our reference to it");
    }
    return link;
  });
}

void RemoteObjects::linkLost(gc::PeerId owner, kj::StringPtr address) {
  // Reconnect now, not at the next use: the owner keeps our references only for its grace
  // period, and a proxy nobody happens to use in that time must not lose its owner's object.
  bool needed = false;
  for (Proxy& p: proxies) needed |= p.id.hi == owner && !p.ownerLost;
  if (!needed) return;
  kj::TimePoint deadline = timer.now() + peers.options().grace;
  KJ_IF_MAYBE(since, unreachableSince.find(owner)) {
    deadline = *since + peers.options().grace;
  } else {
    unreachableSince.insert(owner, timer.now());
  }
  // Run it in a later turn: this is called from inside the lost link's own bookkeeping.
  tasks.add(kj::evalLater([this, owner, address = kj::str(address), deadline]() mutable {
    return reconnect(owner, kj::mv(address), deadline).ignoreResult();
  }));
}

kj::Promise<PeerLink*> RemoteObjects::reconnect(gc::PeerId owner, kj::String address,
                                                kj::TimePoint deadline) {
  KJ_IF_MAYBE(inFlight, reconnecting.find(owner)) { return inFlight->addBranch(); }
  auto attempt = peers.link(address, owner)
      .then([this](PeerLink* link) {
        return reattachAll(*link).then([link]() { return link; });
      });
  auto settled = attempt.then(
      [this, owner](PeerLink* link) -> kj::Promise<PeerLink*> {
        forgetReconnect(owner);
        unreachableSince.erase(owner);
        return link;
      },
      [this, owner, address = kj::str(address), deadline](kj::Exception&& e) mutable
          -> kj::Promise<PeerLink*> {
        forgetReconnect(owner);
        bool restarted = strstr(e.getDescription().cStr(), "refstore.WRONG_STORE") != nullptr;
        if (restarted || timer.now() >= deadline) {
          ownerIsLost(owner, e.getDescription());
          RS_FAIL(OWNER_LOST, "the refstored at ", address, " that owns this object is gone: ",
                  e.getDescription());
        }
        return timer.afterDelay(200 * kj::MILLISECONDS)
            .then([this, owner, address = kj::mv(address), deadline]() mutable {
              return reconnect(owner, kj::mv(address), deadline);
            });
      });
  auto forked = settled.fork();
  auto branch = forked.addBranch();
  reconnecting.insert(owner, kj::mv(forked));
  return branch;
}

kj::Promise<void> RemoteObjects::reattachAll(PeerLink& link) {
  kj::Vector<gc::ObjectId> stale;
  for (Proxy& p: proxies) {
    if (p.id.hi != link.origin || p.ownerLost || p.linkClient == link.client) continue;
    bool alive = false;
    KJ_IF_MAYBE(old, peers.linkOf(p.linkClient)) { alive = peers.usable(*old); }
    if (!alive) stale.add(p.id);
  }
  if (stale.empty()) return kj::READY_NOW;
  auto request = link.service.reattachRequest();
  auto ids = request.initIds(stale.size());
  for (size_t i = 0; i < stale.size(); i++) {
    ids[i].setOrigin(stale[i].hi);
    ids[i].setSerial(stale[i].lo);
  }
  gc::ClientId client = link.client;
  return request.send().then([this, stale = stale.releaseAsArray(), client](
                                 capnp::Response<peer::PeerService::ReattachResults> reply) {
    auto refs = reply.getRefs();
    size_t lost = 0;
    for (size_t i = 0; i < stale.size(); i++) {
      KJ_IF_MAYBE(found, proxies.find(stale[i])) {
        Proxy& p = *found;
        proto::Ref::Client ref = refs[i];
        if (capnp::ClientHook::from(kj::cp(ref))->isNull()) {  // the owner kept none for us
          p.ownerLost = true;
          lost++;
          lostTotal++;
        } else {
          p.ownerRef = kj::mv(ref);
          p.linkClient = client;
        }
      }
    }
    logInfo("reconnected: took back ", stale.size() - lost, " reference(s); ", lost, " lost");
  });
}

void RemoteObjects::ownerIsLost(gc::PeerId owner, kj::StringPtr why) {
  size_t count = 0;
  for (Proxy& p: proxies) {
    if (p.id.hi != owner || p.ownerLost) continue;
    p.ownerLost = true;
    p.ownerRef = nullptr;
    count++;
    lostTotal++;
  }
  if (count > 0) {
    logWarning("the owner ", kj::hex(owner), " of ", count, " object(s) here is lost: ", why);
  }
}

// ---- what needs the owner -------------------------------------------------------------------

kj::Promise<void> RemoteObjects::whenSettled(gc::ObjectId id) {
  Proxy& p = proxy(id);
  if (p.settled) return kj::READY_NOW;
  KJ_IF_MAYBE(inFlight, settling.find(keyOf(id))) { return inFlight->addBranch(); }
  auto settled = ownerLink(p)
      .then([this, id](PeerLink*) {
        return proxy(id).ownerRef.whenReadyRequest().send();
      })
      .then(
          [this, id](capnp::Response<proto::Ref::WhenReadyResults> reply) {
            Proxy& p = proxy(id);
            auto info = reply.getInfo();
            settle(p, info.getSize(), info.getHash().getHigh(), info.getHash().getLow());
            forget(settling, id);
          },
          [this, id](kj::Exception&& e) {
            forget(settling, id);
            kj::throwFatalException(fromOwner(kj::mv(e)));
          });
  auto forked = settled.fork();
  auto branch = forked.addBranch();
  settling.insert(keyOf(id), kj::mv(forked));
  return branch;
}

kj::Promise<void> RemoteObjects::describe(gc::ObjectId id) {
  return whenSettled(id).then([this, id]() -> kj::Promise<void> {
    Proxy& p = proxy(id);
    if (p.described) return kj::READY_NOW;
    return ownerLink(p)
        .then([this, id](PeerLink*) { return proxy(id).ownerRef.infoRequest().send(); })
        .then(
            [this, id](capnp::Response<proto::Ref::InfoResults> reply) {
              auto info = reply.getInfo();
              store.setProxyInfo(id, info.getSize(), info.getHash().getHigh(),
                                 info.getHash().getLow());
              proxy(id).described = true;
            },
            [](kj::Exception&& e) { kj::throwFatalException(fromOwner(kj::mv(e))); });
  });
}

kj::Promise<kj::String> RemoteObjects::share(gc::ObjectId id, uint32_t ttlSeconds,
                                             uint32_t uses) {
  Proxy& p = proxy(id);
  return ownerLink(p)
      .then([this, id, ttlSeconds, uses](PeerLink*) {
        auto request = proxy(id).ownerRef.shareRequest();
        request.setTtlSeconds(ttlSeconds);
        request.setUses(uses);
        return request.send();
      })
      .then([](capnp::Response<proto::Ref::ShareResults> reply) { return kj::str(reply.getToken()); },
            [](kj::Exception&& e) -> kj::String {
              kj::throwFatalException(fromOwner(kj::mv(e)));
            });
}

kj::Promise<kj::Array<HeldObject>> RemoteObjects::children(gc::ObjectId id,
                                                           gc::ClientId client) {
  Proxy& p = proxy(id);
  return ownerLink(p).then([this, id, client](PeerLink* link) {
    return proxy(id).ownerRef.childrenRequest().send().then(
        [this, link, client](capnp::Response<proto::Ref::ChildrenResults> reply) {
          auto kids = reply.getChildren();
          auto each = kj::heapArrayBuilder<kj::Promise<kj::Own<HolderGuard>>>(kids.size());
          for (auto kid: kids) {
            auto identify = link->service.identifyRequest();
            identify.setRef(kid);
            gc::PeerId origin = link->origin;
            kj::String address = kj::str(link->address);
            gc::ClientId linkClient = link->client;
            each.add(identify.send().then(
                [this, kid, origin, address = kj::mv(address), linkClient, client](
                    capnp::Response<peer::PeerService::IdentifyResults> who) mutable
                -> kj::Promise<HeldObject> {
                  gc::ObjectId childId{who.getId().getOrigin(), who.getId().getSerial()};
                  if (childId.hi == origin) {
                    return hold(childId, origin, address, kj::mv(kid), linkClient, client);
                  }
                  // The owner's own proxy of a third daemon's object: go to that daemon
                  // directly (a token minted there), so that references never run in chains.
                  // The "third" daemon may be this one: restoreToken then holds our own object.
                  auto share = kj::mv(kid).shareRequest();
                  share.setTtlSeconds(60);
                  share.setUses(1);
                  return share.send().then(
                      [this, client](capnp::Response<proto::Ref::ShareResults> token)
                          -> kj::Promise<HeldObject> {
                        RS_REQUIRE(parseToken(token.getToken()) != nullptr, INTERNAL,
                                   "a child's token is malformed");
                        return restoreToken(services, token.getToken(), client);
                      });
                }).then([this](HeldObject held) { return kj::heap<HolderGuard>(store, held); }));
          }
          // Guarded until every child has its holder (adoption.h).
          return kj::joinPromises(each.finish())
              .then([](kj::Array<kj::Own<HolderGuard>> taken) {
                return KJ_MAP(child, taken) { return child->keep(); };
              });
        },
        [](kj::Exception&& e) -> kj::Promise<kj::Array<HeldObject>> {
          kj::throwFatalException(fromOwner(kj::mv(e)));
        });
  });
}

RemoteGateway::Whereabouts RemoteObjects::whereabouts(gc::ObjectId id) {
  KJ_IF_MAYBE(found, proxies.find(id)) {
    return Whereabouts{kj::str(addressOf(id.hi)), found->ownerLost};
  }
  return Whereabouts{kj::str(), false};
}

void RemoteObjects::fillStats(proto::Stats::Builder stats) {
  stats.setPullsInFlight(pullsInFlight);
  stats.setPullsTotal(pullsTotal);
  stats.setBytesRelayedTotal(bytesRelayed);
  stats.setBytesPulledTotal(bytesPulled);
  uint64_t lost = 0;
  for (Proxy& p: proxies) lost += p.ownerLost;
  stats.setOwnerLost(lost);
}

// ---- copying the bytes ----------------------------------------------------------------------

kj::Promise<void> RemoteObjects::whenLocal(gc::ObjectId id, Wanted wanted) {
  proxy(id);  // NOT_FOUND if it is gone
  if (store.record(id).bytesLocal) return kj::READY_NOW;
  KJ_IF_MAYBE(inFlight, copying.find(keyOf(id))) {
    Copying& copy = **inFlight;
    if (wanted == Wanted::BY_READER) readerWants(copy);
    return copy.pulling.addBranch();
  }
  pullsInFlight++;
  // Counted for as long as the copy lives: it ends, or is dropped with its proxy (tools/soak
  // found the count stuck at 1 when the proxy went first), or fails at once (evalNow: an
  // owner already lost throws before pull() returns a promise).
  auto started = kj::evalNow([&]() { return pull(id); });
  auto pulled = started.attach(kj::defer([this]() { pullsInFlight--; })).then(
      [this, id]() { pullEnded(id); },
      [this, id](kj::Exception&& e) {
        pullEnded(id);
        kj::throwFatalException(kj::mv(e));
      });
  // (pull() looks at the Copying only in its continuations, which run after this returns.)
  auto copy = kj::heap<Copying>(pulled.fork());
  copy->readerWaits = wanted == Wanted::BY_READER;
  auto branch = copy->pulling.addBranch();
  copying.insert(keyOf(id), kj::mv(copy));
  return branch;
}

void RemoteObjects::readerWants(Copying& copy) {
  copy.readerWaits = true;
  KJ_IF_MAYBE(promotion, copy.readerCame) { (*promotion)->fulfill(); }
  copy.readerCame = nullptr;
}

void RemoteObjects::pullEnded(gc::ObjectId id) {
  // Runs inside the copy's own fork: the Copying that holds it goes in a later turn.
  KJ_IF_MAYBE(found, copying.find(keyOf(id))) { dropLater(tasks, kj::mv(*found)); }
  copying.erase(keyOf(id));
}

// One value being copied here, across attempts. Listed in `receiving` while it lives, which
// may be longer than the pull: a relay sending its bytes keeps it.
struct RemoteObjects::PullState final: public kj::Refcounted {
  PullState(RemoteObjects& objects, gc::ObjectId id, kj::Own<Reservation> memory, uint64_t size)
      : objects(&objects), id(id), copy(++objects.copiesStarted), memory(kj::mv(memory)),
        reception(kj::heap<dataplane::Reception>(kj::arrayPtr(this->memory->get().ptr, size))) {
    objects.receiving.upsert(keyOf(id), this, [](PullState*& old, PullState* newer) {
      old = newer;
    });
  }
  ~PullState() noexcept(false) {
    if (objects == nullptr) return;
    KJ_IF_MAYBE(listed, objects->receiving.find(keyOf(id))) {
      if (*listed == this) objects->receiving.erase(keyOf(id));
    }
  }
  RemoteObjects* objects;  // null once RemoteObjects is gone
  gc::ObjectId id;
  uint64_t copy;           // this copy's number (CopyRelay)
  kj::Own<Reservation> memory;
  kj::Own<dataplane::Reception> reception;
  int attemptsLeft = kPullAttempts;
  bool retriedWhole = false;  // the whole value failed its check once already
  // Copy from the owner itself: every attempt but the first does (CopyRelay says why).
  bool direct = false;
};

RemoteObjects::~RemoteObjects() noexcept(false) {
  // Copies still relayed by the data port (destroyed after this) outlive us.
  for (auto& entry: receiving) entry.value->objects = nullptr;
}

kj::Promise<dataplane::ArrivingBytes::Arrived> RemoteObjects::whenArrived(gc::ObjectId id,
                                                                          uint64_t end) {
  // (The data port serves complete copies from the store itself: DataSender::bytesUpTo.)
  KJ_IF_MAYBE(listed, receiving.find(keyOf(id))) {
    PullState& state = **listed;
    auto bytes = state.reception->destination().asConst();
    auto reached = state.reception->whenReached(end);
    KJ_IF_MAYBE(copy, copying.find(keyOf(id))) {
      // A copy that fails (or completes) ends the wait at once, not at the relay's reader's
      // stall timeout: on success every byte has arrived.
      reached = reached.exclusiveJoin((*copy)->pulling.addBranch());
    }
    return reached.then(
        [bytes, keep = kj::addRef(state)]() mutable { return Arrived{bytes, kj::mv(keep)}; });
  }
  RS_FAIL(NOT_FOUND, "the copy of object ", gc::toHex(id).c_str(), " here is gone");
}

gc::Secret RemoteObjects::relayTicket(gc::ObjectId id, uint64_t copy, gc::PeerId reader) {
  bool here = false;
  if (proxies.find(id) != nullptr) {
    KJ_IF_MAYBE(arriving, receiving.find(keyOf(id))) {
      here = (*arriving)->copy == copy;
    } else KJ_IF_MAYBE(complete, relayable.find(keyOf(id))) {
      here = *complete == copy && store.record(id).bytesLocal;
    }
  }
  RS_REQUIRE(here, NOT_FOUND, "this daemon no longer has that copy of object ",
             gc::toHex(id).c_str());
  return peers.issueTicket(id, reader);
}

kj::Promise<void> RemoteObjects::pull(gc::ObjectId id) {
  return whenSettled(id).then([this, id]() {
    proxy(id);  // NOT_FOUND if everyone let go meanwhile
    auto found = copying.find(keyOf(id));
    RS_REQUIRE(found != nullptr, NOT_FOUND, "object ", gc::toHex(id).c_str(),
               " no longer exists here");
    Copying& copy = *KJ_ASSERT_NONNULL(found);
    uint64_t size = store.record(id).size;
    // The copy waits for memory like a create (admission control; other copies are evicted to
    // make room), in the daemon's own line. A prefetch's waits behind every ordinary request
    // until a reader wants this value (readerWants).
    if (copy.readerWaits) return store.reserveCopy(size, Priority::ORDINARY, nullptr);
    auto promotion = kj::newPromiseAndFulfiller<void>();
    copy.readerCame = kj::mv(promotion.fulfiller);
    return store.reserveCopy(size, Priority::PREFETCH, kj::mv(promotion.promise));
  }).then([this, id](kj::Own<Reservation> memory) -> kj::Promise<void> {
    if (copyEarlyBytes(proxy(id), memory)) return kj::READY_NOW;
    auto state = kj::refcounted<PullState>(*this, id, kj::mv(memory), store.record(id).size);
    return pullAttempt(id, kj::mv(state));
  });
}

void RemoteObjects::keepEarlyBytes(Proxy& p, kj::Array<kj::byte> bytes) {
  const gc::ObjectRecord& record = store.record(p.id);
  if (earlyBytes.find(keyOf(p.id)) != nullptr || record.bytesLocal || !p.described ||
      record.size != bytes.size() || earlyBytesKept + bytes.size() > kEarlyBytesLimit ||
      earlyExpiries.size() >= kEarlyBytesMaxCount) {
    return;
  }
  earlyBytesKept += bytes.size();
  earlyBytes.insert(keyOf(p.id), kj::mv(bytes));
  earlyExpiries.push_back(EarlyExpiry{timer.now() + kEarlyBytesLife, p.id});
  if (!earlyExpiring) {
    earlyExpiring = true;
    tasks.add(expireEarlyBytes());
  }
}

kj::Promise<void> RemoteObjects::expireEarlyBytes() {
  if (earlyExpiries.empty()) {
    earlyExpiring = false;
    return kj::READY_NOW;
  }
  return timer.atTime(earlyExpiries.front().at).then([this]() {
    kj::TimePoint now = timer.now();
    while (!earlyExpiries.empty() && earlyExpiries.front().at <= now) {
      // (A proxy made again since with the same id loses its newer bytes a little early: its
      // read then asks the owner, as after any expiry.)
      takeEarlyBytes(earlyExpiries.front().id);
      earlyExpiries.pop_front();
    }
    return expireEarlyBytes();
  });
}

kj::Array<kj::byte> RemoteObjects::takeEarlyBytes(gc::ObjectId id) {
  kj::Array<kj::byte> taken;
  KJ_IF_MAYBE(bytes, earlyBytes.find(keyOf(id))) {
    taken = kj::mv(*bytes);
    earlyBytesKept -= taken.size();
    earlyBytes.erase(keyOf(id));
  }
  return taken;
}

bool RemoteObjects::copyEarlyBytes(Proxy& p, kj::Own<Reservation>& memory) {
  kj::Array<kj::byte> early = takeEarlyBytes(p.id);
  if (early.size() == 0) return false;
  const gc::ObjectRecord& record = store.record(p.id);
  uint64_t size = early.size();
  if (size != record.size) return false;  // not this copy's size: never copy past the reservation
  kj::byte* into = static_cast<kj::byte*>(memory->get().ptr);
  memcpy(into, early.begin(), size);
  XXH128_hash_t got = XXH3_128bits(into, size);
  if (got.high64 != record.hashHi || got.low64 != record.hashLo) {
    logWarning("object ", gc::toHex(p.id).c_str(),
               ": the bytes that came with its restore do not match its hash; copying it again");
    return false;
  }
  storeCopy(p, kj::mv(memory), size, got);
  return true;
}

void RemoteObjects::storeCopy(Proxy& p, kj::Own<Reservation> memory, uint64_t size,
                              XXH128_hash_t hash) {
  store.storeProxyBytes(p.id, kj::mv(memory), size, hash.high64, hash.low64);
  p.described = true;
  pullsTotal++;
  bytesPulled += size;
  peers.countPulled(p.id.hi, size);
}

void RemoteObjects::settle(Proxy& p, uint64_t size, uint64_t hashHi, uint64_t hashLo) {
  store.setProxyInfo(p.id, size, hashHi, hashLo);
  p.settled = true;
  p.described = hashHi != 0 || hashLo != 0;  // a large value's hash may still be on its way
}

kj::Promise<XXH128_hash_t> RemoteObjects::copyFromRelay(peer::Relay::Client relay,
                                                        kj::Own<PullState> state,
                                                        XXH128_hash_t expected) {
  // Anything that goes wrong with a relay (it dropped its copy, its daemon or its own copy
  // failed, a chunk arrived damaged) is a broken transfer: the next attempt resumes from the
  // last good chunk, from the owner.
  auto request = relay.openRequest();
  request.setReader(peers.options().origin);
  auto& reception = *state->reception;
  uint64_t from = reception.reached();
  return request.send()
      .then([this, &reception](capnp::Response<peer::Relay::OpenResults> opened) {
        return receiver.attempt(opened.getDataAddress(), ticketOf(opened.getTicket()), reception);
      })
      .attach(kj::defer([this, &reception, from]() {
        bytesRelayed += reception.reached() - from;  // what came from the relay, this time
      }))
      .then([expected]() { return expected; },
            [](kj::Exception&& e) -> XXH128_hash_t {
              kj::throwFatalException(kj::Exception(
                  kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                  kj::str("copying from another reader failed (", e.getDescription(), ")")));
            })
      .attach(kj::mv(state), kj::mv(relay));
}

kj::Promise<void> RemoteObjects::pullAttempt(gc::ObjectId id, kj::Own<PullState> state) {
  state->attemptsLeft--;
  Proxy& p = proxy(id);  // NOT_FOUND if everyone let go meanwhile: the memory goes back
  auto received = ownerLink(p)
      .then([this, id, direct = state->direct, copy = state->copy](PeerLink* link) {
        auto request = link->service.openPullRequest();
        request.setRef(proxy(id).ownerRef);
        request.setInlineUpTo(kInlinePullBytes);
        request.setDirect(direct);
        if (store.record(id).size >= RelayOffers::kMinBytes) {
          request.setRelay(kj::heap<CopyRelay>(*this, id, copy));  // for the readers after us
        }
        return request.send();
      })
      .then([this, state = kj::addRef(*state)](
                capnp::Response<peer::PeerService::OpenPullResults> grant) mutable
            -> kj::Promise<XXH128_hash_t> {
        auto ticketBytes = grant.getTicket();
        RS_REQUIRE(grant.getSize() == state->reception->destination().size(), INTERNAL,
                   "the owner reports another size than before");
        XXH128_hash_t expected{grant.getHash().getLow(), grant.getHash().getHigh()};
        if (grant.hasFrom()) return copyFromRelay(grant.getFrom(), kj::mv(state), expected);
        if (ticketBytes.size() == 0) {  // a small value, in the answer itself
          auto bytes = grant.getInlineBytes();
          auto& reception = *state->reception;
          RS_REQUIRE(bytes.size() == reception.destination().size() && reception.reached() == 0,
                     INTERNAL, "the owner sent ", bytes.size(), " bytes inline for a value of ",
                     reception.destination().size());
          memcpy(reception.destination().begin(), bytes.begin(), bytes.size());
          reception.startChunk();
          reception.receivedPiece(reception.destination().begin(), bytes.size());
          reception.acceptChunk(bytes.size());
          return kj::Promise<XXH128_hash_t>(expected);
        }
        auto& reception = *state->reception;
        return receiver.attempt(grant.getDataAddress(), ticketOf(ticketBytes), reception)
            .attach(kj::mv(state))
            .then([expected]() { return expected; });
      });
  return received.then(
      [this, id, state = kj::addRef(*state)](XXH128_hash_t expected) mutable
      -> kj::Promise<void> {
        XXH128_hash_t got = state->reception->hash();
        if (got.high64 != expected.high64 || got.low64 != expected.low64) {
          RS_REQUIRE(!state->retriedWhole, CORRUPTED, "object ", gc::toHex(id).c_str(),
                     " copied from its owner twice does not match its XXH3-128");
          logWarning("object ", gc::toHex(id).c_str(),
                     " did not match its hash after copying: copying it again");
          state->retriedWhole = true;
          state->direct = true;
          state->reception =
              kj::heap<dataplane::Reception>(state->reception->destination());
          state->attemptsLeft = kPullAttempts;
          return pullAttempt(id, kj::mv(state));
        }
        Proxy& p = proxy(id);  // NOT_FOUND if everyone let go meanwhile
        uint64_t size = state->reception->destination().size();
        storeCopy(p, kj::mv(state->memory), size, expected);
        if (size >= RelayOffers::kMinBytes) {
          relayable.upsert(keyOf(id), state->copy, [](uint64_t& old, uint64_t newer) {
            old = newer;
          });
        }
        return kj::READY_NOW;
      },
      [this, id, state = kj::addRef(*state)](kj::Exception&& e) mutable -> kj::Promise<void> {
        // A transfer that broke, stalled or sent a bad chunk resumes from its last good chunk
        // (a few times); anything else (the owner refused, OWNER_LOST...) ends the copy.
        bool transient = isDisconnect(e) ||
                         strstr(e.getDescription().cStr(), "refstore.CORRUPTED: a chunk") != nullptr;
        state->direct = true;
        if (transient && state->attemptsLeft > 0 && proxies.find(id) != nullptr) {
          logDebug("copy of ", gc::toHex(id).c_str(), " broke at ", state->reception->reached(),
                   " bytes: resuming (", e.getDescription(), ")");
          return timer.afterDelay(50 * kj::MILLISECONDS)
              .then([this, id, state = kj::mv(state)]() mutable {
                return pullAttempt(id, kj::mv(state));
              });
        }
        kj::throwFatalException(fromOwner(kj::mv(e)));
      });
}

}  // namespace refstore::server
