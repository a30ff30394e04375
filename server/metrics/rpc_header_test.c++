// Tests for server/metrics/rpc_header.h: what it reads agrees with capnp's own reader on real RPC
// messages, and anything it cannot read safely (far pointers, truncation, garbage) is OTHER.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <capnp/message.h>
#include <capnp/rpc.capnp.h>

#include <sys/mman.h>
#include <unistd.h>

#include <random>

#include "server/metrics/rpc_header.h"

using refstore::server::metrics::peekRpcHeader;
using refstore::server::metrics::RpcHeader;

namespace {

kj::ArrayPtr<const capnp::word> firstSegment(capnp::MessageBuilder& builder) {
  return builder.getSegmentsForOutput()[0];
}

}  // namespace

TEST_CASE("a Call's question id, interface and method are read as capnp reads them") {
  std::mt19937_64 random(7);
  for (int i = 0; i < 200; i++) {
    capnp::MallocMessageBuilder builder;
    auto call = builder.initRoot<capnp::rpc::Message>().initCall();
    uint32_t question = uint32_t(random());
    uint64_t interface = random();
    uint16_t method = uint16_t(random());
    call.setQuestionId(question);
    call.setInterfaceId(interface);
    call.setMethodId(method);
    call.initTarget().initPromisedAnswer().setQuestionId(5);
    call.initParams().initContent().setAs<capnp::Text>("params");
    auto header = peekRpcHeader(firstSegment(builder));
    REQUIRE(header.kind == RpcHeader::Kind::CALL);
    CHECK(header.id == question);
    CHECK(header.interfaceId == interface);
    CHECK(header.methodId == method);
  }
}

TEST_CASE("a Return's answer id is read; other messages are OTHER") {
  capnp::MallocMessageBuilder returned;
  returned.initRoot<capnp::rpc::Message>().initReturn().setAnswerId(4242);
  auto header = peekRpcHeader(firstSegment(returned));
  CHECK(header.kind == RpcHeader::Kind::RETURN);
  CHECK(header.id == 4242);

  capnp::MallocMessageBuilder finish;
  finish.initRoot<capnp::rpc::Message>().initFinish().setQuestionId(4242);
  CHECK(peekRpcHeader(firstSegment(finish)).kind == RpcHeader::Kind::OTHER);

  capnp::MallocMessageBuilder bootstrap;
  bootstrap.initRoot<capnp::rpc::Message>().initBootstrap().setQuestionId(1);
  CHECK(peekRpcHeader(firstSegment(bootstrap)).kind == RpcHeader::Kind::OTHER);

  capnp::MallocMessageBuilder release;
  release.initRoot<capnp::rpc::Message>().initRelease().setId(3);
  CHECK(peekRpcHeader(firstSegment(release)).kind == RpcHeader::Kind::OTHER);
}

TEST_CASE("a Call whose body is in another segment (a far pointer) is not read") {
  // A first segment of one word: the root pointer must be a far pointer.
  capnp::MallocMessageBuilder builder(1, capnp::AllocationStrategy::FIXED_SIZE);
  builder.initRoot<capnp::rpc::Message>().initCall().setQuestionId(9);
  REQUIRE(builder.getSegmentsForOutput().size() > 1);
  CHECK(peekRpcHeader(firstSegment(builder)).kind == RpcHeader::Kind::OTHER);
}

TEST_CASE("truncated and garbage segments read as OTHER, never out of bounds") {
  capnp::MallocMessageBuilder builder;
  builder.initRoot<capnp::rpc::Message>().initCall().setQuestionId(9);
  auto whole = firstSegment(builder);
  for (size_t size = 0; size < whole.size(); size++) {
    auto header = peekRpcHeader(whole.slice(0, size));
    // Too short to hold the Call's body: refused. (Once the body fits it is read correctly.)
    if (header.kind != RpcHeader::Kind::OTHER) CHECK(header.id == 9);
  }
  CHECK(peekRpcHeader(nullptr).kind == RpcHeader::Kind::OTHER);

  // Random words between guard pages: a read outside them would crash the test. Whatever the
  // peek does read as a Call or Return, capnp's own (checked) reader must read the same way.
  size_t page = sysconf(_SC_PAGESIZE);
  auto* region = static_cast<uint8_t*>(
      mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  REQUIRE(region != MAP_FAILED);
  REQUIRE(mprotect(region, page, PROT_NONE) == 0);
  REQUIRE(mprotect(region + 2 * page, page, PROT_NONE) == 0);
  constexpr size_t kWords = 6;
  capnp::word* atStart = reinterpret_cast<capnp::word*>(region + page);
  capnp::word* atEnd = reinterpret_cast<capnp::word*>(region + 2 * page) - kWords;
  std::mt19937_64 random(11);
  size_t agreed = 0;
  for (int i = 0; i < 100000; i++) {
    capnp::word* words = (i % 2) ? atStart : atEnd;
    uint64_t bits[kWords];
    for (auto& b: bits) b = random();
    if (i % 4 != 0) {
      // Mostly plausible messages: a root struct pointer, a union tag near CALL and RETURN, a
      // body pointer with small (sometimes out-of-range or negative) offsets and sizes.
      auto structPointer = [&](int64_t offset) {
        // (Shifted unsigned: a negative int32_t shifted left is undefined before C++20.)
        return uint64_t(uint32_t(offset) << 2) | (random() % 3) << 32 |
               (random() % 3) << 48;
      };
      bits[0] = structPointer(int64_t(random() % 3) - 1);
      bits[1] = (bits[1] & ~0xffffull) | (random() % 6);
      bits[2] = structPointer(int64_t(random() % 6) - 3);
    }
    for (size_t w = 0; w < kWords; w++) {
      memcpy(static_cast<void*>(&words[w]), &bits[w], sizeof(bits[w]));
    }
    auto segment = kj::arrayPtr<const capnp::word>(words, kWords);
    auto header = peekRpcHeader(segment);
    if (header.kind == RpcHeader::Kind::OTHER) continue;
    kj::ArrayPtr<const capnp::word> segments[] = {segment};
    capnp::SegmentArrayMessageReader reader(segments);
    auto message = reader.getRoot<capnp::rpc::Message>();
    if (header.kind == RpcHeader::Kind::CALL) {
      REQUIRE(message.isCall());
      CHECK(message.getCall().getQuestionId() == header.id);
      CHECK(message.getCall().getInterfaceId() == header.interfaceId);
      CHECK(message.getCall().getMethodId() == header.methodId);
    } else {
      REQUIRE(message.isReturn());
      CHECK(message.getReturn().getAnswerId() == header.id);
    }
    agreed++;
  }
  CHECK(agreed > 100);  // the cross-check did run on messages the peek accepted
  munmap(region, 3 * page);
}
