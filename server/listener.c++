#include "server/listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>

#include "schema/batching_message_stream.h"
#include "server/client_stream.h"
#include "server/log.h"
#include "server/store_server.h"

namespace refstore::server {

namespace {

struct sockaddr_un unixAddress(kj::StringPtr path) {
  struct sockaddr_un address;
  memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  KJ_REQUIRE(path.size() < sizeof(address.sun_path), "socket path too long (limit 107 bytes)",
             path);
  memcpy(address.sun_path, path.begin(), path.size());
  return address;
}

bool someoneListens(const struct sockaddr_un& address) {
  int probe;
  KJ_SYSCALL(probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  kj::AutoCloseFd probeFd(probe);
  return connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
}

}  // namespace

void requireSocketFree(kj::StringPtr path) {
  KJ_REQUIRE(!someoneListens(unixAddress(path)),
             "another refstored is already listening on this socket", path);
}

kj::AutoCloseFd listenUnixSocket(kj::StringPtr path) {
  struct sockaddr_un address = unixAddress(path);

  int raw;
  KJ_SYSCALL(raw = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  kj::AutoCloseFd fd(raw);

  struct stat existing;
  if (lstat(path.cStr(), &existing) == 0) {
    KJ_REQUIRE(S_ISSOCK(existing.st_mode), "socket path exists and is not a socket", path);
    // Someone accepting there? Then refuse rather than steal the path.
    KJ_REQUIRE(!someoneListens(address), "another refstored is already listening on this socket",
               path);
    KJ_SYSCALL(unlink(path.cStr()));
    logInfo("removed stale socket ", path);
  }

  // Owner-only from the first instant: no window where another user could connect.
  mode_t previous = umask(0177);
  int bound = bind(raw, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  int bindErrno = errno;
  umask(previous);
  if (bound < 0) KJ_FAIL_SYSCALL("bind", bindErrno, path);
  KJ_SYSCALL(listen(raw, SOMAXCONN));
  return fd;
}

// One client connection: stream, message framing, Cap'n Proto network and RPC system. Member
// order matters: the RPC system is destroyed first (releasing the client's capabilities), then
// the network, the framing, the stream, and finally the client's registry entry.
//
// Its limits (server/limits.h): messages up to Limits::maxMessageBytes, or only
// maxUnauthenticatedMessageBytes until a TCP peer has presented the cluster secret; a message
// begun must keep arriving (stalledMessageTimeout); calls in flight are capped by capnp's flow
// limit (maxCallWords); and calls are cancelled when the connection ends (their servers allow
// it), so nothing a client started outlives it.
struct Listener::Connection {
  Connection(ObjectStore& store, BusyPoll& busyPoll, kj::Timer& timer,
             kj::Own<kj::AsyncIoStream> accepted, ClientInfo info,
             kj::Maybe<kj::StringPtr> secret, kj::Maybe<TransportWrapper&> wrapTransport)
      : store(store), client(store.addClient(kj::mv(info))),
        stream(kj::heap<ClientStream>(kj::mv(accepted), busyPoll)),
        authenticated(secret == nullptr) {
    bool sharedMemory = store.client(client).sharedMemory;
    messages = sharedMemory ? kj::heap<BatchingMessageStream>(*stream, *stream)
                            : kj::heap<BatchingMessageStream>(*stream);
    capnp::MessageStream* transport = messages.get();
    KJ_IF_MAYBE(wrap, wrapTransport) {
      wrapped = (*wrap)(*messages);
      transport = wrapped.get();
    }
    if (sharedMemory) {
      // We send segment fds; clients never need to send us any, but capnp 0.9.2 only
      // attaches outgoing fds on a network created with maxFdsPerMessage > 0.
      network = kj::heap<capnp::TwoPartyVatNetwork>(*transport, /*maxFdsPerMessage=*/1,
                                                    capnp::rpc::twoparty::Side::SERVER);
    } else {
      network =
          kj::heap<capnp::TwoPartyVatNetwork>(*transport, capnp::rpc::twoparty::Side::SERVER);
    }
    const Limits& limits = store.limits();
    messages->setMaxIncomingBytes(authenticated ? limits.maxMessageBytes
                                                : limits.maxUnauthenticatedMessageBytes);
    messages->setStallTimeout(timer, limits.stalledMessageTimeout);
    messages->setMaxUnsentBytes(limits.maxUnsentBytes);
    messages->setOnLargeMessageWritten(
        [budget = kj::addRef(*store.client(client).replyBudget)](size_t bytes) mutable {
          budget->credit(bytes);
        });
    auto onAuthenticated = [this]() {
      authenticated = true;
      messages->setMaxIncomingBytes(this->store.limits().maxMessageBytes);
    };
    rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(capnp::makeRpcServer(
        *network, capnp::Capability::Client(
                      kj::heap<StoreServer>(store, client, secret, kj::mv(onAuthenticated)))));
    rpc->setFlowLimit(limits.maxCallWords);
  }

  // Resolves when the connection is over: the peer disconnected, or (TCP with a cluster secret)
  // it did not present the secret within Limits::helloTimeout.
  kj::Promise<void> whenDone(kj::Timer& timer) {
    auto done = network->onDisconnect();
    if (authenticated) return done;
    return done.exclusiveJoin(
        timer.afterDelay(store.limits().helloTimeout).then([this]() -> kj::Promise<void> {
          if (authenticated) return kj::NEVER_DONE;
          logDebug("client ", client, " did not authenticate in time: closing it");
          return kj::READY_NOW;
        }));
  }
  ~Connection() noexcept(false) {
    rpc = nullptr;
    network = nullptr;
    wrapped = nullptr;
    messages = nullptr;
    stream = nullptr;
    store.removeClient(client);
  }

  ObjectStore& store;
  gc::ClientId client;
  kj::Own<ClientStream> stream;
  kj::Own<BatchingMessageStream> messages;
  kj::Own<capnp::MessageStream> wrapped;  // over `messages`, if transports are wrapped
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  bool authenticated;  // no secret required, or hello presented it
};

Listener::Listener(ObjectStore& store, BusyPoll& busyPoll, kj::Timer& timer)
    : store(store), busyPoll(busyPoll), timer(timer), connections(kj::heap<kj::TaskSet>(*this)) {}

void Listener::taskFailed(kj::Exception&& exception) {
  logWarning("connection ended with error: ", exception.getDescription());
}

void Listener::startConnection(kj::AuthenticatedStream accepted, bool isUnix,
                               kj::Maybe<kj::StringPtr> secret) {
  uint32_t maxClients = store.limits().maxClients;
  if (store.clientCount() >= maxClients) {
    // Closed at once (the stream is dropped): accepting and closing keeps the backlog moving and
    // tells the client, where leaving it in the backlog would make it hang.
    if (refusedForLimit++ % 1000 == 0) {
      logWarning("refused a connection: ", maxClients, " clients are connected (--max-clients; ",
                 refusedForLimit, " refused so far)");
    }
    return;
  }
  ClientInfo info;
  if (isUnix) {
    auto& identity = kj::downcast<kj::LocalPeerIdentity>(*accepted.peerIdentity);
    auto creds = identity.getCredentials();
    KJ_IF_MAYBE(pid, creds.pid) { info.pid = *pid; }
    KJ_IF_MAYBE(uid, creds.uid) { info.uid = *uid; }
    info.sharedMemory = true;
    // Writable segments are never shared across uids (DESIGN.md "Data paths").
    info.writableSharedMemory = creds.uid != nullptr && (info.uid == getuid() || info.uid == 0);
  }
  auto connection = kj::heap<Connection>(store, busyPoll, timer, kj::mv(accepted.stream),
                                         kj::mv(info), secret, transportWrapper);
  logDebug("client ", connection->client, " connected (pid ", store.client(connection->client).pid,
           ")");
  auto done = connection->whenDone(timer);
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
