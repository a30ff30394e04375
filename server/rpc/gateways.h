// The RPC layer's doors to other daemons (many hosts). The capability servers stay the same for
// every object; where a call needs another daemon, they go through one of these, which
// server/peer (PeerGateway) and server/remote (RemoteGateway) implement. Without them (a daemon
// with no TCP listener), tokens of other daemons are refused and there are no proxies.
#pragma once

#include <kj/async.h>
#include <kj/string.h>

#include "gc/object_table.h"
#include "schema/refstore.capnp.h"
#include "server/store/token.h"

namespace refstore::server {

struct HeldObject {
  gc::ObjectId id;
  gc::HolderId holder;  // a new holder for the adopting client; the caller owns it
};

class PeerGateway {
 public:
  virtual ~PeerGateway() noexcept(false) = default;
  // Store.peer on connection `client`: it becomes a peer connection with the daemon `origin`
  // reachable at `address`. Returns this daemon's PeerService for it.
  virtual capnp::Capability::Client acceptPeer(gc::ClientId client, gc::PeerId origin,
                                               kj::StringPtr address) = 0;
  // Adds the peers' figures to a Stats reply.
  virtual void fillStats(proto::Stats::Builder stats) = 0;
  // The peer connection `client` (to daemon `origin`) ended: detach its remote holders for the
  // grace period.
  virtual void connectionLost(gc::ClientId client, gc::PeerId origin) = 0;
  // Connection `client` is closed (whatever it was): forget any link over it.
  virtual void connectionClosed(gc::ClientId client) = 0;
  // Store.peers.
  virtual void fillPeers(proto::Store::PeersResults::Builder results) = 0;
};

class RemoteGateway {
 public:
  virtual ~RemoteGateway() noexcept(false) = default;
  // Redeems a token of another daemon at its owner: a new holder for `client` on the local
  // proxy of its object (made, or reused). Fails UNREACHABLE, WRONG_STORE, NOT_FOUND, ...
  virtual kj::Promise<HeldObject> restore(Token token, gc::ClientId client) = 0;
  // Ref.share of a proxy: a token minted by the owner (naming it).
  virtual kj::Promise<kj::String> share(gc::ObjectId proxy, uint32_t ttlSeconds,
                                        uint32_t uses) = 0;
  // Resolves once the proxy's size and hash are known here (Ref.info).
  virtual kj::Promise<void> describe(gc::ObjectId proxy) = 0;
  // Ref.children of a proxy: new holders for `client` on proxies of the owner's children.
  virtual kj::Promise<kj::Array<HeldObject>> children(gc::ObjectId proxy,
                                                      gc::ClientId client) = 0;
  // Where a proxy's owner is, for listings; and whether it is lost.
  struct Whereabouts {
    kj::String ownerAddress;
    bool ownerLost = false;
  };
  virtual Whereabouts whereabouts(gc::ObjectId proxy) = 0;
  // Adds the proxies' figures to a Stats reply.
  virtual void fillStats(proto::Stats::Builder stats) = 0;
};

}  // namespace refstore::server
