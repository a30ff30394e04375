#include "schema/rpc_connection.h"

#include <capnp/message.h>

namespace refstore {

RpcConnection::RpcConnection(kj::AsyncIoStream& stream, Options options) : side(options.side) {
  framing = kj::heap<BatchingMessageStream>(stream, options.fdStream);
  capnp::MessageStream* transport = framing.get();
  KJ_IF_MAYBE(wrap, options.wrapTransport) {
    wrapped = (*wrap)(*framing);
    transport = wrapped.get();
  }
  network = kj::heap<capnp::TwoPartyVatNetwork>(*transport, options.maxFdsPerMessage, side);
  KJ_IF_MAYBE(served, options.bootstrap) {
    rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
        capnp::makeRpcServer(*network, kj::mv(*served)));
  } else {
    rpc = kj::heap<capnp::RpcSystem<capnp::rpc::twoparty::VatId>>(
        capnp::makeRpcClient(*network));
  }
  if (options.flowLimitWords > 0) rpc->setFlowLimit(options.flowLimitWords);
}

RpcConnection::~RpcConnection() noexcept(false) {
  rpc = nullptr;  // releases the connection's capabilities first
  network = nullptr;
  wrapped = nullptr;
  framing = nullptr;
}

capnp::Capability::Client RpcConnection::peerBootstrap() {
  capnp::MallocMessageBuilder vatId(4);
  vatId.getRoot<capnp::rpc::twoparty::VatId>().setSide(
      side == capnp::rpc::twoparty::Side::CLIENT ? capnp::rpc::twoparty::Side::SERVER
                                                 : capnp::rpc::twoparty::Side::CLIENT);
  return rpc->bootstrap(vatId.getRoot<capnp::rpc::twoparty::VatId>());
}

}  // namespace refstore
