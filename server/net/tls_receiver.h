// TlsReceiver: a listening socket whose connections are upgraded to TLS (the TCP listener and
// the data port, with --tls-*), each handshake on its own, so a slow or silent client holds up
// no other, within a deadline. A connection refused (no certificate, another CA's, an expired
// one, no TLS at all) is one warning in refstored's log naming the address it came from: the
// owner's side of "why can that host not reach me". kj::TlsContext::wrapPort does the same
// upgrade but reports refusals as KJ errors with a stack trace and no address.
#pragma once

#include <deque>

#include <kj/async-io.h>
#include <kj/compat/tls.h>
#include <kj/timer.h>

namespace refstore::server {

class TlsReceiver final: public kj::ConnectionReceiver, private kj::TaskSet::ErrorHandler {
 public:
  // `what` names the listener in log lines ("tcp listener", "data port"); `handshakeTimeout`
  // bounds each handshake.
  TlsReceiver(kj::TlsContext& tls, kj::Own<kj::ConnectionReceiver> inner, kj::Timer& timer,
              kj::Duration handshakeTimeout, kj::StringPtr what);
  ~TlsReceiver() noexcept(false);

  kj::Promise<kj::Own<kj::AsyncIoStream>> accept() override;
  kj::Promise<kj::AuthenticatedStream> acceptAuthenticated() override;
  kj::uint getPort() override { return inner->getPort(); }
  void getsockopt(int level, int option, void* value, kj::uint* length) override {
    inner->getsockopt(level, option, value, length);
  }
  void setsockopt(int level, int option, const void* value, kj::uint length) override {
    inner->setsockopt(level, option, value, length);
  }
  void getsockname(struct sockaddr* addr, kj::uint* length) override {
    inner->getsockname(addr, length);
  }

 private:
  void taskFailed(kj::Exception&& e) override;
  kj::Promise<void> acceptLoop();
  kj::Promise<void> handshake(kj::AuthenticatedStream raw);
  void deliver(kj::AuthenticatedStream secured);

  kj::TlsContext& tls;
  kj::Own<kj::ConnectionReceiver> inner;
  kj::Timer& timer;
  kj::Duration handshakeTimeout;
  kj::String what;
  bool accepting = false;  // acceptLoop runs
  std::deque<kj::AuthenticatedStream> ready;  // handshaken, not yet asked for
  std::deque<kj::Own<kj::PromiseFulfiller<kj::AuthenticatedStream>>> waiting;  // asked for
  kj::TaskSet tasks;  // the accept loop and the handshakes; last, destroyed first
};

}  // namespace refstore::server
