#include "server/net/client_stream.h"

#include <kj/debug.h>

namespace refstore::server {

ClientStream::ClientStream(kj::Own<kj::AsyncIoStream> innerParam, BusyPoll& busyPoll)
    : inner(kj::mv(innerParam)), busyPoll(busyPoll) {
  // Unix-socket streams are capability streams (fd passing); TCP streams are not.
  if (auto* caps = dynamic_cast<kj::AsyncCapabilityStream*>(inner.get())) {
    capabilityStream = *caps;
  }
}

kj::AsyncCapabilityStream& ClientStream::capabilities() {
  KJ_IF_MAYBE(caps, capabilityStream) { return *caps; }
  KJ_FAIL_REQUIRE("file descriptors cannot be sent over a TCP connection");
}

kj::Promise<size_t> ClientStream::tryRead(void* buffer, size_t minBytes, size_t maxBytes) {
  return inner->tryRead(buffer, minBytes, maxBytes)
      .then(
          [this, minBytes](size_t n) {
            if (n > 0) busyPoll.activity();
            if (n < minBytes) ended = true;  // the peer closed its side
            return n;
          },
          [this](kj::Exception&& e) -> size_t {
            ended = true;
            kj::throwFatalException(kj::mv(e));
          });
}

kj::Promise<kj::AsyncCapabilityStream::ReadResult> ClientStream::tryReadWithFds(
    void* buffer, size_t minBytes, size_t maxBytes, kj::AutoCloseFd*, size_t) {
  return tryRead(buffer, minBytes, maxBytes).then([](size_t n) { return ReadResult{n, 0}; });
}

kj::Promise<kj::AsyncCapabilityStream::ReadResult> ClientStream::tryReadWithStreams(
    void* buffer, size_t minBytes, size_t maxBytes, kj::Own<kj::AsyncCapabilityStream>*, size_t) {
  return tryRead(buffer, minBytes, maxBytes).then([](size_t n) { return ReadResult{n, 0}; });
}

kj::Promise<void> ClientStream::write(const void* buffer, size_t size) {
  return inner->write(buffer, size);
}

kj::Promise<void> ClientStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  return inner->write(pieces);
}

kj::Promise<void> ClientStream::writeWithFds(
    kj::ArrayPtr<const kj::byte> data, kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> moreData,
    kj::ArrayPtr<const int> fds) {
  return capabilities().writeWithFds(data, moreData, fds);
}

kj::Promise<void> ClientStream::writeWithStreams(
    kj::ArrayPtr<const kj::byte> data, kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> moreData,
    kj::Array<kj::Own<kj::AsyncCapabilityStream>> streams) {
  return capabilities().writeWithStreams(data, moreData, kj::mv(streams));
}

kj::Promise<void> ClientStream::whenWriteDisconnected() { return inner->whenWriteDisconnected(); }
// Both are best effort: on a connection the peer already reset, shutdown(2) fails with
// ENOTCONN, and a throw here would escape the error paths that call them.
void ClientStream::shutdownWrite() {
  kj::runCatchingExceptions([&]() { inner->shutdownWrite(); });
}
void ClientStream::abortRead() {
  ended = true;
  kj::runCatchingExceptions([&]() { inner->abortRead(); });
}
void ClientStream::getsockopt(int level, int option, void* value, kj::uint* length) {
  inner->getsockopt(level, option, value, length);
}
void ClientStream::setsockopt(int level, int option, const void* value, kj::uint length) {
  inner->setsockopt(level, option, value, length);
}
void ClientStream::getsockname(struct sockaddr* addr, kj::uint* length) {
  inner->getsockname(addr, length);
}
void ClientStream::getpeername(struct sockaddr* addr, kj::uint* length) {
  inner->getpeername(addr, length);
}

}  // namespace refstore::server
