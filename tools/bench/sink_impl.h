// The by-value receiving end (bench.capnp Sink): appends chunks into a warm buffer the receiver
// owns. Used by the worker processes and by refbench itself (the pipeline's driver).
#pragma once

#include <string.h>

#include <kj/debug.h>

#include <memory>

#include "tools/bench/bench.capnp.h"
#include "tools/bench/bytes.h"

namespace refbench {

class SinkImpl final: public proto::Sink::Server {
 public:
  // `readOnDone`: done() reads every byte (checksum) before answering, as a consumer that uses
  // the value would. Off where the receiver reads the bytes later anyway (the adder) or where
  // the value is verified outside the timed region (the pipeline's driver); done() then answers
  // checksum 0.
  SinkImpl(std::shared_ptr<WarmBuffer> buffer, bool readOnDone)
      : buffer(std::move(buffer)), readOnDone(readOnDone) {}

  kj::Promise<void> write(WriteContext context) override {
    auto data = context.getParams().getData();
    KJ_REQUIRE(offset + data.size() <= buffer->size(), "sink overflow");
    memcpy(buffer->data() + offset, data.begin(), data.size());
    offset += data.size();
    return kj::READY_NOW;
  }

  kj::Promise<void> done(DoneContext context) override {
    auto results = context.getResults();
    results.setSize(offset);
    results.setChecksum(readOnDone ? checksum(buffer->data(), offset) : 0);
    return kj::READY_NOW;
  }

 private:
  std::shared_ptr<WarmBuffer> buffer;
  bool readOnDone;
  uint64_t offset = 0;
};

}  // namespace refbench
