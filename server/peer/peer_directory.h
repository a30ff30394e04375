// PeerDirectory: this daemon's connections to other daemons (DESIGN.md "Many hosts"). One link
// per pair of daemons, made on first need -- by either side -- and reused by every reference
// that flows over it: this daemon dials an owner whose token it redeems (link), and accepts
// daemons that dial it (Store.peer, through the PeerGateway door of server/rpc). Both sides
// introduce themselves with the cluster secret and their origin, and hold each other's Store
// and PeerService. Heartbeats find a silent peer; a link whose connection is gone is down.
//
// As an owner, it keeps a lost peer's remote holders for the grace period (gc: detached), so a
// peer that reconnects with the same origin takes them back (PeerService.reattach), and drops
// them when the grace is over, or at once when a daemon at the same address comes back with a
// new origin (it restarted).
#pragma once

#include <kj/async-io.h>
#include <kj/map.h>
#include <kj/vector.h>

#include "schema/peer.capnp.h"
#include "server/dataplane/ticket_book.h"
#include "server/peer/peer_link.h"
#include "server/peer/peer_options.h"
#include "server/peer/relay_offers.h"
#include "server/rpc/services.h"
#include "server/runtime/busy_poll.h"

namespace refstore::server {

class PeerDirectory final: public PeerGateway, private kj::TaskSet::ErrorHandler {
 public:
  PeerDirectory(RpcServices& services, kj::Network& network, kj::Timer& timer,
                BusyPoll& busyPoll, dataplane::TicketBook& tickets, PeerOptions options);
  ~PeerDirectory() noexcept(false);
  KJ_DISALLOW_COPY(PeerDirectory);

  const PeerOptions& options() const { return config; }

  // The up link to the daemon at `address`, dialing it if there is none. If `expected` is not
  // 0 the daemon must have that origin. Fails with UNREACHABLE if it cannot be reached or
  // introduced within the connect timeout, WRONG_STORE if it answers with another origin (it
  // has restarted since).
  kj::Promise<PeerLink*> link(kj::StringPtr address, gc::PeerId expected);
  // The up link to `origin`, if there is one now.
  kj::Maybe<PeerLink&> upLink(gc::PeerId origin);
  // Up, and its connection has not ended (capnp reports an end a turn or more later).
  bool usable(PeerLink& link);
  // The link over connection `client` (in any state), if it is not forgotten yet.
  kj::Maybe<PeerLink&> linkOf(gc::ClientId client);

  // A ticket for this daemon's data port, for `peer` to copy `object` (as a relay, the remote
  // module hands out tickets for its copies of other daemons' objects).
  gc::Secret issueTicket(gc::ObjectId object, gc::PeerId peer) {
    return tickets.issue(object, peer);
  }

  // Per-peer transfer figures, kept by the data plane and the remote module.
  void countPulled(gc::PeerId origin, uint64_t bytes);
  void countServed(gc::PeerId origin, uint64_t bytes);
  // How many proxies here a peer's objects have (the remote module says).
  void setProxyCounter(kj::Function<uint64_t(gc::PeerId)> counter) {
    proxiesOf = kj::mv(counter);
  }
  // Called when an up link goes down (the remote module reconnects to owners it depends on).
  void setOnLinkDown(kj::Function<void(gc::PeerId origin, kj::StringPtr address)> handler) {
    onLinkDown = kj::mv(handler);
  }

  size_t linkCount() const;

  // PeerGateway.
  void fillPeers(proto::Store::PeersResults::Builder results) override;

  capnp::Capability::Client acceptPeer(gc::ClientId client, gc::PeerId origin,
                                       kj::StringPtr address) override;
  void fillStats(proto::Stats::Builder stats) override;
  void connectionLost(gc::ClientId client, gc::PeerId origin) override;
  void connectionClosed(gc::ClientId client) override;
  capnp::Capability::Client peerService(PeerLink& link);  // what we serve to `link`'s daemon

 private:
  class Service;  // PeerService, served to one link
  struct Figures {
    uint64_t pulled = 0, served = 0;
  };

  void taskFailed(kj::Exception&& e) override;
  kj::Promise<PeerLink*> dial(kj::String address, gc::PeerId expected);
  void forgetDial(kj::StringPtr address);
  // Presents the secret and this daemon's origin on `link.store`, getting its PeerService.
  kj::Promise<void> introduce(PeerLink& link, gc::PeerId expected);
  void up(PeerLink& link);
  void down(PeerLink& link, kj::StringPtr why);
  void close(PeerLink& link, kj::StringPtr why);  // aborts its connection, then down()
  kj::Promise<void> heartbeatLoop(PeerLink& link);
  PeerLink& used(PeerLink& link);  // notes that a reference is about to use it
  // An outgoing link no reference uses, unused for the idle time: closed (PeerOptions::idle).
  bool idle(PeerLink& link);
  void armGrace();
  kj::Promise<void> graceLoop();
  PeerLink* byClient(gc::ClientId client);

  RpcServices& services;
  kj::Network& network;
  kj::Timer& timer;
  BusyPoll& busyPoll;
  dataplane::TicketBook& tickets;
  PeerOptions config;
  kj::Vector<kj::Own<PeerLink>> links;             // every link not yet forgotten
  kj::HashMap<gc::PeerId, PeerLink*> upByOrigin;   // the up link to each daemon
  kj::HashMap<kj::String, kj::ForkedPromise<PeerLink*>> dialing;  // by address
  kj::HashMap<gc::PeerId, Figures> figures;
  RelayOffers relayOffers;  // readers' copies of this daemon's objects, offered to others
  kj::HashMap<gc::PeerId, kj::String> lostAddresses;  // peers whose holds are detached
  kj::Maybe<kj::Function<uint64_t(gc::PeerId)>> proxiesOf;
  kj::Maybe<kj::Function<void(gc::PeerId, kj::StringPtr)>> onLinkDown;
  kj::Maybe<gc::MonoMillis> graceAt;
  kj::Promise<void> graceTask = nullptr;
  kj::TaskSet tasks{*this};
};

}  // namespace refstore::server
