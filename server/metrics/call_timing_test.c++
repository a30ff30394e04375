// Tests for server/metrics/call_timing.h: calls over a real Cap'n Proto RPC connection are timed
// per method (including pipelined calls and calls that wait), and the bookkeeping ignores what
// it must ignore (unknown methods, question ids beyond the limit, replies without a call).

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <capnp/rpc-twoparty.h>
#include <capnp/rpc.capnp.h>
#include <capnp/serialize.h>
#include <kj/async-io.h>

#include <deque>

#include "schema/refstore.capnp.h"
#include "server/metrics/call_timing.h"
#include "server/metrics/text_format_check.h"

using namespace refstore;
using namespace refstore::server::metrics;

namespace {

// A Segment whose reattach() answers after `delay` with itself.
class SlowSegment final: public proto::Segment::Server {
 public:
  SlowSegment(kj::Timer& timer, kj::Duration delay): timer(timer), delay(delay) {}
  kj::Promise<void> info(InfoContext context) override {
    context.getResults().setId(7);
    return kj::READY_NOW;
  }
  kj::Promise<void> reattach(ReattachContext context) override {
    return timer.afterDelay(delay).then([this, context]() mutable {
      context.getResults().setSegment(thisCap());
    });
  }

 private:
  kj::Timer& timer;
  kj::Duration delay;
};

// The RPC server end of a pipe, its transport wrapped by `timing`.
struct TimedServer {
  TimedServer(CallTiming& timing, kj::Own<kj::AsyncIoStream> stream, capnp::Capability::Client cap)
      : stream(kj::mv(stream)),
        messages(*this->stream),
        timed(timing.wrap(messages)),
        network(*timed, capnp::rpc::twoparty::Side::SERVER),
        rpc(capnp::makeRpcServer(network, kj::mv(cap))) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::AsyncIoMessageStream messages;
  kj::Own<capnp::MessageStream> timed;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

}  // namespace

TEST_CASE("every method of every interface has a histogram, at zero") {
  Registry registry;
  CallTiming timing(registry);
  for (const char* method: {"Store.hello", "Store.put", "Store.readMany", "Ref.view",
                            "Ref.saveAs", "View.placement", "WriteBuffer.write",
                            "WriteBuffer.seal", "Fulfiller.reject", "Segment.reattach"}) {
    Histogram* histogram = timing.find(method);
    REQUIRE_MESSAGE(histogram != nullptr, method);
    CHECK(histogram->count() == 0);
  }
  CHECK(timing.find("Store.nonsense") == nullptr);
  auto report = checkTextFormat(registry.render().cStr());
  CHECK_MESSAGE(report.ok(), report.describe());
  CHECK(report.samples.at("refstore_request_duration_seconds_count{method=\"Ref.view\"}") == 0);
  CHECK(report.types.at("refstore_request_duration_seconds") == "histogram");
}

TEST_CASE("calls over a real RPC connection are timed per method, until their reply") {
  auto io = kj::setupAsyncIo();
  Registry registry;
  CallTiming timing(registry);
  auto pipe = io.provider->newTwoWayPipe();
  TimedServer server(timing, kj::mv(pipe.ends[0]),
                     kj::heap<SlowSegment>(io.provider->getTimer(), 30 * kj::MILLISECONDS));
  capnp::TwoPartyClient client(*pipe.ends[1]);
  auto segment = client.bootstrap().castAs<proto::Segment>();

  for (int i = 0; i < 3; i++) {
    CHECK(segment.infoRequest().send().wait(io.waitScope).getId() == 7);
  }
  // A call that waits, and a call pipelined on its result (sent before the first returns).
  auto reattach = segment.reattachRequest().send();
  auto pipelined = reattach.getSegment().infoRequest().send();
  CHECK(pipelined.wait(io.waitScope).getId() == 7);
  reattach.wait(io.waitScope);

  Histogram& info = *timing.find("Segment.info");
  Histogram& slow = *timing.find("Segment.reattach");
  CHECK(info.count() == 4);
  CHECK(slow.count() == 1);
  // The reply waited for the timer, so the observation covers it (a lower bound the timer
  // guarantees, not a guess about this machine's speed).
  CHECK(slow.sumSeconds() >= 0.030);
  CHECK(slow.cumulativeCount(0) == 0);  // not in the 25 µs bucket
  CHECK(timing.find("Segment.info") != timing.find("Segment.reattach"));
  CHECK(timing.find("Store.put")->count() == 0);
}

namespace {

// A transport that delivers scripted incoming messages and swallows outgoing ones.
class ScriptedStream final: public capnp::MessageStream {
 public:
  std::deque<kj::Array<capnp::word>> incoming;

