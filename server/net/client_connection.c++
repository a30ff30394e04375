#include "server/net/client_connection.h"

#include "server/rpc/store_server.h"
#include "server/runtime/log.h"

namespace refstore::server {

ClientConnection::ClientConnection(RpcServices& services, BusyPoll& busyPoll, kj::Timer& timer,
                                   kj::Own<kj::AsyncIoStream> accepted, ClientInfo info,
                                   bool sharedMemory, bool writableSharedMemory,
                                   kj::Maybe<kj::StringPtr> secret,
                                   kj::Maybe<TransportWrapper&> wrapTransport)
    : services(services), timer(timer),
      client(services.openConnection(kj::mv(info), sharedMemory, writableSharedMemory)),
      stream(kj::heap<ClientStream>(kj::mv(accepted), busyPoll)),
      authenticated(secret == nullptr) {
  const Limits& limits = services.store.limits();
  auto onAuthenticated = [this]() {
    authenticated = true;
    rpc->messages().setMaxIncomingBytes(this->services.store.limits().maxMessageBytes);
  };
  RpcConnection::Options options;
  options.side = capnp::rpc::twoparty::Side::SERVER;
  if (sharedMemory) {
    // We send segment fds; clients never need to send us any, but capnp 0.9.2 only attaches
    // outgoing fds on a network created with maxFdsPerMessage > 0.
    options.fdStream = *stream;
    options.maxFdsPerMessage = 1;
  }
  options.bootstrap = capnp::Capability::Client(
      kj::heap<StoreServer>(services, client, secret, kj::mv(onAuthenticated)));
  KJ_IF_MAYBE(wrap, wrapTransport) {
    options.wrapTransport = [wrap](capnp::MessageStream& inner) { return (*wrap)(inner); };
  }
  options.flowLimitWords = limits.maxCallWords;
  rpc = kj::heap<RpcConnection>(*stream, kj::mv(options));
  ConnectionState& state = services.connection(client);
  state.inputEnded = [this]() { return stream->inputEnded(); };
  state.peerBootstrap = [this]() { return rpc->peerBootstrap(); };
  state.abort = [this]() {
    stream->abortRead();
    stream->shutdownWrite();
  };
  BatchingMessageStream& messages = rpc->messages();
  messages.setMaxIncomingBytes(authenticated ? limits.maxMessageBytes
                                             : limits.maxUnauthenticatedMessageBytes);
  messages.setStallTimeout(timer, limits.stalledMessageTimeout);
  messages.setMaxUnsentBytes(limits.maxUnsentBytes);
  messages.setOnLargeMessageWritten(
      [budget = kj::addRef(*services.connection(client).replyBudget)](size_t bytes) mutable {
        budget->credit(bytes);
      });
}

ClientConnection::~ClientConnection() noexcept(false) {
  logDebug("client ", client, " disconnected");
  rpc = nullptr;  // releases the client's capabilities
  stream = nullptr;
  services.closeConnection(client);
}

kj::Promise<void> ClientConnection::whenDone() {
  auto done = rpc->onDisconnect();
  if (authenticated) return done;
  return done.exclusiveJoin(
      timer.afterDelay(services.store.limits().helloTimeout).then([this]() -> kj::Promise<void> {
        if (authenticated) return kj::NEVER_DONE;
        logDebug("client ", client, " did not authenticate in time: closing it");
        return kj::READY_NOW;
      }));
}

}  // namespace refstore::server
