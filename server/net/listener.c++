#include "server/net/listener.h"

#include <unistd.h>

#include "server/net/client_connection.h"
#include "server/runtime/log.h"

namespace refstore::server {

Listener::Listener(RpcServices& services, BusyPoll& busyPoll, kj::Timer& timer)
    : services(services), busyPoll(busyPoll), timer(timer),
      connections(kj::heap<kj::TaskSet>(*this)) {}

void Listener::taskFailed(kj::Exception&& exception) {
  logWarning("connection ended with error: ", exception.getDescription());
}

void Listener::startConnection(kj::AuthenticatedStream accepted, bool isUnix,
                               kj::Maybe<kj::StringPtr> secret) {
  uint32_t maxClients = services.store.limits().maxClients;
  if (services.connectionCount() >= maxClients) {
    // Closed at once (the stream is dropped): accepting and closing keeps the backlog moving and
    // tells the client, where leaving it in the backlog would make it hang.
    if (refusedForLimit++ % 1000 == 0) {
      logWarning("refused a connection: ", maxClients, " clients are connected (--max-clients; ",
                 refusedForLimit, " refused so far)");
    }
    return;
  }
  ClientInfo info;
  bool sharedMemory = false, writableSharedMemory = false;
  if (isUnix) {
    auto& identity = kj::downcast<kj::LocalPeerIdentity>(*accepted.peerIdentity);
    auto creds = identity.getCredentials();
    KJ_IF_MAYBE(pid, creds.pid) { info.pid = *pid; }
    KJ_IF_MAYBE(uid, creds.uid) { info.uid = *uid; }
    sharedMemory = true;
    // Writable segments are never shared across uids (DESIGN.md "Data paths").
    writableSharedMemory = creds.uid != nullptr && (info.uid == getuid() || info.uid == 0);
  }
  int pid = info.pid;
  auto connection = kj::heap<ClientConnection>(services, busyPoll, timer, kj::mv(accepted.stream),
                                               kj::mv(info), sharedMemory, writableSharedMemory,
                                               secret, transportWrapper);
  logDebug("client ", connection->id(), " connected (pid ", pid, ")");
  auto done = connection->whenDone();
  connections->add(done.attach(kj::mv(connection)));
}

kj::Promise<void> Listener::serveUnix(kj::ConnectionReceiver& receiver) {
  return acceptLoop(receiver, /*isUnix=*/true, nullptr, 0 * kj::MILLISECONDS);
}

kj::Promise<void> Listener::serveTcp(kj::ConnectionReceiver& receiver,
                                     kj::Maybe<kj::StringPtr> secret) {
  return acceptLoop(receiver, /*isUnix=*/false, secret, 0 * kj::MILLISECONDS);
}

kj::Promise<void> Listener::acceptLoop(kj::ConnectionReceiver& receiver, bool isUnix,
                                       kj::Maybe<kj::StringPtr> secret, kj::Duration backoff) {
  // evalNow: kj's accept can throw (EMFILE) before it returns a promise.
  return kj::evalNow([&]() { return receiver.acceptAuthenticated(); }).then(
      [this, &receiver, isUnix, secret](kj::AuthenticatedStream accepted) {
        // A connection that fails to start (e.g. no fd left for a segment) is dropped, not
        // the listener.
        KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
          startConnection(kj::mv(accepted), isUnix, secret);
        })) {
          logWarning("could not start a connection: ", e->getDescription());
        }
        return acceptLoop(receiver, isUnix, secret, 0 * kj::MILLISECONDS);
      },
      [this, &receiver, isUnix, secret, backoff](kj::Exception&& e) {
        kj::Duration wait = backoff == 0 * kj::MILLISECONDS ? 10 * kj::MILLISECONDS
                                                             : kj::min(backoff * 2, 1 * kj::SECONDS);
        if (backoff == 0 * kj::MILLISECONDS || wait == 1 * kj::SECONDS) {
          logWarning(isUnix ? "unix" : "tcp", " listener: accept failed (", e.getDescription(),
                     "); retrying in ", wait / kj::MILLISECONDS, " ms");
        }
        return timer.afterDelay(wait).then([this, &receiver, isUnix, secret, wait]() {
          return acceptLoop(receiver, isUnix, secret, wait);
        });
      });
}

void Listener::closeAll() { connections = kj::heap<kj::TaskSet>(*this); }

}  // namespace refstore::server
