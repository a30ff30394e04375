#include "server/metrics/call_timing.h"

#include <time.h>

#include <capnp/schema.h>

#include "schema/refstore.capnp.h"
#include "server/metrics/rpc_header.h"

namespace refstore::server::metrics {

namespace {

// From 25 µs (a call answered in its first turn) to 30 s (the default deadline of a request
// waiting for memory).
constexpr double kBucketsSeconds[] = {25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3,
                                      5e-3,  10e-3, 25e-3,  50e-3,  0.1,    0.25, 0.5,
                                      1,     2.5,   5,      10,     30};

constexpr const char* kHelp =
    "Time from reading a call to handing its reply to the transport, by method (Interface.method "
    "of schema/refstore.capnp).";

uint64_t monotonicNanos() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return uint64_t(now.tv_sec) * 1000000000 + now.tv_nsec;
}

class TimedMessageStream final: public capnp::MessageStream {
 public:
  TimedMessageStream(const CallTiming& timing, capnp::MessageStream& inner)
      : timing(timing), inner(inner) {}

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd> fdSpace, capnp::ReaderOptions options,
      kj::ArrayPtr<capnp::word> scratchSpace) override {
    return inner.tryReadMessage(fdSpace, options, scratchSpace)
        .then([this](kj::Maybe<capnp::MessageReaderAndFds>&& message) {
          KJ_IF_MAYBE(m, message) { noteIncoming(*m->reader); }
          return kj::mv(message);
        });
  }

  kj::Promise<void> writeMessage(
      kj::ArrayPtr<const int> fds,
      kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) override {
    noteOutgoing(segments);
    return inner.writeMessage(fds, segments);
  }

  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override {
    for (auto& segments: messages) noteOutgoing(segments);
    return inner.writeMessages(messages);
  }

  kj::Maybe<int> getSendBufferSize() override { return inner.getSendBufferSize(); }
  kj::Promise<void> end() override { return inner.end(); }

 private:
  struct Pending {
    uint64_t startNanos = 0;
    Histogram* histogram = nullptr;  // null: no call of ours under this id
  };

  void noteIncoming(capnp::MessageReader& reader) {
    RpcHeader header = peekRpcHeader(reader.getSegment(0));
    if (header.kind != RpcHeader::Kind::CALL) return;
    if (header.id >= CallTiming::kMaxTrackedQuestions) return;
    Histogram* histogram = timing.find(header.interfaceId, header.methodId);
    if (histogram == nullptr) return;
    if (header.id >= pending.size()) pending.resize(header.id + 1);
    pending[header.id] = Pending{monotonicNanos(), histogram};
  }

  void noteOutgoing(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments) {
    if (segments.size() == 0) return;
    RpcHeader header = peekRpcHeader(segments[0]);
    if (header.kind != RpcHeader::Kind::RETURN) return;
    if (header.id >= pending.size() || pending[header.id].histogram == nullptr) return;
    auto& call = pending[header.id];
    call.histogram->observeNanos(monotonicNanos() - call.startNanos);
    call.histogram = nullptr;
  }

  const CallTiming& timing;
  capnp::MessageStream& inner;
  kj::Vector<Pending> pending;  // by question id
};

}  // namespace

CallTiming::CallTiming(Registry& registry) {
  capnp::InterfaceSchema schemas[] = {
      capnp::Schema::from<proto::Store>(),     capnp::Schema::from<proto::Ref>(),
      capnp::Schema::from<proto::View>(),      capnp::Schema::from<proto::WriteBuffer>(),
      capnp::Schema::from<proto::Fulfiller>(), capnp::Schema::from<proto::Segment>(),
  };
  for (auto schema: schemas) {
    auto methods = schema.getMethods();
    Interface entry{schema.getProto().getId(), kj::str(schema.getShortDisplayName()),
                    kj::heapArray<Histogram*>(methods.size()),
                    kj::heapArray<kj::String>(methods.size())};
    for (auto method: methods) {
      auto ordinal = method.getOrdinal();
      entry.methodNames[ordinal] = kj::str(entry.name, ".", method.getProto().getName());
      Label label[] = {{"method", entry.methodNames[ordinal]}};
      entry.methods[ordinal] =
          &registry.histogram("refstore_request_duration_seconds", kHelp, kBucketsSeconds, label);
    }
    interfaces.add(kj::mv(entry));
  }
}

Histogram* CallTiming::find(uint64_t interfaceId, uint16_t methodId) const {
  for (auto& interface: interfaces) {
    if (interface.id == interfaceId) {
      return methodId < interface.methods.size() ? interface.methods[methodId] : nullptr;
    }
  }
  return nullptr;
}

Histogram* CallTiming::find(kj::StringPtr qualifiedName) const {
  for (auto& interface: interfaces) {
    for (size_t i = 0; i < interface.methods.size(); i++) {
      if (interface.methodNames[i] == qualifiedName) return interface.methods[i];
    }
  }
  return nullptr;
}

kj::Own<capnp::MessageStream> CallTiming::wrap(capnp::MessageStream& inner) {
  return kj::heap<TimedMessageStream>(*this, inner);
}

}  // namespace refstore::server::metrics
