// PeerLink: one connection between this daemon and another (a "peer"), whichever dialed it.
// Each side holds the other's Store (bootstrap) and PeerService (Store.peer); Refs each hands
// the other on it count as remote holders. The link is up once both sides have introduced
// themselves, and down once its connection is gone; a peer that comes back makes a new link.
#pragma once

#include <kj/async-io.h>
#include <kj/string.h>

#include "gc/object_table.h"
#include "schema/peer.capnp.h"
#include "schema/refstore.capnp.h"
#include "schema/rpc_connection.h"
#include "server/net/client_stream.h"

namespace refstore::server {

struct PeerLink {
  enum class State { CONNECTING, UP, DOWN };

  gc::PeerId origin = 0;  // the other daemon's epoch (known once it said hello)
  kj::String address;     // where it is reached
  bool outgoing = false;  // we dialed it
  State state = State::CONNECTING;
  gc::ClientId client = 0;  // our ClientId for this connection (RpcServices)
  proto::Store::Client store = nullptr;
  peer::PeerService::Client service = nullptr;
  kj::TimePoint lastHeard = kj::origin<kj::TimePoint>();
  kj::TimePoint lastUsed = kj::origin<kj::TimePoint>();  // last handed out by PeerDirectory
  uint64_t heartbeatsSent = 0;
  kj::Promise<void> heartbeatTask = nullptr;
  // Outgoing links: takes the link down when its connection ends. Owned here, not by the
  // directory's TaskSet, so that it cannot fire after the link is gone (its callback refers to
  // the link; destroying the connection completes this promise).
  kj::Promise<void> disconnectWatch = nullptr;

  // Outgoing links own their connection (incoming ones belong to server/net's listener).
  kj::Own<ClientStream> stream;
  kj::Own<RpcConnection> rpc;

  kj::StringPtr stateName() const {
    switch (state) {
      case State::CONNECTING: return "connecting";
      case State::UP: return "up";
      case State::DOWN: return "down";
    }
    return "unknown";
  }
};

}  // namespace refstore::server
