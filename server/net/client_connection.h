// One client's connection to the daemon: its byte stream (ClientStream: activity for busy
// polling, no incoming fds), the RPC stack both ends share (schema/rpc_connection.h) whose
// bootstrap is a StoreServer bound to this connection's ClientId, and its limits
// (server/store/limits.h): messages up to Limits::maxMessageBytes, or only
// maxUnauthenticatedMessageBytes until a TCP peer has presented the cluster secret; a message
// begun must keep arriving (stalledMessageTimeout); at most maxUnsentBytes of replies it does not
// read; calls in flight capped by capnp's flow limit (maxCallWords). When it ends, Cap'n Proto
// releases every capability the client held (and cancels its calls), which releases its
// references; then its state goes.
#pragma once

#include <kj/async-io.h>

#include "schema/rpc_connection.h"
#include "server/net/client_stream.h"
#include "server/rpc/services.h"
#include "server/runtime/busy_poll.h"

namespace refstore::server {

class ClientConnection {
 public:
  using TransportWrapper = kj::Function<kj::Own<capnp::MessageStream>(capnp::MessageStream&)>;

  // `secret`: the cluster secret this listener requires (null: none). `wrapTransport`: wraps
  // the framing (refstored --metrics times calls this way).
  ClientConnection(RpcServices& services, BusyPoll& busyPoll, kj::Timer& timer,
                   kj::Own<kj::AsyncIoStream> accepted, ClientInfo info, bool sharedMemory,
                   bool writableSharedMemory, kj::Maybe<kj::StringPtr> secret,
                   kj::Maybe<TransportWrapper&> wrapTransport);
  ~ClientConnection() noexcept(false);
  KJ_DISALLOW_COPY(ClientConnection);

  gc::ClientId id() const { return client; }

  // Resolves when the connection is over: the peer disconnected, or (TCP with a cluster secret)
  // it did not present the secret within Limits::helloTimeout.
  kj::Promise<void> whenDone();

 private:
  RpcServices& services;
  kj::Timer& timer;
  gc::ClientId client;
  kj::Own<ClientStream> stream;
  kj::Own<RpcConnection> rpc;
  bool authenticated;  // no secret required, or hello presented it
};

}  // namespace refstore::server
