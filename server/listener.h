// Accepting connections: the Unix socket (shared memory + fd passing) and the optional TCP
// listener (copy path). Each accepted connection gets its own RPC system whose bootstrap is a
// StoreServer bound to that connection's ClientId; when the connection ends (closed, or the
// peer killed) Cap'n Proto releases every capability it held, which releases its references.
#pragma once

#include <capnp/serialize-async.h>
#include <kj/async-io.h>
#include <kj/function.h>

#include "server/busy_poll.h"
#include "server/object_store.h"

namespace refstore::server {

// Creates, binds and listens on a Unix socket at `path` with mode 0600. A stale socket file (no
// one accepting) is replaced; a live one is an error, so two daemons never share a path.
kj::AutoCloseFd listenUnixSocket(kj::StringPtr path);

// Throws if a live daemon accepts connections at `path` (checked early, so a second daemon
// fails before touching anything).
void requireSocketFree(kj::StringPtr path);

class Listener final: public kj::TaskSet::ErrorHandler {
 public:
  // `busyPoll` is told about every client's traffic (busy_poll.h); `timer` paces retries.
  Listener(ObjectStore& store, BusyPoll& busyPoll, kj::Timer& timer);
  KJ_DISALLOW_COPY(Listener);

  // Serve until the returned promise is dropped.
  kj::Promise<void> serveUnix(kj::ConnectionReceiver& receiver);
  // `secret`: the cluster secret required on this listener (null: loopback-only, none needed).
  kj::Promise<void> serveTcp(kj::ConnectionReceiver& receiver, kj::Maybe<kj::StringPtr> secret);

  // Disconnects every client (graceful shutdown).
  void closeAll();

  // From now on, each new connection's RPC system reads and writes through
  // `wrap(its transport)` (refstored --metrics times calls this way; off, nothing is wrapped).
  using TransportWrapper = kj::Function<kj::Own<capnp::MessageStream>(capnp::MessageStream&)>;
  void wrapTransports(TransportWrapper wrap) { transportWrapper = kj::mv(wrap); }

 private:
  struct Connection;
  void taskFailed(kj::Exception&& exception) override;
  // Accepts connections until the promise is dropped. A failed accept (EMFILE when the process
  // is out of file descriptors, ENOBUFS, ...) never ends it: it logs, waits (10 ms, doubling up
  // to 1 s while failures go on) and tries again, so the daemon accepts again as soon as
  // descriptors come back.
  kj::Promise<void> acceptLoop(kj::ConnectionReceiver& receiver, bool isUnix,
                               kj::Maybe<kj::StringPtr> secret, kj::Duration backoff);
  void startConnection(kj::AuthenticatedStream accepted, bool isUnix,
                       kj::Maybe<kj::StringPtr> secret);

  ObjectStore& store;
  BusyPoll& busyPoll;
  kj::Timer& timer;
  kj::Maybe<TransportWrapper> transportWrapper;
  kj::Own<kj::TaskSet> connections;
  uint64_t refusedForLimit = 0;  // connections closed at once because of --max-clients
};

}  // namespace refstore::server
