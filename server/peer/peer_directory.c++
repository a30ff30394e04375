#include "server/peer/peer_directory.h"

#include <kj/compat/tls.h>

#include "server/rpc/adoption.h"
#include "server/rpc/ref_server.h"
#include "server/rpc/store_server.h"
#include "server/runtime/drop_later.h"
#include "server/runtime/errors.h"
#include "server/runtime/log.h"
#include "server/store/store_clock.h"

namespace refstore::server {

// ---- PeerService: what this daemon serves to one peer --------------------------------------

class PeerDirectory::Service final: public peer::PeerService::Server {
 public:
  Service(PeerDirectory& directory, gc::PeerId origin, gc::ClientId client)
      : directory(directory), services(directory.services), store(services.store),
        origin(origin), client(client) {}

  kj::Promise<void> heartbeat(HeartbeatContext) override {
    KJ_IF_MAYBE(link, directory.byClient(client)) { link->lastHeard = directory.timer.now(); }
    return kj::READY_NOW;
  }

  kj::Promise<void> reattach(ReattachContext context) override {
    auto ids = context.getParams().getIds();
    auto refs = context.getResults().initRefs(ids.size());
    for (uint i = 0; i < ids.size(); i++) {
      gc::ObjectId id{ids[i].getOrigin(), ids[i].getSerial()};
      gc::HolderId holder = store.remoteHolds().reattach(origin, id, client);
      if (holder != 0) refs.set(i, newRef(services, holder, client));
    }
    logInfo("peer ", kj::hex(origin), " took back ", refs.size(), " reference(s)");
    return kj::READY_NOW;
  }

  kj::Promise<void> identify(IdentifyContext context) override {
    return ownObject(context.getParams().getRef()).then([this, context](gc::ObjectId id) mutable {
      const gc::ObjectRecord& object = store.record(store.resolve(id));
      auto results = context.getResults();
      results.initId().setOrigin(id.hi);
      results.getId().setSerial(id.lo);
      results.setState(static_cast<proto::ObjectState>(object.state));
      describe(results, object);
    });
  }

  kj::Promise<void> restore(RestoreContext context) override {
    context.allowCancellation();
    return restoreToken(services, context.getParams().getToken(), client)
        .then([this, context](HeldObject held) mutable {
          auto results = context.getResults();
          results.setRef(newRef(services, held.holder, client));
          const gc::ObjectRecord& object = store.record(store.resolve(held.id));
          results.setState(static_cast<proto::ObjectState>(object.state));
          describe(results, object);
          KJ_IF_MAYBE(bytes, smallValue(object, context.getParams().getInlineUpTo())) {
            results.setInlineBytes(*bytes);
          }
        });
  }

  kj::Promise<void> openPull(OpenPullContext context) override {
    context.allowCancellation();
    return ownObject(context.getParams().getRef()).then([this, context](gc::ObjectId id) mutable {
      return store.whenReady(id)
          .then([this, id]() { return store.ensureResident(store.resolve(id)); })
          .then([this, id]() { return store.whenHashed(store.resolve(id)); })
          .then([this, context, id]() mutable { return issue(context, id); });
    });
  }

 private:
  // The object behind one of this daemon's Refs; INVALID_ARGUMENT for any other capability.
  kj::Promise<gc::ObjectId> ownObject(proto::Ref::Client ref) {
    return ownRefObject(kj::mv(ref)).then([](kj::Maybe<gc::ObjectId> own) {
      KJ_IF_MAYBE(id, own) { return *id; }
      RS_FAIL(INVALID_ARGUMENT, "not a Ref of this refstored");
    });
  }

