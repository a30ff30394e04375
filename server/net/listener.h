// Accepting connections: the Unix socket (shared memory + fd passing) and the optional TCP
// listener (copy path). Each accepted connection gets its own RPC system whose bootstrap is a
// StoreServer bound to that connection's ClientId; when the connection ends (closed, or the
// peer killed) Cap'n Proto releases every capability it held, which releases its references.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/async-io.h>
#include <kj/function.h>

#include "server/runtime/busy_poll.h"
#include "server/net/client_connection.h"
#include "server/rpc/services.h"

namespace refstore::server {

class Listener final: public kj::TaskSet::ErrorHandler {
 public:
  // `busyPoll` is told about every client's traffic (busy_poll.h); `timer` paces retries.
  Listener(RpcServices& services, BusyPoll& busyPoll, kj::Timer& timer);
  KJ_DISALLOW_COPY(Listener);

  // Serve until the returned promise is dropped.
  kj::Promise<void> serveUnix(kj::ConnectionReceiver& receiver);
  // `secret`: the cluster secret required on this listener (null: loopback-only, none needed).
  kj::Promise<void> serveTcp(kj::ConnectionReceiver& receiver, kj::Maybe<kj::StringPtr> secret);

  // Disconnects every client (graceful shutdown).
  void closeAll();

  // From now on, each new connection's RPC system reads and writes through
  // `wrap(its transport)` (refstored --metrics times calls this way; off, nothing is wrapped).
  using TransportWrapper = ClientConnection::TransportWrapper;
  void wrapTransports(TransportWrapper wrap) { transportWrapper = kj::mv(wrap); }

 private:
  void taskFailed(kj::Exception&& exception) override;
  // Accepts connections until the promise is dropped. A failed accept (EMFILE when the process
  // is out of file descriptors, ENOBUFS, ...) never ends it: it logs, waits (10 ms, doubling up
  // to 1 s while failures go on) and tries again, so the daemon accepts again as soon as
  // descriptors come back.
  kj::Promise<void> acceptLoop(kj::ConnectionReceiver& receiver, bool isUnix,
                               kj::Maybe<kj::StringPtr> secret, kj::Duration backoff);
  void startConnection(kj::AuthenticatedStream accepted, bool isUnix,
                       kj::Maybe<kj::StringPtr> secret);

  RpcServices& services;
  BusyPoll& busyPoll;
  kj::Timer& timer;
  kj::Maybe<TransportWrapper> transportWrapper;
  kj::Own<kj::TaskSet> connections;
  uint64_t refusedForLimit = 0;  // connections closed at once because of --max-clients
};

}  // namespace refstore::server
