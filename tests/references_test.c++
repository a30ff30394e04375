// Integration tests for first-class references against a real refstored: futures, nested
// references (containment), names, and who-holds-what listings.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <unistd.h>

#include <functional>

#include <kj/debug.h>
#include <string>

#include "client/cpp/refstore_async.h"
#include "tests/daemon.h"

using namespace refstore;
using refstore::testing::Daemon;

namespace {

ErrorCode codeOf(const std::function<void()>& body, std::string* message = nullptr) {
  try {
    body();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.code();
  }
  FAIL("expected an Error");
  return ErrorCode::INTERNAL;
}

std::string text(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }

}  // namespace

TEST_CASE("a promise is a Ref at once; it can be shared and restored before it has a value") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Promise p = client.promise();
  CHECK(p.ref.info().state == "promised");
  CHECK(client.stats().promised == 1);
  std::string token = p.ref.share(60);
  Ref early = client.restore(token);
  CHECK(codeOf([&]() { early.whenReady(0.2); }) == ErrorCode::TIMEOUT);
  CHECK(codeOf([&]() { early.view(0.2); }) == ErrorCode::TIMEOUT);
  CHECK(codeOf([&]() { early.readAll(0.2); }) == ErrorCode::TIMEOUT);
  p.fulfiller.fulfill("the value", 9);
  ObjectInfo info = early.whenReady(5);
  CHECK(info.state == "sealed");
  CHECK(info.size == 9);
  CHECK(text(early.readAll()) == "the value");
  CHECK(text(p.ref.read(4, 100)) == "value");
  CHECK(client.stats().promised == 0);
  // Settling is one-shot.
  CHECK(codeOf([&]() { p.fulfiller.reject("too late"); }) == ErrorCode::FAILED_PRECONDITION);
  CHECK(codeOf([&]() { p.fulfiller.fulfill("again", 5); }) == ErrorCode::FAILED_PRECONDITION);
}

TEST_CASE("fulfillWith aliases another object without copying") {
  Daemon daemon("64M");
  Client client = Client::connect(daemon.socket());
  Promise p = client.promise();
  uint64_t used;
  {
    WriteBuffer buffer = client.create(4 << 20);
    refstore::testing::fillPattern(buffer.data(), buffer.size(), 11);
    Ref value = buffer.seal();
    used = client.stats().bytesUsed;
    p.fulfiller.fulfillWith(value);
  }  // the original Ref is gone; the alias keeps the value alive
  CHECK(client.stats().bytesUsed == used);  // no copy was made
  View view = p.ref.view();
  CHECK(view.size() == size_t(4 << 20));
  CHECK(refstore::testing::checkPattern(view.data(), view.size(), 11));
  CHECK(p.ref.whenReady().size == uint64_t(4 << 20));
}

TEST_CASE("an alias of a pending promise becomes ready when that promise does") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Promise outer = client.promise();
  Promise inner = client.promise();
  outer.fulfiller.fulfillWith(inner.ref);
  CHECK(codeOf([&]() { outer.ref.whenReady(0.2); }) == ErrorCode::TIMEOUT);
  inner.fulfiller.fulfill("deep", 4);
  CHECK(text(outer.ref.readAll()) == "deep");
}

TEST_CASE("reject: every waiter and later reader gets REJECTED with the reason") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Promise p = client.promise();
  Ref other = client.restore(p.ref.share(60));
  p.fulfiller.reject("the input was empty");
  std::string message;
  CHECK(codeOf([&]() { other.whenReady(); }, &message) == ErrorCode::REJECTED);
  CHECK(message.find("the input was empty") != std::string::npos);
  CHECK(codeOf([&]() { other.readAll(); }) == ErrorCode::REJECTED);
  CHECK(codeOf([&]() { p.ref.view(); }) == ErrorCode::REJECTED);
  CHECK(client.stats().failed == 1);
}

TEST_CASE("a dropped Fulfiller breaks the promise") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Ref ref = [&]() {
    Promise p = client.promise();
    return std::move(p.ref);
  }();  // the Fulfiller dies here
  CHECK(codeOf([&]() { ref.whenReady(10); }) == ErrorCode::BROKEN_PROMISE);
  CHECK(codeOf([&]() { ref.readAll(); }) == ErrorCode::BROKEN_PROMISE);
}

TEST_CASE("a promise nobody references is freed even though it was never fulfilled") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Promise p = client.promise();
  { Ref gone = std::move(p.ref); }
  CHECK(client.stats().objects == 0);
  CHECK(codeOf([&]() { p.fulfiller.fulfill("x", 1); }) == ErrorCode::NOT_FOUND);
}

TEST_CASE("a fulfilment that would make an object contain itself is refused") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  Promise p = client.promise();
  CHECK(codeOf([&]() { p.fulfiller.fulfill("x", 1, {&p.ref}); }) == ErrorCode::CYCLE);
  CHECK(codeOf([&]() { p.fulfiller.fulfillWith(p.ref); }) == ErrorCode::CYCLE);
  // Indirect: a container that holds p, then p := alias of the container.
  Ref container = client.put("box", 3, {&p.ref});
  CHECK(codeOf([&]() { p.fulfiller.fulfillWith(container); }) == ErrorCode::CYCLE);
  // Through a chain of promises.
  Promise q = client.promise();
  q.fulfiller.fulfillWith(p.ref);
  CHECK(codeOf([&]() { p.fulfiller.fulfillWith(q.ref); }) == ErrorCode::CYCLE);
  // Refusals changed nothing: p can still be fulfilled.
  p.fulfiller.fulfill("fine", 4);
  CHECK(text(q.ref.readAll()) == "fine");
  CHECK(container.children().size() == 1);
}