  kj::Promise<void> issue(OpenPullContext context, gc::ObjectId id) {
    gc::ObjectId owner = store.resolve(id);
    if (!store.readableNow(id)) {  // spilled again, or failed, since: go round once more
      return store.whenReady(id)
          .then([this, owner]() { return store.ensureResident(owner); })
          .then([this, context, id]() mutable { return issue(context, id); });
    }
    const gc::ObjectRecord& object = store.record(owner);
    auto results = context.getResults();
    describe(results, object);
    auto params = context.getParams();
    KJ_IF_MAYBE(bytes, smallValue(object, params.getInlineUpTo())) {
      results.setInlineBytes(*bytes);
      return kj::READY_NOW;
    }
    if (object.size >= RelayOffers::kMinBytes) {
      // A large value: another reader may serve this one (a broadcast), and this one offers
      // its copy to the next (schema/peer.capnp).
      kj::TimePoint now = directory.timer.now();
      kj::Maybe<peer::Relay::Client> from;
      if (!params.getDirect()) {
        from = directory.relayOffers.take(owner, origin, now,
                                          [this](gc::PeerId peer, gc::ObjectId heldAs) {
          return store.remoteHolds().heldAttachedBy(peer, heldAs);
        });
      }
      if (params.hasRelay()) {
        directory.relayOffers.offer(owner, id, origin, params.getRelay(), now);
      }
      KJ_IF_MAYBE(relay, from) {
        results.setFrom(kj::mv(*relay));
        return kj::READY_NOW;
      }
    }
    gc::Secret ticket = directory.tickets.issue(owner, origin);
    dataplane::writeTicket(ticket, results.initTicket(dataplane::kTicketBytes));
    results.setDataAddress(directory.config.dataAddress);
    return kj::READY_NOW;
  }

  // The largest value restore and openPull answer inline (schema/peer.capnp).
  static constexpr uint64_t kMaxInlinePull = 64u << 10;

  // Size and hash, as identify, restore and openPull answer them.
  template <typename Results>
  static void describe(Results results, const gc::ObjectRecord& object) {
    results.setSize(object.size);
    results.initHash().setHigh(object.hashHi);
    results.getHash().setLow(object.hashLo);
  }

  // The bytes of a value small enough to answer inline (at most `inlineUpTo`, which the peer
  // asked for, and kMaxInlinePull), hashed and in memory, counted as served; null otherwise.
  kj::Maybe<kj::ArrayPtr<const kj::byte>> smallValue(const gc::ObjectRecord& object,
                                                     uint64_t inlineUpTo) {
    bool hashed = object.hashHi != 0 || object.hashLo != 0;
    if (!hashed || !store.readableNow(object.id) ||
        object.size > kj::min(inlineUpTo, kMaxInlinePull)) {
      return nullptr;
    }
    directory.countServed(origin, object.size);
    return store.objectMemory().bytesOf(object).asConst();
  }

