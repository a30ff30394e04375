// RpcConnection: one Cap'n Proto RPC connection over a byte stream, built the same way by both
// ends of refstore (clients, the daemon, and daemons talking to each other): the stream's
// messages go through a BatchingMessageStream (read-ahead, writes batched per loop turn, the
// limits of an untrusted peer), optionally through a wrapper (the daemon's call timing), into a
// TwoPartyVatNetwork and an RpcSystem. As capnp's rpc.h sees only the VatNetwork interface,
// the code above this sees only the capabilities: the peer's bootstrap, and its own.
//
// Destruction order is the reverse of the stack: the RPC system first (releasing every
// capability of the connection), then the network, the wrapper and the framing. The stream
// itself belongs to the caller and must outlive this.
#pragma once

#include <capnp/capability.h>
#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/function.h>

#include "schema/batching_message_stream.h"

namespace refstore {

class RpcConnection {
 public:
  struct Options {
    capnp::rpc::twoparty::Side side = capnp::rpc::twoparty::Side::CLIENT;
    // The same stream, when it is a Unix socket that carries file descriptors.
    kj::Maybe<kj::AsyncCapabilityStream&> fdStream = nullptr;
    // The most fds one message may carry (0 on streams without fd passing). capnp 0.9.2 attaches
    // outgoing fds only on a network built with a non-zero value, and the receiving side needs
    // room for what the peer sends.
    unsigned maxFdsPerMessage = 0;
    // What this end serves to the peer's bootstrap request (none: the peer gets an error).
    kj::Maybe<capnp::Capability::Client> bootstrap = nullptr;
    // Wraps the framing before the network sees it (e.g. to time calls); none by default.
    kj::Maybe<kj::Function<kj::Own<capnp::MessageStream>(capnp::MessageStream&)>> wrapTransport =
        nullptr;
    // capnp's flow limit: words of incoming calls in flight past which no more are read (0: none).
    size_t flowLimitWords = 0;
  };

  RpcConnection(kj::AsyncIoStream& stream, Options options);
  ~RpcConnection() noexcept(false);
  KJ_DISALLOW_COPY(RpcConnection);

  // The framing, for its limits and statistics.
  BatchingMessageStream& messages() { return *framing; }
  // The peer's bootstrap capability.
  capnp::Capability::Client peerBootstrap();
  // Resolves when the peer disconnects (or the connection fails).
  kj::Promise<void> onDisconnect() { return network->onDisconnect(); }

 private:
  kj::Own<BatchingMessageStream> framing;
  kj::Own<capnp::MessageStream> wrapped;  // over `framing`, if wrapped
  kj::Own<capnp::TwoPartyVatNetwork> network;
  kj::Own<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc;
  capnp::rpc::twoparty::Side side;
};

}  // namespace refstore