TEST_CASE("nested references: a parent keeps its children alive and hands them out") {
  Daemon daemon("64M");
  Client client = Client::connect(daemon.socket());
  uint64_t baseline = client.stats().bytesUsed;
  {
    Ref dataset = [&]() {
      Ref a = client.put("partition-a", 11);
      Ref b = client.putLarge(std::string(100000, 'b').data(), 100000);
      WriteBuffer index = client.create(5);
      memcpy(index.data(), "index", 5);
      return index.seal({&a, &b});
    }();  // a and b are now held only by the dataset
    CHECK(client.stats().objects == 3);
    CHECK(client.stats().holders == 1);
    std::vector<Ref> parts = dataset.children();
    REQUIRE(parts.size() == 2);
    CHECK(text(parts[0].readAll()) == "partition-a");
    CHECK(parts[1].size() == 100000);
    auto listing = client.list();
    int withParent = 0;
    for (auto& o: listing) {
      if (o.parents.size() == 1 && o.parents[0].serial == dataset.info().id.serial) withParent++;
      if (o.info.id.serial == dataset.info().id.serial) CHECK(o.children.size() == 2);
    }
    CHECK(withParent == 2);
  }
  CHECK(client.stats().objects == 0);
  CHECK(client.stats().bytesUsed == baseline);
}

TEST_CASE("a 100,000-deep chain of nested references is freed without stack overflow") {
  Daemon daemon("256M");
  Client client = Client::connect(daemon.socket());
  const int depth = 100000;
  {
    // Built with promise pipelining: each put names the previous (not yet returned) Ref as its
    // child, so the 100,000 calls go out without waiting for each other.
    auto store = async::store(client);
    auto& io = async::ioContext(client);
    kj::Maybe<proto::Ref::Client> previous;
    kj::Vector<kj::Promise<void>> pending;
    for (int i = 0; i < depth; i++) {
      auto request = store.putRequest();
      request.setData(kj::StringPtr("x").asBytes());
      KJ_IF_MAYBE(child, previous) { request.initChildren(1).set(0, *child); }
      auto sent = request.send();
      previous = sent.getRef();
      pending.add(sent.ignoreResult());
      if (pending.size() == 1000) {  // bound the in-flight window
        kj::joinPromises(pending.releaseAsArray()).wait(io.waitScope);
      }
    }
    kj::joinPromises(pending.releaseAsArray()).wait(io.waitScope);
    Ref head = async::wrap(client, kj::mv(KJ_ASSERT_NONNULL(previous)));
    previous = nullptr;
    CHECK(client.stats().objects == uint64_t(depth));
    CHECK(client.stats().holders == 1);
  }  // dropping the head frees the whole chain in one cascade
  Stats after = client.stats();
  CHECK(after.objects == 0);
  CHECK(after.reclaimedTotal == uint64_t(depth));
  CHECK(daemon.alive());
}

TEST_CASE("names pin objects until unnamed; duplicates and bad names are refused") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  {
    Ref ref = client.put("named value", 11);
    ref.saveAs("datasets/train-v1");
    CHECK(codeOf([&]() { ref.saveAs("datasets/train-v1"); }) == ErrorCode::ALREADY_EXISTS);
    Ref other = client.put("other", 5);
    CHECK(codeOf([&]() { other.saveAs("datasets/train-v1"); }) == ErrorCode::ALREADY_EXISTS);
    for (std::string bad: {std::string(""), std::string("has space"), std::string("tab\tname"),
                           std::string(257, 'n'), std::string("caf\xc3\xa9")}) {
      CHECK_MESSAGE(codeOf([&]() { ref.saveAs(bad); }) == ErrorCode::INVALID_ARGUMENT, bad);
    }
  }
  CHECK(client.stats().objects == 1);  // only the named one survives
  CHECK(client.stats().names == 1);
  auto names = client.names();
  REQUIRE(names.size() == 1);
  CHECK(names[0].name == "datasets/train-v1");
  CHECK(text(client.lookup("datasets/train-v1").readAll()) == "named value");
  CHECK(codeOf([&]() { client.lookup("nope"); }) == ErrorCode::NOT_FOUND);
  client.unname("datasets/train-v1");
  CHECK(client.stats().objects == 0);
  CHECK(codeOf([&]() { client.unname("datasets/train-v1"); }) == ErrorCode::NOT_FOUND);
}

TEST_CASE("listings say who holds what: labels, pids, names, tokens and parents") {
  Daemon daemon;
  ConnectOptions options;
  options.address = daemon.socket();
  options.clientName = "trainer";
  Client client = Client::connect(options);
  Ref child = client.put("c", 1);
  Ref parent = client.put("p", 1, {&child});
  child.saveAs("the-child");
  std::string token = child.share(600);
  for (auto& o: client.list()) {
    if (o.info.id.serial != child.info().id.serial) continue;
    REQUIRE(o.holders.size() == 1);
    CHECK(o.holders[0].label == "trainer");
    CHECK(o.holders[0].pid == getpid());
    CHECK(o.names == std::vector<std::string>{"the-child"});
    CHECK(o.tokens == 1);
    REQUIRE(o.tokenExpiriesMs.size() == 1);
    CHECK(o.tokenExpiriesMs[0] > 590000);
    CHECK(o.tokenExpiriesMs[0] <= 600000);
    REQUIRE(o.parents.size() == 1);
    CHECK(o.parents[0].serial == parent.info().id.serial);
  }
}
