// The daemon's side of one client connection's byte stream, as Cap'n Proto RPC reads it.
//
// It passes reads and writes through, with two additions:
//  - Activity. Every read that brings bytes tells BusyPoll, which keeps the loop spinning for
//    the client's next request (busy_poll.h). Reads come from the connection's
//    ReadAheadMessageReader (schema/read_ahead_message_reader.h), one per burst of messages.
//  - Segment fds go out only where they can: writing fds over a TCP connection is an error.
//
// Clients never send file descriptors to the daemon (it only sends them segment fds): incoming
// fds are not accepted; the kernel closes any that a misbehaving client attaches.
#pragma once

#include <kj/async-io.h>

#include "server/runtime/busy_poll.h"

namespace refstore::server {

class ClientStream final: public kj::AsyncCapabilityStream {
 public:
  // `inner`: the accepted stream. Segment fds are sent through it only on Unix sockets (TCP
  // connections get an RPC network without fd support); a stream type that cannot carry fds at
  // all makes sending them an error.
  ClientStream(kj::Own<kj::AsyncIoStream> inner, BusyPoll& busyPoll);

  // Reading (passed through; reports activity; never accepts fds).
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

  // Whether no more will be read: the peer closed its side, a read failed, or reading was
  // aborted. The RPC system releases the connection's capabilities right after; those that are
  // other daemons' remote holders are then kept for a grace period (server/peer), not released.
  bool inputEnded() const { return ended; }

 private:
  kj::AsyncCapabilityStream& capabilities();

  kj::Own<kj::AsyncIoStream> inner;
  kj::Maybe<kj::AsyncCapabilityStream&> capabilityStream;
  BusyPoll& busyPoll;
  bool ended = false;
};

}  // namespace refstore::server