  PeerDirectory& directory;
  RpcServices& services;
  ObjectStore& store;
  gc::PeerId origin;
  gc::ClientId client;
};

// ---- the directory ---------------------------------------------------------------------------

PeerDirectory::PeerDirectory(RpcServices& services, kj::Network& network, kj::Timer& timer,
                             BusyPoll& busyPoll, dataplane::TicketBook& tickets,
                             PeerOptions options)
    : services(services), network(network), timer(timer), busyPoll(busyPoll), tickets(tickets),
      config(kj::mv(options)) {}

PeerDirectory::~PeerDirectory() noexcept(false) {}

void PeerDirectory::taskFailed(kj::Exception&& e) {
  logDebug("peer task ended: ", e.getDescription());
}

PeerLink* PeerDirectory::byClient(gc::ClientId client) {
  for (auto& link: links) {
    if (link->client == client) return link.get();
  }
  return nullptr;
}

kj::Maybe<PeerLink&> PeerDirectory::linkOf(gc::ClientId client) {
  PeerLink* found = byClient(client);
  if (found == nullptr) return nullptr;
  return *found;
}

kj::Maybe<PeerLink&> PeerDirectory::upLink(gc::PeerId origin) {
  KJ_IF_MAYBE(link, upByOrigin.find(origin)) { return used(**link); }
  return nullptr;
}

size_t PeerDirectory::linkCount() const { return upByOrigin.size(); }

bool PeerDirectory::usable(PeerLink& link) {
  if (link.state != PeerLink::State::UP) return false;
  // Its connection may have ended in this very turn, before capnp reports it.
  KJ_IF_MAYBE(state, services.findConnection(link.client)) {
    KJ_IF_MAYBE(ended, state->inputEnded) { return !(*ended)(); }
    return true;
  }
  return false;
}

kj::Promise<PeerLink*> PeerDirectory::link(kj::StringPtr address, gc::PeerId expected) {
  for (auto& candidate: links) {
    if (usable(*candidate) && candidate->address == address) {
      if (expected != 0 && candidate->origin != expected) {
        RS_FAIL(WRONG_STORE, "the refstored at ", address, " has restarted since (it is ",
                kj::hex(candidate->origin), ", the token's owner was ", kj::hex(expected), ")");
      }
      return &used(*candidate);
    }
  }
  if (expected != 0) {
    KJ_IF_MAYBE(up, upByOrigin.find(expected)) {
      if (usable(**up)) return &used(**up);
    }
  }
  KJ_IF_MAYBE(inFlight, dialing.find(address)) {
    return inFlight->addBranch().then([this, expected, address = kj::str(address)](PeerLink*) {
      return link(address, expected);
    });
  }
  auto forked = dial(kj::str(address), expected).fork();
  auto branch = forked.addBranch();
  dialing.insert(kj::str(address), kj::mv(forked));
  return branch;
}

kj::Promise<PeerLink*> PeerDirectory::dial(kj::String address, gc::PeerId expected) {
  auto connected = network.parseAddress(address).then(
      [](kj::Own<kj::NetworkAddress> target) { return target->connect(); });
  KJ_IF_MAYBE(tls, config.tls) {
    connected = connected.then([tls, address = kj::str(address)](kj::Own<kj::AsyncIoStream> raw) {
      kj::String host = kj::str(address.slice(0, KJ_ASSERT_NONNULL(address.findLast(':'))));
      return tls->wrapClient(kj::mv(raw), host);
    });
  }
  auto timeout = timer.afterDelay(config.connectTimeout).then([]() -> kj::Own<kj::AsyncIoStream> {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "the connection timed out"));
  });
  return connected.exclusiveJoin(kj::mv(timeout))
      .then(
          [this, address = kj::str(address), expected](kj::Own<kj::AsyncIoStream> raw) mutable {
            auto owned = kj::heap<PeerLink>();
            PeerLink& link = *owned;
            links.add(kj::mv(owned));
            link.address = kj::mv(address);
            link.outgoing = true;
            link.lastHeard = timer.now();
            link.stream = kj::heap<ClientStream>(kj::mv(raw), busyPoll);
            link.client = services.openConnection(
                ClientInfo{kj::str("refstored at ", link.address), 0, 0}, false, false);
            RpcConnection::Options rpcOptions;
            rpcOptions.side = capnp::rpc::twoparty::Side::CLIENT;
            // The other daemon may use this connection the same way: it gets our Store, once it
            // presents the cluster secret.
            kj::Maybe<kj::StringPtr> required;
            KJ_IF_MAYBE(s, config.secret) { required = s->asPtr(); }
            rpcOptions.bootstrap = capnp::Capability::Client(
                kj::heap<StoreServer>(services, link.client, required, []() {}));
            rpcOptions.flowLimitWords = services.store.limits().maxCallWords;
            link.rpc = kj::heap<RpcConnection>(*link.stream, kj::mv(rpcOptions));
            link.rpc->messages().setMaxIncomingBytes(services.store.limits().maxMessageBytes);
            ConnectionState& state = services.connection(link.client);
            state.inputEnded = [&link]() { return link.stream->inputEnded(); };
            state.peerBootstrap = [&link]() { return link.rpc->peerBootstrap(); };
            state.abort = [&link]() {
              link.stream->abortRead();
              link.stream->shutdownWrite();
            };
            link.store = link.rpc->peerBootstrap().castAs<proto::Store>();
            link.disconnectWatch =
                link.rpc->onDisconnect()
                    .then([this, &link]() { down(link, "the connection closed"); })
                    .eagerlyEvaluate([](kj::Exception&& e) {
                      logDebug("peer connection watch ended: ", e.getDescription());
                    });
            auto introduced = introduce(link, expected).exclusiveJoin(
                timer.afterDelay(config.connectTimeout).then([]() {
                  kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "no answer to hello"));
                }));
            return introduced.then(
                [this, &link]() -> PeerLink* {
                  forgetDial(link.address);
                  up(link);
                  return &link;
                },
                [this, &link](kj::Exception&& e) -> PeerLink* {
                  forgetDial(link.address);
                  down(link, e.getDescription());
                  // The other side hanging up during hello (TLS on one side only, not a
                  // refstored) is "cannot reach it", not our client's own connection breaking;
                  // its refstore.* answers (UNAUTHENTICATED, WRONG_STORE) pass as they are.
                  if (e.getType() == kj::Exception::Type::DISCONNECTED) {
                    RS_FAIL(UNREACHABLE, "cannot reach the refstored at ", link.address,
                            ": it closed the connection during hello (",
                            e.getDescription(), ")");
                  }
                  kj::throwFatalException(kj::mv(e));
                });
          },
          [this, address = kj::str(address)](kj::Exception&& e) -> PeerLink* {
            forgetDial(address);
            RS_FAIL(UNREACHABLE, "cannot reach the refstored at ", address, ": ",
                    e.getDescription());
          });
}

