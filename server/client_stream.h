// The daemon's side of one client connection's byte stream, as Cap'n Proto RPC reads it.
//
// Two jobs, both about small requests:
//  - Read-ahead. capnp 0.9 reads each message with two or three system calls (the first word,
//    the segment table, the body). This wrapper reads up to 64 KiB at a time and serves those
//    reads from memory, so a burst of small messages (a call, its Finish, a Release...) costs one
//    recvmsg instead of a dozen. Reads larger than the buffer go straight to the caller's memory:
//    bulk copy-path data is never copied twice.
//  - Activity. Every read that brings bytes tells BusyPoll, which keeps the loop spinning for
//    the client's next request (busy_poll.h).
//
// Clients never send file descriptors to the daemon (it only sends them segment fds): incoming
// fds are not accepted; the kernel closes any that a misbehaving client attaches.
#pragma once

#include <kj/async-io.h>

#include "server/busy_poll.h"

namespace refstore::server {

class ClientStream final: public kj::AsyncCapabilityStream {
 public:
  // `inner`: the accepted stream. Segment fds are sent through it only on Unix sockets (TCP
  // connections get an RPC network without fd support); a stream type that cannot carry fds at
  // all makes sending them an error.
  ClientStream(kj::Own<kj::AsyncIoStream> inner, BusyPoll& busyPoll);

  // Reading (buffered).
  kj::Promise<size_t> tryRead(void* buffer, size_t minBytes, size_t maxBytes) override;
  kj::Promise<ReadResult> tryReadWithFds(void* buffer, size_t minBytes, size_t maxBytes,
                                         kj::AutoCloseFd* fdBuffer, size_t maxFds) override;
  kj::Promise<ReadResult> tryReadWithStreams(void* buffer, size_t minBytes, size_t maxBytes,
                                             kj::Own<kj::AsyncCapabilityStream>* streamBuffer,
                                             size_t maxStreams) override;

  // Writing (passed through).
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> writeWithFds(kj::ArrayPtr<const kj::byte> data,
                                 kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> moreData,
                                 kj::ArrayPtr<const int> fds) override;
  kj::Promise<void> writeWithStreams(kj::ArrayPtr<const kj::byte> data,
                                     kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> moreData,
                                     kj::Array<kj::Own<kj::AsyncCapabilityStream>> streams) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override;
  void getsockopt(int level, int option, void* value, kj::uint* length) override;
  void setsockopt(int level, int option, const void* value, kj::uint length) override;
  void getsockname(struct sockaddr* addr, kj::uint* length) override;
  void getpeername(struct sockaddr* addr, kj::uint* length) override;
  kj::Maybe<int> getFd() const override { return inner->getFd(); }

 private:
  static constexpr size_t kReadAhead = 64 * 1024;

  // Copies buffered bytes into `out`; returns how many.
  size_t takeBuffered(kj::byte* out, size_t maxBytes);
  // Reads into `out` until `minBytes` (total, counting `done` already there) or end of stream.
  kj::Promise<size_t> readMore(kj::byte* out, size_t done, size_t minBytes, size_t maxBytes);
  kj::AsyncCapabilityStream& capabilities();

  kj::Own<kj::AsyncIoStream> inner;
  kj::Maybe<kj::AsyncCapabilityStream&> capabilityStream;
  BusyPoll& busyPoll;
  kj::Array<kj::byte> readAhead = kj::heapArray<kj::byte>(kReadAhead);
  size_t bufferedBegin = 0, bufferedEnd = 0;
};

}  // namespace refstore::server
