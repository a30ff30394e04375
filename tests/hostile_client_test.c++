// Integration tests: one buggy or hostile client must not freeze, starve or leak the daemon for
// the others (issue 21). Each case talks the raw protocol where a well-behaved client library
// would never send what it sends, and then checks, as another client, that the daemon is still
// whole: answering, and holding nothing it should not.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <optional>
#include <string>

#include <kj/debug.h>

#include "client/cpp/refstore_async.h"
#include "tests/daemon.h"

using namespace refstore;
using refstore::testing::Daemon;
using refstore::testing::eventually;

namespace {

kj::ArrayPtr<const kj::byte> bytesOf(const std::string& text) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(text.data()), text.size());
}

// The exception a raw call failed with (its description), or FAIL if it succeeded.
template <typename Promise>
std::string failureOf(Promise&& promise, kj::WaitScope& waitScope) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() { promise.wait(waitScope); })) {
    return e->getDescription();
  }
  FAIL("expected the call to fail");
  return "";
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A Ref hosted by the client itself (not the daemon's) whose every call fails: what a buggy
// framework might pass where a Ref is expected.
class BrokenRef final: public proto::Ref::Server {
 protected:
  kj::Promise<void> share(ShareContext context) override {
    KJ_FAIL_REQUIRE("this Ref refuses to share");
  }
};

}  // namespace

TEST_CASE("a children list with one bad Ref fails by name and leaks none of the good holders") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Client watcher = Client::connect(daemon.socket());
  auto& io = async::ioContext(client);
  auto store = async::store(client);
  Ref good = client.put("good child", 10);
  REQUIRE(watcher.stats().holders == 1);

  // Each way a parent can list children: put, seal, fulfill, and readMany's Refs.
  std::vector<proto::Ref::Client> badRefs;
  badRefs.push_back(proto::Ref::Client(nullptr));                     // a null capability
  badRefs.push_back(proto::Ref::Client(kj::heap<BrokenRef>()));       // share() throws
  for (auto& bad: badRefs) {
    auto withChildren = [&](auto& builder) {
      auto list = builder.initChildren(2);
      list.set(0, async::capability(good));
      list.set(1, bad);
    };
    auto put = store.putRequest();
    put.setData(bytesOf("parent"));
    withChildren(put);
    std::string putError = failureOf(put.send(), io.waitScope);
    CHECK(contains(putError, "refstore.INVALID_ARGUMENT"));
    CHECK_FALSE(contains(putError, "ArrayBuilder"));

    auto buffer = store.createRequest();
    buffer.setSize(6);
    auto writer = buffer.send().wait(io.waitScope).getBuffer();
    auto seal = writer.sealRequest();
    withChildren(seal);
    CHECK(contains(failureOf(seal.send(), io.waitScope), "refstore.INVALID_ARGUMENT"));

    auto promised = store.promiseRequest().send().wait(io.waitScope);
    auto fulfill = promised.getFulfiller().fulfillRequest();
    fulfill.setData(bytesOf("value"));
    withChildren(fulfill);
    CHECK(contains(failureOf(fulfill.send(), io.waitScope), "refstore.INVALID_ARGUMENT"));
    // The refused fulfilment changed nothing: the promise can still be fulfilled.
    auto retry = promised.getFulfiller().fulfillRequest();
    retry.setData(bytesOf("value"));
    retry.send().wait(io.waitScope);

    auto read = store.readManyRequest();
    auto refs = read.initRefs(2);
    refs.set(0, async::capability(good));
    refs.set(1, bad);
    CHECK(contains(failureOf(read.send(), io.waitScope), "refstore.INVALID_ARGUMENT"));
  }
  // Only `good`'s own holder is left once the raw objects above are dropped.
  io.waitScope.poll();
  CHECK(eventually([&]() { return watcher.stats().holders == 1; }, 5));
  CHECK(watcher.stats().objects == 1);
  { Ref drop = std::move(good); }
  CHECK(eventually([&]() { return watcher.stats().objects == 0; }, 5));
}

TEST_CASE("a refused fulfil changes nothing: retry works, and a dropped Fulfiller still breaks") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  auto& io = async::ioContext(client);
  auto store = async::store(client);

  SUBCASE("an empty value, then a good one") {
    auto promised = store.promiseRequest().send().wait(io.waitScope);
    Ref reader = async::wrap(client, promised.getRef());
    auto empty = promised.getFulfiller().fulfillRequest();
    CHECK(contains(failureOf(empty.send(), io.waitScope), "refstore.INVALID_ARGUMENT"));
    auto good = promised.getFulfiller().fulfillRequest();
    good.setData(bytesOf("settled"));
    good.send().wait(io.waitScope);
    auto value = reader.readAll(5);
    CHECK(std::string(value.begin(), value.end()) == "settled");
  }
  SUBCASE("a value over the inline limit, then the Fulfiller is dropped") {
    std::optional<Ref> reader;
    {
      auto promised = store.promiseRequest().send().wait(io.waitScope);
      reader.emplace(async::wrap(client, promised.getRef()));
      auto huge = promised.getFulfiller().fulfillRequest();
      std::string big(proto::MAX_INLINE_BYTES + 1, 'x');
      huge.setData(bytesOf(big));
      CHECK(contains(failureOf(huge.send(), io.waitScope), "refstore.TOO_LARGE"));
    }  // the Fulfiller goes: the promise must break, not stay pending forever
    try {
      reader->whenReady(5);
      FAIL("expected BROKEN_PROMISE");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::BROKEN_PROMISE);
    }
  }
}