void PeerDirectory::forgetDial(kj::StringPtr address) {
  // This runs inside the dial's own fork: it is destroyed in a later turn.
  KJ_IF_MAYBE(inFlight, dialing.find(address)) { dropLater(tasks, kj::mv(*inFlight)); }
  dialing.erase(address);
}

kj::Promise<void> PeerDirectory::introduce(PeerLink& link, gc::PeerId expected) {
  auto hello = link.store.helloRequest();
  hello.setClientName(kj::str("refstored ", kj::hex(config.origin), " at ", config.advertise));
  KJ_IF_MAYBE(secret, config.secret) { hello.setSecret(secret->asBytes()); }
  return hello.send().then([this, &link, expected](
                               capnp::Response<proto::Store::HelloResults> reply) {
    gc::PeerId origin = reply.getOrigin();
    if (expected != 0 && origin != expected) {
      RS_FAIL(WRONG_STORE, "the refstored at ", link.address, " has restarted since (it is ",
              kj::hex(origin), ", the token's owner was ", kj::hex(expected), ")");
    }
    RS_REQUIRE(origin != config.origin, INVALID_ARGUMENT, link.address,
               " is this refstored itself");
    link.origin = origin;
    auto peer = link.store.peerRequest();
    peer.setOrigin(config.origin);
    peer.setAddress(config.advertise);
    return peer.send().then([&link](capnp::Response<proto::Store::PeerResults> reply) {
      link.service = reply.getService().castAs<peer::PeerService>();
    });
  });
}

capnp::Capability::Client PeerDirectory::peerService(PeerLink& link) {
  return kj::heap<Service>(*this, link.origin, link.client);
}

capnp::Capability::Client PeerDirectory::acceptPeer(gc::ClientId client, gc::PeerId origin,
                                                    kj::StringPtr address) {
  ConnectionState& state = services.connection(client);
  state.peer = origin;
  // A daemon at the same address with another origin has restarted: the holds of its previous
  // life will never be taken back.
  kj::Vector<gc::PeerId> restarted;
  for (auto& lost: lostAddresses) {
    if (lost.key != origin && lost.value == address) restarted.add(lost.key);
  }
  for (gc::PeerId old: restarted) {
    size_t dropped = services.store.remoteHolds().dropPeer(old);
    lostAddresses.erase(old);
    logInfo("peer ", kj::hex(old), " at ", address, " restarted as ", kj::hex(origin),
            ": dropped the ", dropped, " reference(s) it held");
  }
  lostAddresses.erase(origin);
  KJ_IF_MAYBE(existing, byClient(client)) {
    // Our own outgoing link, whose other end now introduces itself too.
    return peerService(*existing);
  }
  auto owned = kj::heap<PeerLink>();
  PeerLink& link = *owned;
  links.add(kj::mv(owned));
  link.origin = origin;
  link.address = kj::str(address);
  link.client = client;
  link.lastHeard = timer.now();
  link.store = KJ_ASSERT_NONNULL(state.peerBootstrap)().castAs<proto::Store>();
  // Introduce ourselves back, so that we hold its PeerService too.
  tasks.add(introduce(link, origin).then([this, &link]() { up(link); },
                                         [this, &link](kj::Exception&& e) {
                                           logWarning("peer ", link.address,
                                                      " did not accept us back: ",
                                                      e.getDescription());
                                           KJ_IF_MAYBE(abort, services.connection(link.client).abort) {
                                             (*abort)();
                                           }
                                         }));
  logInfo("peer ", kj::hex(origin), " at ", address, " connected");
  return peerService(link);
}

