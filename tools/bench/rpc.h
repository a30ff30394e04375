// refbench's own Cap'n Proto plumbing: a connection to a `worker` helper process and the
// by-value streaming helper shared by the driver and the workers.
//
// Everything runs on the event loop of the refstore client's thread
// (refstore::async::ioContext): KJ allows one loop per thread, and sharing it lets a workload
// interleave refstore calls with its baselines' RPCs on one thread.
#pragma once

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>

#include <string>

#include "tools/bench/bench.capnp.h"

namespace refbench {

// A connection to a `worker` helper process (its bootstrap capability).
struct WorkerConnection {
  WorkerConnection(kj::AsyncIoContext& io, const std::string& socketPath)
      : stream(io.provider->getNetwork()
                   .parseAddress(kj::str("unix:", socketPath.c_str()))
                   .wait(io.waitScope)
                   ->connect()
                   .wait(io.waitScope)),
        rpc(*stream),
        worker(rpc.bootstrap().castAs<proto::Worker>()) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyClient rpc;
  proto::Worker::Client worker;
};

// By-value chunk size: each message stays far below the 64 MiB traversal limit while large
// enough that per-message costs (a round trip's share, allocation) are amortised.
constexpr uint64_t kChunkBytes = 8ull << 20;

// Streams size bytes at data into `into` (Sink.write, `-> stream` flow control), in chunks.
// The bytes must stay valid until the promise resolves.
inline kj::Promise<void> streamValue(proto::Sink::Client into, const uint8_t* data,
                                     uint64_t size) {
  if (size == 0) return kj::READY_NOW;
  uint64_t chunk = size < kChunkBytes ? size : kChunkBytes;
  auto request = into.writeRequest();
  request.setData(kj::arrayPtr(data, chunk));
  return request.send().then([into, data, size, chunk]() mutable {
    return streamValue(kj::mv(into), data + chunk, size - chunk);
  });
}

}  // namespace refbench
