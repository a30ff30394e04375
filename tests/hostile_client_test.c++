// Integration tests: one buggy or hostile client must not freeze, starve or leak the daemon for
// the others (issue 21). Each case talks the raw protocol where a well-behaved client library
// would never send what it sends, and then checks, as another client, that the daemon is still
// whole: answering, and holding nothing it should not.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <atomic>
#include <functional>
#include <thread>
#include <optional>
#include <set>
#include <string>

#include <capnp/rpc-twoparty.h>
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
  kj::Promise<void> share(ShareContext /*context*/) override {
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

namespace {

// A memory figure of process `pid` in bytes, from /proc/<pid>/status: "VmRSS" (resident) or
// "VmData" (private data committed, touched or not: what a malloc of an announced size costs
// even before its pages are written).
uint64_t memoryOf(pid_t pid, const char* field) {
  std::string path = "/proc/" + std::to_string(pid) + "/status";
  FILE* status = fopen(path.c_str(), "r");
  REQUIRE(status != nullptr);
  char line[256];
  std::string format = std::string(field) + ": %lu kB";
  uint64_t kib = 0;
  while (fgets(line, sizeof(line), status) != nullptr) {
    if (sscanf(line, format.c_str(), &kib) == 1) break;
  }
  fclose(status);
  return kib << 10;
}

// A frame header: one segment of `words` words.
std::string frameHeader(uint32_t words) {
  uint32_t header[2] = {0, words};
  return std::string(reinterpret_cast<const char*>(header), sizeof(header));
}

void writeAll(int fd, const std::string& bytes) {
  REQUIRE(write(fd, bytes.data(), bytes.size()) == ssize_t(bytes.size()));
}

// Whether the peer closes `fd` within about `seconds`: reads (and discards what it says first,
// e.g. the Abort message that explains why) until end of stream, an error, or a read that
// waited `seconds` in vain.
bool closedByPeer(int fd, double seconds) {
  struct timeval timeout = {long(seconds), long((seconds - long(seconds)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  char buffer[4096];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n > 0) continue;
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

// A TCP connection to 127.0.0.1:port (-1 on failure).
int connectTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string writeSecretFile(const std::string& secret) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string path = std::string(tmp ? tmp : "/tmp") + "/secret-" + std::to_string(getpid());
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  fputs(secret.c_str(), f);
  fclose(f);
  return path;
}

}  // namespace

TEST_CASE("frame headers claiming huge messages cost memory only as bytes arrive") {
  // Regression: a header claiming 8M words made the daemon allocate 64 MiB before any of it
  // arrived (20 such connections: RSS 142 MB -> 1.46 GB).
  Daemon daemon;
  Client watcher = Client::connect(daemon.socket());
  uint64_t before = memoryOf(daemon.pid(), "VmData");
  std::vector<int> liars;
  for (int i = 0; i < 20; i++) {
    int fd = connectIdle(daemon.socket());
    REQUIRE(fd >= 0);
    // 19 MiB announced (within the 20 MiB limit), a few bytes sent.
    writeAll(fd, frameHeader(19u << 17) + std::string(64, 'x'));
    liars.push_back(fd);
  }
  refstore::testing::sleepMillis(300);
  watcher.stats();  // the daemon has run its loop since
  uint64_t after = memoryOf(daemon.pid(), "VmData");
  uint64_t grown = after - std::min(before, after);
  MESSAGE("daemon VmData grew by " << (grown >> 20) << " MiB for 20 announced 19 MiB messages");
  CHECK(grown < (60u << 20));  // 20 x 19 MiB = 380 MiB if it trusted the headers
  // A header over the limit is refused at once: the connection is closed.
  int greedy = connectIdle(daemon.socket());
  writeAll(greedy, frameHeader(8u << 20));  // 64 MiB
  CHECK(closedByPeer(greedy, 10));
  close(greedy);
  for (int fd: liars) close(fd);
  CHECK(watcher.put("fine", 4).readAll().size() == 4);
}

TEST_CASE("a peer that stalls inside a message is closed; an idle one is not") {
  Daemon daemon("64M", {"--stall-timeout-ms", "300"});
  Client idle = Client::connect(daemon.socket());  // sends nothing between its calls
  int staller = connectIdle(daemon.socket());
  writeAll(staller, frameHeader(100) + std::string(16, 'x'));  // 800 bytes announced, 16 sent
  CHECK(closedByPeer(staller, 10));
  close(staller);
  refstore::testing::sleepMillis(600);  // twice the stall timeout, idle
  CHECK(idle.put("still here", 10).readAll().size() == 10);
}

TEST_CASE("an unauthenticated TCP peer gets a small message limit and a deadline for hello") {
  int port = refstore::testing::freeTcpPort();
  std::string secretFile = writeSecretFile("correct-horse-battery-staple");
  Daemon daemon("64M", {"--tcp", "127.0.0.1:" + std::to_string(port), "--secret-file",
                        secretFile, "--hello-timeout-ms", "500"});
  // Before hello, a message announcing 1 MiB is refused (the limit is 64 KiB).
  int bomber = connectTcp(port);
  REQUIRE(bomber >= 0);
  writeAll(bomber, frameHeader(1u << 17));
  CHECK(closedByPeer(bomber, 10));
  close(bomber);
  // A peer that never says hello is closed after the deadline.
  int silent = connectTcp(port);
  REQUIRE(silent >= 0);
  CHECK(closedByPeer(silent, 10));
  close(silent);
  // One that does may send large messages and stay as long as it likes.
  ConnectOptions options;
  options.address = "tcp:127.0.0.1:" + std::to_string(port);
  options.secret = "correct-horse-battery-staple";
  Client client = Client::connect(options);
  refstore::testing::sleepMillis(800);
  std::string big(1 << 20, 'b');
  CHECK(client.put(big.data(), big.size()).size() == big.size());
}

TEST_CASE("labels are short; a long one is refused by name and changes nothing") {
  Daemon daemon;
  Client client = Client::connect(daemon.socket());
  auto& io = async::ioContext(client);
  auto store = async::store(client);
  auto hello = store.helloRequest();
  std::string label(proto::MAX_LABEL_BYTES + 1, 'l');
  hello.setClientName(label);
  CHECK(contains(failureOf(hello.send(), io.waitScope), "refstore.INVALID_ARGUMENT"));
  auto fine = store.helloRequest();
  fine.setClientName(std::string(proto::MAX_LABEL_BYTES, 'l'));
  fine.send().wait(io.waitScope);
  Ref ref = client.put("x", 1);
  auto listing = client.list();
  REQUIRE(listing.size() == 1);
  REQUIRE(listing[0].holders.size() == 1);
  CHECK(listing[0].holders[0].label.size() == proto::MAX_LABEL_BYTES);
}

TEST_CASE("listings page: 300,000 names and their objects list for everyone") {
  // Regression: with 300,000 names, Store.names and Store.list exceeded Cap'n Proto's message
  // limit and failed for every client.
  Daemon daemon("256M");
  Client client = Client::connect(daemon.socket());
  auto& io = async::ioContext(client);
  Ref ref = client.put("named a lot", 11);
  auto capability = async::capability(ref);
  constexpr int kNames = 300000;
  for (int done = 0; done < kNames;) {
    auto calls = kj::heapArrayBuilder<kj::Promise<void>>(5000);
    for (int i = 0; i < 5000; i++, done++) {
      auto save = capability.saveAsRequest();
      save.setName(kj::str("name/", done, "/with-a-longer-suffix-to-weigh-more"));
      calls.add(save.send().ignoreResult());
    }
    kj::joinPromises(calls.finish()).wait(io.waitScope);
  }
  Client other = Client::connect(daemon.socket());
  auto names = other.names();
  CHECK(names.size() == kNames);
  std::set<std::string> distinct;
  for (auto& binding: names) distinct.insert(binding.name);
  CHECK(distinct.size() == kNames);
  auto listing = other.list();
  REQUIRE(listing.size() == 1);
  CHECK(listing[0].names.size() == proto::MAX_LISTED_PER_OBJECT);  // the row lists a few
  // Pages are bounded: a raw call with a small limit returns that many and a cursor.
  auto store = async::store(other);
  auto page = store.namesRequest();
  page.setLimit(10);
  auto reply = page.send().wait(async::ioContext(other).waitScope);
  CHECK(reply.getNames().size() == 10);
  CHECK(reply.getMore());
}

namespace {

// A raw Cap'n Proto connection to the daemon in this process, for calls a client library would
// never make, or for disconnecting in the middle of calls.
struct RawConnection {
  explicit RawConnection(kj::AsyncIoContext& io, const std::string& socket,
                         bool neverRead = false);
  kj::Own<kj::AsyncIoStream> stream;
  kj::Own<capnp::TwoPartyClient> rpc;
  proto::Store::Client store = nullptr;
  // Drops the connection from under the calls in flight (both directions of the socket).
  void cutOff() {
    KJ_IF_MAYBE(fd, stream->getFd()) { shutdown(*fd, SHUT_RDWR); }
  }
};

// Reads nothing, ever: a client that sends requests and never reads the replies.
class DeafStream final: public kj::AsyncIoStream {
 public:
  explicit DeafStream(kj::Own<kj::AsyncIoStream> inner): inner(kj::mv(inner)) {}
  kj::Promise<size_t> tryRead(void*, size_t, size_t) override { return kj::NEVER_DONE; }
  kj::Promise<void> write(const void* buffer, size_t size) override {
    return inner->write(buffer, size);
  }
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override {
    return inner->write(pieces);
  }
  kj::Promise<void> whenWriteDisconnected() override { return inner->whenWriteDisconnected(); }
  void shutdownWrite() override { inner->shutdownWrite(); }
  kj::Maybe<int> getFd() const override { return inner->getFd(); }

 private:
  kj::Own<kj::AsyncIoStream> inner;
};

RawConnection::RawConnection(kj::AsyncIoContext& io, const std::string& socket, bool neverRead) {
  auto address = io.provider->getNetwork().parseAddress("unix:" + socket).wait(io.waitScope);
  stream = address->connect().wait(io.waitScope);
  if (neverRead) stream = kj::heap<DeafStream>(kj::mv(stream));
  rpc = kj::heap<capnp::TwoPartyClient>(*stream);
  store = rpc->bootstrap().castAs<proto::Store>();
}

}  // namespace

TEST_CASE("a client that never reads its replies cannot make the daemon buffer them all") {
  Daemon daemon("128M");
  Client watcher = Client::connect(daemon.socket());
  auto& io = async::ioContext(watcher);  // the raw connection runs on the client's event loop
  RawConnection deaf(io, daemon.socket(), /*neverRead=*/true);
  auto put = deaf.store.putRequest();
  std::string value(16 << 20, 'v');
  put.setData(bytesOf(value));
  auto ref = put.send().getRef();
  uint64_t before = memoryOf(daemon.pid(), "VmRSS");
  // 100 reads of 16 MiB each, pipelined, none of whose replies will ever be read: 1.6 GB if the
  // daemon built and queued them all.
  std::vector<kj::Promise<void>> reads;
  for (int i = 0; i < 100; i++) {
    auto read = ref.readRequest();
    read.setLength(16 << 20);
    reads.push_back(read.send().ignoreResult().eagerlyEvaluate(nullptr));
  }
  // The put arrives (watcher's calls run this thread's loop, which sends the raw requests);
  // then the daemon has a moment to do what it will with the reads.
  CHECK(eventually([&]() { return watcher.stats().objects == 1; }, 20));
  for (int i = 0; i < 50; i++) {
    watcher.stats();
    refstore::testing::sleepMillis(20);
  }
  uint64_t after = memoryOf(daemon.pid(), "VmRSS");
  uint64_t grown = after - std::min(before, after);
  MESSAGE("daemon RSS grew by " << (grown >> 20) << " MiB for 100 unread 16 MiB replies");
  CHECK(grown < (300u << 20));
  deaf.cutOff();
  reads.clear();
  CHECK(eventually([&]() { return watcher.stats().objects == 0; }, 20));
}

TEST_CASE("calls pending when a client disconnects are cancelled: their holds go at once") {
  Daemon daemon("64M", {"--no-spill"});
  Client watcher = Client::connect(daemon.socket());
  Client fulfilling = Client::connect(daemon.socket());
  Promise promise = fulfilling.promise();  // never fulfilled while the test looks
  std::string promiseToken = promise.ref.share(600);
  std::optional<Ref> good(watcher.put("held only by a pending readMany", 31));
  std::string goodToken = good->share(600, 1);
  auto& io = async::ioContext(watcher);
  RawConnection client(io, daemon.socket());
  auto restoreGood = client.store.restoreRequest();
  restoreGood.setToken(goodToken);
  kj::Maybe<proto::Ref::Client> goodRef = restoreGood.send().wait(io.waitScope).getRef();
  auto restorePromise = client.store.restoreRequest();
  restorePromise.setToken(promiseToken);
  auto pending = restorePromise.send().getRef();
  kj::Promise<void> waiting = nullptr;
  {  // a sent request keeps its message (and the Refs in it) until it goes out of scope
    auto readMany = client.store.readManyRequest();
    auto refs = readMany.initRefs(2);
    refs.set(0, KJ_ASSERT_NONNULL(goodRef));
    refs.set(1, pending);
    waiting = readMany.send().ignoreResult().eagerlyEvaluate(nullptr);
  }
  // A create that must wait for memory (more than the free capacity).
  auto create = client.store.createRequest();
  create.setSize(60 << 20);
  create.setTimeoutMs(600000);
  auto queued = create.send().ignoreResult().eagerlyEvaluate(nullptr);
  CHECK(eventually([&]() { return watcher.stats().queueLength == 1; }, 10));
  // Everyone but the pending readMany lets go of `good`.
  good.reset();
  goodRef = nullptr;
  auto heldBy = [&]() -> uint32_t {
    for (auto& row: watcher.list()) {
      if (row.info.size == 31) return row.holderCount;
    }
    return 0;
  };
  // Held now only by the pending readMany: its temporary hold, and the Ref in its parameters
  // (a call keeps its parameters, and so the Refs in them, until it completes).
  CHECK(eventually([&]() { return heldBy() == 2; }, 10));
  client.cutOff();
  CHECK(eventually([&]() { return watcher.stats().queueLength == 0; }, 10));
  // The readMany's hold went with the connection: only the promise is left.
  CHECK(eventually([&]() { return watcher.stats().objects == 1; }, 10));
}

TEST_CASE("the admission queue takes clients in turn: a backlog does not starve a small put") {
  // Regression: one client's 10,000 waiting creates made every other client's put wait behind
  // all of them (or time out).
  Daemon daemon("64M", {"--no-spill"});
  Client filler = Client::connect(daemon.socket());
  std::vector<Ref> fill;
  while (true) {  // fill the memory
    try {
      WriteBuffer buffer = filler.create(1 << 20, /*timeoutSeconds=*/0.2);
      fill.push_back(buffer.seal());
    } catch (const Error& e) {
      REQUIRE(e.code() == ErrorCode::OUT_OF_MEMORY);
      break;
    }
  }
  auto& io = async::ioContext(filler);
  RawConnection greedy(io, daemon.socket());
  std::vector<kj::Promise<void>> backlog;
  for (int i = 0; i < 2000; i++) {
    auto create = greedy.store.createRequest();
    create.setSize(1 << 20);
    create.setTimeoutMs(600000);
    backlog.push_back(create.send().ignoreResult().eagerlyEvaluate(nullptr));
  }
  CHECK(eventually([&]() { return filler.stats().queueLength == 2000; }, 20));
  // The small put waits too (memory is full), behind at most one of the backlog's requests.
  std::atomic<bool> stored{false};
  std::thread small([&]() {
    Client polite = Client::connect(daemon.socket());
    Ref ref = polite.put("small", 5, {}, /*timeoutSeconds=*/600);
    stored = true;
  });
  CHECK(eventually([&]() { return filler.stats().queueLength == 2001; }, 20));
  // Room for two of the waiting requests: the backlog's first, then the small put (in strict
  // arrival order it would be the backlog's first two thousand).
  fill.pop_back();
  fill.pop_back();
  CHECK(eventually([&]() {
    filler.stats();  // runs the event loop of this thread
    return stored.load();
  }, 20));
  small.join();
  CHECK(filler.stats().queueLength > 1900);  // the backlog still waits: the put went first
  greedy.cutOff();
  CHECK(eventually([&]() { return filler.stats().queueLength == 0; }, 20));
  backlog.clear();
}