void PeerDirectory::up(PeerLink& link) {
  if (link.state == PeerLink::State::DOWN) return;
  link.state = PeerLink::State::UP;
  link.lastHeard = timer.now();
  link.lastUsed = timer.now();
  upByOrigin.upsert(link.origin, &link, [](PeerLink*& old, PeerLink* now) { old = now; });
  link.heartbeatTask = heartbeatLoop(link).eagerlyEvaluate([](kj::Exception&& e) {
    logDebug("heartbeat ended: ", e.getDescription());
  });
}

void PeerDirectory::down(PeerLink& link, kj::StringPtr why) {
  if (link.state == PeerLink::State::DOWN) return;
  bool wasUp = link.state == PeerLink::State::UP;
  link.state = PeerLink::State::DOWN;
  KJ_IF_MAYBE(up, upByOrigin.find(link.origin)) {
    if (*up == &link) upByOrigin.erase(link.origin);
  }
  if (wasUp) {
    logInfo("peer ", kj::hex(link.origin), " at ", link.address, " is down: ", why);
    KJ_IF_MAYBE(handler, onLinkDown) { (*handler)(link.origin, link.address); }
  }
  PeerLink* gone = &link;
  // Forget it in a later turn: this may run inside its own connection's callbacks.
  tasks.add(kj::evalLater([this, gone]() {
    for (size_t i = 0; i < links.size(); i++) {
      if (links[i].get() != gone) continue;
      kj::Own<PeerLink> dropped = kj::mv(links[i]);
      links[i] = kj::mv(links.back());
      links.removeLast();
      dropped->heartbeatTask = nullptr;
      dropped->disconnectWatch = nullptr;  // before the connection it watches goes
      dropped->service = nullptr;
      dropped->store = nullptr;
      if (dropped->outgoing) {
        dropped->rpc = nullptr;
        dropped->stream = nullptr;
        services.closeConnection(dropped->client);
      }
      break;
    }
  }));
}

PeerLink& PeerDirectory::used(PeerLink& link) {
  link.lastUsed = timer.now();
  return link;
}

bool PeerDirectory::idle(PeerLink& link) {
  // Only the side that dialed closes, so that both never close (and redial) at once.
  if (!link.outgoing || config.idle == 0 * kj::SECONDS) return false;
  if (timer.now() - link.lastUsed < config.idle) return false;
  uint64_t proxies = 0;
  KJ_IF_MAYBE(counter, proxiesOf) { proxies = (*counter)(link.origin); }
  return proxies == 0 && services.store.remoteHolds().remoteHoldersOf(link.origin) == 0;
}

void PeerDirectory::close(PeerLink& link, kj::StringPtr why) {
  KJ_IF_MAYBE(state, services.findConnection(link.client)) {
    KJ_IF_MAYBE(abort, state->abort) { (*abort)(); }
  }
  down(link, why);
}

kj::Promise<void> PeerDirectory::heartbeatLoop(PeerLink& link) {
  return timer.afterDelay(config.heartbeat).then([this, &link]() -> kj::Promise<void> {
    if (link.state != PeerLink::State::UP) return kj::READY_NOW;
    if (timer.now() - link.lastHeard > config.timeout) {
      logWarning("peer ", kj::hex(link.origin), " at ", link.address, " silent for over ",
                 config.timeout / kj::MILLISECONDS, " ms: dropping its connection");
      close(link, "heartbeat timeout");
      return kj::READY_NOW;
    }
    if (idle(link)) {
      logInfo("closing the connection to peer ", kj::hex(link.origin), " at ", link.address,
              ": no reference has used it for ", config.idle / kj::MILLISECONDS, " ms");
      close(link, "idle");
      return kj::READY_NOW;
    }
    link.heartbeatsSent++;
    // The link may be forgotten before the answer comes: find it again by its connection.
    tasks.add(link.service.heartbeatRequest().send().then([this, client = link.client](auto&&) {
      if (PeerLink* heard = byClient(client)) heard->lastHeard = timer.now();
    }));
    return heartbeatLoop(link);
  });
}