namespace {

// `count` share tokens of `ref` with `ttlSeconds`, minted through the raw protocol in pipelined
// batches (a runaway loop in some client); returns how many calls failed, and the first error.
size_t mintTokens(Client& client, const Ref& ref, size_t count, uint32_t ttlSeconds,
                  std::string* firstError = nullptr) {
  auto& io = async::ioContext(client);
  auto capability = async::capability(ref);
  size_t failed = 0;
  for (size_t done = 0; done < count;) {
    size_t batch = std::min<size_t>(2000, count - done);
    auto calls = kj::heapArrayBuilder<kj::Promise<void>>(batch);
    for (size_t i = 0; i < batch; i++) {
      auto share = capability.shareRequest();
      share.setTtlSeconds(ttlSeconds);
      calls.add(share.send().ignoreResult().catch_([&](kj::Exception&& e) {
        if (failed++ == 0 && firstError != nullptr) *firstError = e.getDescription();
      }));
    }
    kj::joinPromises(calls.finish()).wait(io.waitScope);
    done += batch;
  }
  return failed;
}

}  // namespace

TEST_CASE("200,000 tokens on one object expire without stalling the daemon") {
  // Regression: removing an expired lease scanned the object's whole lease list. 100,000 tokens
  // on one object took the daemon 340 s to expire, answering nobody meanwhile; SIGTERM included.
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Ref ref = client.put("popular", 7);
  CHECK(mintTokens(client, ref, 200000, /*ttlSeconds=*/1) == 0);
  Client other = Client::connect(daemon.socket());
  // All expire within about a second of each other; another client is answered throughout, and
  // the daemon is done with them in a few seconds (not minutes).
  CHECK(eventually([&]() { return other.stats().tokens == 0; }, 60));
  Ref unrelated = other.put("still served", 12);
  CHECK(unrelated.readAll().size() == 12);
  CHECK(daemon.stop() == 0);  // SIGTERM is handled promptly and cleanly
}

TEST_CASE("share tokens are bounded per connection and per daemon; the limit names itself") {
  Daemon daemon("64M", {"--max-tokens", "300", "--max-tokens-per-client", "200"});
  Client greedy = Client::connect(daemon.socket());
  Client polite = Client::connect(daemon.socket());
  Ref ref = greedy.put("value", 5);
  std::string error;
  CHECK(mintTokens(greedy, ref, 250, 600, &error) == 50);
  CHECK(contains(error, "refstore.RESOURCE_EXHAUSTED"));
  CHECK(contains(error, "per connection"));
  CHECK(polite.stats().tokens == 200);
  // Another connection may still share, up to the daemon's limit.
  Ref mine = polite.put("mine", 4);
  CHECK(mintTokens(polite, mine, 150, 600, &error) == 50);
  CHECK(contains(error, "--max-tokens"));
  CHECK(polite.stats().tokens == 300);
  // The C++ client reports the code.
  try {
    mine.share(600, 1);
    FAIL("expected RESOURCE_EXHAUSTED");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::RESOURCE_EXHAUSTED);
  }
  CHECK(polite.stats().tokens == 300);
}

namespace {

// A connected, idle Unix socket to `path` (-1 if the connection failed).
int connectIdle(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

TEST_CASE("out of file descriptors, the daemon keeps its listener and accepts again later") {
  // Regression: the accept loop ended at the first EMFILE ('unix listener failed: accept: Too
  // many open files') and the daemon never accepted another connection.
  Daemon daemon("64M", {}, 0, /*descriptorLimit=*/128);
  std::vector<int> idle;
  for (int i = 0; i < 300; i++) {
    int fd = connectIdle(daemon.socket());
    if (fd >= 0) idle.push_back(fd);
  }
  // The kernel completes connections into the backlog whatever the daemon does; the daemon
  // runs out of descriptors accepting them.
  CHECK(eventually([&]() { return contains(daemon.log(), "accept failed"); }, 20));
  CHECK(daemon.alive());
  for (int fd: idle) close(fd);
  // Descriptors come back as the daemon sees those connections close: it accepts again.
  Client client = Client::connect(daemon.socket());
  Ref ref = client.put("after the storm", 15);
  CHECK(ref.readAll().size() == 15);
  CHECK(eventually([&]() { return client.stats().clients == 1; }, 20));
}

TEST_CASE("Segment capabilities one connection can make the daemon hold are bounded") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  auto& io = async::ioContext(client);
  auto store = async::store(client);
  auto put = store.putRequest();
  put.setData(bytesOf("mapped"));
  auto view = put.send().getRef().viewRequest().send().wait(io.waitScope);
  auto segment = view.getPlacement().getSegment();
  // Each reattach is a new capability and a new descriptor in the daemon.
  std::vector<proto::Segment::Client> held;
  std::string error;
  for (int i = 0; i < 1100 && error.empty(); i++) {
    KJ_IF_MAYBE(e, kj::runCatchingExceptions([&]() {
      held.push_back(segment.reattachRequest().send().wait(io.waitScope).getSegment());
    })) {
      error = e->getDescription();
    }
  }
  CHECK(contains(error, "refstore.RESOURCE_EXHAUSTED"));
  CHECK(held.size() < 1024);
  CHECK(held.size() > 1000);
  // Dropping them gives the budget back.
  held.clear();
  io.waitScope.poll();
  client.stats();  // a round trip: the Releases are processed
  segment.reattachRequest().send().wait(io.waitScope);
  // Another connection was never affected.
  Client other = Client::connect(daemon.socket());
  CHECK(other.put("fine", 4).view().size() == 4);
}