  kj::Promise<kj::Maybe<capnp::MessageReaderAndFds>> tryReadMessage(
      kj::ArrayPtr<kj::AutoCloseFd>, capnp::ReaderOptions, kj::ArrayPtr<capnp::word>) override {
    if (incoming.empty()) return kj::Maybe<capnp::MessageReaderAndFds>(nullptr);
    auto words = kj::mv(incoming.front());
    incoming.pop_front();
    auto reader = kj::heap<capnp::FlatArrayMessageReader>(words).attach(kj::mv(words));
    return kj::Maybe<capnp::MessageReaderAndFds>(
        capnp::MessageReaderAndFds{kj::mv(reader), nullptr});
  }
  kj::Promise<void> writeMessage(kj::ArrayPtr<const int>,
                                 kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>) override {
    writes++;
    return kj::READY_NOW;
  }
  kj::Promise<void> writeMessages(
      kj::ArrayPtr<kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>>> messages) override {
    writes += messages.size();
    return kj::READY_NOW;
  }
  kj::Maybe<int> getSendBufferSize() override { return nullptr; }
  kj::Promise<void> end() override { return kj::READY_NOW; }

  size_t writes = 0;
};

kj::Array<capnp::word> callMessage(uint32_t question, uint64_t interfaceId, uint16_t method) {
  capnp::MallocMessageBuilder builder;
  auto call = builder.initRoot<capnp::rpc::Message>().initCall();
  call.setQuestionId(question);
  call.setInterfaceId(interfaceId);
  call.setMethodId(method);
  return capnp::messageToFlatArray(builder);
}

// Sends a Return for `answer` through `stream` (as the RPC system would).
void sendReturn(capnp::MessageStream& stream, uint32_t answer, bool batched,
                kj::WaitScope& waitScope) {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<capnp::rpc::Message>().initReturn().setAnswerId(answer);
  if (batched) {
    auto segments = builder.getSegmentsForOutput();
    kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> one[] = {segments};
    stream.writeMessages(one).wait(waitScope);
  } else {
    stream.writeMessage(nullptr, builder.getSegmentsForOutput()).wait(waitScope);
  }
}

}  // namespace

TEST_CASE("only replies to timed calls are observed; ids past the limit are not tracked") {
  kj::EventLoop loop;
  kj::WaitScope waitScope(loop);
  Registry registry;
  CallTiming timing(registry);
  ScriptedStream inner;
  auto timed = timing.wrap(inner);
  uint64_t store = capnp::typeId<proto::Store>();
  uint16_t put = 1;  // Store.put
  inner.incoming.push_back(callMessage(3, store, put));
  inner.incoming.push_back(callMessage(CallTiming::kMaxTrackedQuestions, store, put));
  inner.incoming.push_back(callMessage(4, 0x1234, 0));  // an interface not in the schema
  for (int i = 0; i < 3; i++) {
    KJ_ASSERT_NONNULL(timed->tryReadMessage(nullptr, {}, nullptr).wait(waitScope));
  }
  Histogram& histogram = *timing.find("Store.put");
  sendReturn(*timed, 5, false, waitScope);  // no call under this id
  sendReturn(*timed, CallTiming::kMaxTrackedQuestions, false, waitScope);
  sendReturn(*timed, 4, false, waitScope);
  CHECK(histogram.count() == 0);
  sendReturn(*timed, 3, true, waitScope);  // through writeMessages
  CHECK(histogram.count() == 1);
  sendReturn(*timed, 3, false, waitScope);  // a second Return for the same id observes nothing
  CHECK(histogram.count() == 1);
  CHECK(inner.writes == 5);  // every message still reaches the transport
}