void PeerDirectory::connectionLost(gc::ClientId client, gc::PeerId origin) {
  gc::MonoMillis deadline = monoMillis(timer) + config.grace / kj::MILLISECONDS;
  size_t detached = services.store.remoteHolds().detachPeer(origin, deadline);
  KJ_IF_MAYBE(link, byClient(client)) {
    lostAddresses.upsert(origin, kj::str(link->address), [](kj::String& old, kj::String now) {
      old = kj::mv(now);
    });
    down(*link, "its connection broke");
  }
  if (detached > 0) {
    logInfo("peer ", kj::hex(origin), " lost: keeping its ", detached, " reference(s) for ",
            config.grace / kj::MILLISECONDS, " ms");
  }
  armGrace();
}

void PeerDirectory::connectionClosed(gc::ClientId client) {
  KJ_IF_MAYBE(state, services.findConnection(client)) {
    if (state->peer != 0 && !state->holdersDetached) {
      state->holdersDetached = true;
      connectionLost(client, state->peer);
      return;
    }
  }
  KJ_IF_MAYBE(link, byClient(client)) { down(*link, "its connection closed"); }
}

void PeerDirectory::armGrace() {
  auto next = services.store.remoteHolds().nextDetachedExpiry();
  KJ_IF_MAYBE(at, graceAt) {
    if (next && *at == *next) return;
  }
  if (!next) return;
  graceTask = graceLoop().eagerlyEvaluate([](kj::Exception&& e) {
    logError("peer grace timer failed: ", e.getDescription());
  });
}

kj::Promise<void> PeerDirectory::graceLoop() {
  auto next = services.store.remoteHolds().nextDetachedExpiry();
  if (!next) {
    graceAt = nullptr;
    return kj::READY_NOW;
  }
  graceAt = *next;
  return timer.atTime(kj::origin<kj::TimePoint>() + *next * kj::MILLISECONDS).then([this]() {
    size_t expired = services.store.remoteHolds().expireDetached(monoMillis(timer), 10000);
    if (expired > 0) logInfo("grace period over: released ", expired, " reference(s) of lost peers");
    return graceLoop();
  });
}

void PeerDirectory::countPulled(gc::PeerId origin, uint64_t bytes) {
  figures.upsert(origin, Figures{bytes, 0}, [](Figures& old, Figures add) {
    old.pulled += add.pulled;
  });
}

void PeerDirectory::countServed(gc::PeerId origin, uint64_t bytes) {
  figures.upsert(origin, Figures{0, bytes}, [](Figures& old, Figures add) {
    old.served += add.served;
  });
}

void PeerDirectory::fillPeers(proto::Store::PeersResults::Builder results) {
  auto out = results.initPeers(links.size());
  for (size_t i = 0; i < links.size(); i++) {
    PeerLink& link = *links[i];
    auto row = out[i];
    row.setOrigin(link.origin);
    row.setAddress(link.address);
    row.setState(link.stateName());
    row.setOutgoing(link.outgoing);
    KJ_IF_MAYBE(f, figures.find(link.origin)) {
      row.setBytesPulled(f->pulled);
      row.setBytesServed(f->served);
    }
    KJ_IF_MAYBE(count, proxiesOf) { row.setHeldFromPeer((*count)(link.origin)); }
    row.setHeldByPeer(services.store.remoteHolds().remoteHoldersOf(link.origin));
    row.setLastHeardMs((timer.now() - link.lastHeard) / kj::MILLISECONDS);
  }
}

void PeerDirectory::fillStats(proto::Stats::Builder stats) {
  stats.setPeers(upByOrigin.size());
  uint64_t served = 0;
  for (auto& f: figures) served += f.value.served;
  stats.setBytesServedTotal(served);
}

}  // namespace refstore::server
