#include "server/net/tls_receiver.h"

#include <kj/debug.h>

#include "server/runtime/log.h"

namespace refstore::server {
namespace {

// "ip:port" of whoever opened `stream`, for the log.
kj::String addressOf(kj::AuthenticatedStream& stream) {
  KJ_IF_MAYBE(network, kj::dynamicDowncastIfAvailable<kj::NetworkPeerIdentity>(
                           *stream.peerIdentity)) {
    return network->getAddress().toString();
  }
  return kj::str("an unknown address");
}

}  // namespace

TlsReceiver::TlsReceiver(kj::TlsContext& tls, kj::Own<kj::ConnectionReceiver> inner,
                         kj::Timer& timer, kj::Duration handshakeTimeout, kj::StringPtr what)
    : tls(tls), inner(kj::mv(inner)), timer(timer), handshakeTimeout(handshakeTimeout),
      what(kj::str(what)), tasks(*this) {}

TlsReceiver::~TlsReceiver() noexcept(false) {}

void TlsReceiver::taskFailed(kj::Exception&& e) {
  logWarning(what, ": ", e.getDescription());
}

kj::Promise<kj::Own<kj::AsyncIoStream>> TlsReceiver::accept() {
  return acceptAuthenticated().then(
      [](kj::AuthenticatedStream secured) { return kj::mv(secured.stream); });
}

kj::Promise<kj::AuthenticatedStream> TlsReceiver::acceptAuthenticated() {
  if (!ready.empty()) {
    kj::AuthenticatedStream next = kj::mv(ready.front());
    ready.pop_front();
    return kj::mv(next);
  }
  auto paf = kj::newPromiseAndFulfiller<kj::AuthenticatedStream>();
  waiting.push_back(kj::mv(paf.fulfiller));
  if (!accepting) {
    accepting = true;
    tasks.add(acceptLoop());
  }
  return kj::mv(paf.promise);
}

kj::Promise<void> TlsReceiver::acceptLoop() {
  // evalNow: kj's accept can throw (EMFILE) before it returns a promise.
  return kj::evalNow([this]() { return inner->acceptAuthenticated(); })
      .then(
          [this](kj::AuthenticatedStream raw) {
            tasks.add(handshake(kj::mv(raw)));
            return acceptLoop();
          },
          [this](kj::Exception&& e) {
            // The socket's own failure: the caller of accept decides (the listeners retry).
            accepting = false;
            while (!waiting.empty()) {
              waiting.front()->reject(kj::cp(e));
              waiting.pop_front();
            }
          });
}

kj::Promise<void> TlsReceiver::handshake(kj::AuthenticatedStream raw) {
  kj::String from = addressOf(raw);
  auto deadline = timer.afterDelay(handshakeTimeout).then([]() -> kj::AuthenticatedStream {
    kj::throwFatalException(KJ_EXCEPTION(DISCONNECTED, "no TLS handshake in time"));
  });
  return tls.wrapServer(kj::mv(raw))
      .exclusiveJoin(kj::mv(deadline))
      .then([this](kj::AuthenticatedStream secured) { deliver(kj::mv(secured)); },
            [this, from = kj::mv(from)](kj::Exception&& e) {
              logWarning(what, ": refused a TLS connection from ", from, ": ",
                         e.getDescription());
            });
}

void TlsReceiver::deliver(kj::AuthenticatedStream secured) {
  while (!waiting.empty()) {
    auto fulfiller = kj::mv(waiting.front());
    waiting.pop_front();
    if (fulfiller->isWaiting()) {
      fulfiller->fulfill(kj::mv(secured));
      return;
    }
  }
  ready.push_back(kj::mv(secured));
}

}  // namespace refstore::server
