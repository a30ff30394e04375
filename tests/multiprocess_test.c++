// Multi-process integration tests: real refstored, real separate client processes
// (tests/rs_helper), including clients killed with SIGKILL mid-use.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <capnp/rpc-twoparty.h>

#include "client/cpp/refstore_async.h"
#include "tools/pipeline/pipeline.capnp.h"
#include "tests/daemon.h"

using namespace refstore;
using refstore::testing::Daemon;
using refstore::testing::eventually;
using refstore::testing::spawn;

namespace {
const char* HELPER = "tests/rs_helper";
}

TEST_CASE("put in one process, share, restore and zero-copy view in another: bytes identical") {
  Daemon daemon("256M");
  for (uint64_t size: {uint64_t(1), uint64_t(4096), uint64_t(1 << 20), uint64_t(40 << 20)}) {
    auto producer = spawn(HELPER, {"put", daemon.socket(), std::to_string(size), "77", "60"});
    std::string token = producer.readLine();
    REQUIRE(WEXITSTATUS(producer.wait()) == 0);
    REQUIRE(token.rfind("rs2.", 0) == 0);
    // The producer has exited: its token alone keeps the value alive.
    auto consumer = spawn(HELPER, {"verify", daemon.socket(), token, std::to_string(size), "77"});
    CHECK(consumer.readLine() == "ok");
    int status = consumer.wait();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    // A different seed must not verify: the check is real.
    auto wrong = spawn(HELPER, {"verify", daemon.socket(), token, std::to_string(size), "78"});
    if (size > 1) CHECK(WEXITSTATUS(wrong.wait()) == 1);
  }
}

TEST_CASE("a client SIGKILLed while holding refs: all its memory is reclaimed") {
  Daemon daemon("128M");
  Client observer = Client::connect(daemon.socket());
  uint64_t baseline = observer.stats().bytesUsed;
  auto holder = spawn(HELPER, {"hold-refs", daemon.socket(), "50", "100000"});
  REQUIRE(holder.readLine() == "ready");
  Stats held = observer.stats();
  CHECK(held.objects == 50);
  CHECK(held.bytesUsed >= baseline + 50 * 100000);
  holder.kill(SIGKILL);
  holder.wait();
  REQUIRE(eventually([&]() { return observer.stats().objects == 0; }));
  CHECK(observer.stats().bytesUsed == baseline);
  CHECK(observer.stats().holders == 0);
}

TEST_CASE("a client SIGKILLed while holding a View: the pin goes with it") {
  Daemon daemon("64M");
  Client observer = Client::connect(daemon.socket());
  uint64_t baseline = observer.stats().bytesUsed;
  std::string token;
  {
    auto buffer = observer.create(2 << 20);
    memset(buffer.data(), 5, buffer.size());
    token = buffer.seal().share(60, 1);  // one use: the viewer's restore consumes the lease
  }
  auto viewer = spawn(HELPER, {"hold-view", daemon.socket(), token});
  REQUIRE(viewer.readLine() == "ready");
  // No Ref and no token remain: only the View's pin keeps the memory. (The viewer's release of
  // its Ref travels on its own connection, so wait for it rather than assume ordering.)
  REQUIRE(eventually([&]() { return observer.stats().holders == 0; }));
  Stats pinned = observer.stats();
  CHECK(pinned.tokens == 0);
  CHECK(pinned.pinnedDead == 1);
  CHECK(pinned.bytesUsed >= baseline + (2 << 20));
  viewer.kill(SIGKILL);
  viewer.wait();
  REQUIRE(eventually([&]() { return observer.stats().objects == 0; }));
  CHECK(observer.stats().bytesUsed == baseline);
}

TEST_CASE("a client SIGKILLed while writing an unsealed buffer: the reservation is freed") {
  Daemon daemon("64M");
  Client observer = Client::connect(daemon.socket());
  uint64_t baseline = observer.stats().bytesUsed;
  auto writer = spawn(HELPER, {"hold-unsealed", daemon.socket(), std::to_string(8 << 20)});
  REQUIRE(writer.readLine() == "ready");
  CHECK(observer.stats().creating == 1);
  CHECK(observer.stats().bytesUsed >= baseline + (8 << 20));
  writer.kill(SIGKILL);
  writer.wait();
  REQUIRE(eventually([&]() { return observer.stats().objects == 0; }));
  CHECK(observer.stats().bytesUsed == baseline);
  CHECK(observer.stats().creating == 0);
}

TEST_CASE("a reader cannot write through its mapping") {
  Daemon daemon("64M");
  Client owner = Client::connect(daemon.socket());
  Ref ref = owner.put("immutable!", 10);
  std::string token = ref.share(60);
  auto attacker = spawn(HELPER, {"write-view", daemon.socket(), token});
  std::string mprotectResult = attacker.readLine();
  CHECK(mprotectResult == "mprotect Permission denied");
  int status = attacker.wait();
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGSEGV);
  // The value is unchanged for everyone.
  auto bytes = ref.readAll();
  CHECK(std::string(bytes.begin(), bytes.end()) == "immutable!");
  CHECK(daemon.alive());
}

TEST_CASE("many processes share one value without copies; the daemon survives their deaths") {
  // The count of pins below is exact only if the background hasher (which pins a value over
  // 1 MiB while it hashes it, once it has lived --hash-delay-ms) stays out of the way.
  Daemon daemon("128M", {"--hash-delay-ms=600000"});
  Client owner = Client::connect(daemon.socket());
  auto buffer = owner.create(16 << 20);
  refstore::testing::fillPattern(buffer.data(), buffer.size(), 3);
  Ref ref = buffer.seal();
  std::string token = ref.share(60);
  uint64_t used = owner.stats().bytesUsed;
  std::vector<refstore::testing::Process> viewers;
  for (int i = 0; i < 6; i++) {
    viewers.push_back(spawn(HELPER, {"hold-view", daemon.socket(), token}));
  }
  for (auto& viewer: viewers) REQUIRE(viewer.readLine() == "ready");
  // Six readers, one copy of the bytes.
  CHECK(owner.stats().bytesUsed == used);
  CHECK(owner.list().at(0).pins == 6);
  for (auto& viewer: viewers) viewer.kill(SIGKILL);
  REQUIRE(eventually([&]() { return owner.list().at(0).pins == 0; }));
  auto consumer = spawn(HELPER, {"verify", daemon.socket(), token, std::to_string(16 << 20), "3"});
  CHECK(consumer.readLine() == "ok");
}

TEST_CASE("a fulfiller process killed with SIGKILL: waiters get BROKEN_PROMISE promptly") {
  Daemon daemon("64M");
  auto fulfiller = spawn(HELPER, {"promise", daemon.socket()});
  std::string token = fulfiller.readLine();
  REQUIRE(token.rfind("rs2.", 0) == 0);
  auto waiter = spawn(HELPER, {"wait", daemon.socket(), token});
  REQUIRE(waiter.readLine() == "waiting");
  Client observer = Client::connect(daemon.socket());
  CHECK(observer.stats().promised == 1);
  fulfiller.kill(SIGKILL);
  fulfiller.wait();
  // The waiter wakes with the error rather than waiting out its 60 s timeout.
  CHECK(waiter.readLine() == "BROKEN_PROMISE");
  CHECK(WEXITSTATUS(waiter.wait()) == 0);
  CHECK(observer.stats().failed == 1);  // the token still references the failed promise
}

TEST_CASE("the pipeline example: c = add(f(), f()) across three processes, by reference and by value") {
  Daemon daemon("256M");
  std::string producerSocket = refstore::testing::uniqueSocketPath("rst-prod");
  std::string adderSocket = refstore::testing::uniqueSocketPath("rst-add");
  const char* PIPELINE = "tools/pipeline/pipeline";
  auto producer = spawn(PIPELINE, {"producer", "--store", daemon.socket(), "--listen", producerSocket});
  auto adder = spawn(PIPELINE, {"adder", "--store", daemon.socket(), "--listen", adderSocket});
  REQUIRE(producer.readLine() == "listening");
  REQUIRE(adder.readLine() == "listening");
  for (bool byValue: {false, true}) {
    std::vector<std::string> args = {"driver", "--store", daemon.socket(), "--producer",
                                     producerSocket, "--adder", adderSocket, "--count", "262144"};
    if (byValue) args.push_back("--by-value");
    auto driver = spawn(PIPELINE, args);
    std::string report = driver.readLine();
    CHECK(report.find("\"correct\": true") != std::string::npos);
    CHECK(report.find(byValue ? "by-value" : "by-reference") != std::string::npos);
    CHECK(WEXITSTATUS(driver.wait()) == 0);
  }
  // Everything the three processes made is freed once they are done with it.
  Client observer = Client::connect(daemon.socket());
  REQUIRE(eventually([&]() { return observer.stats().objects == 0; }));
  CHECK(observer.stats().putsTotal >= 3);  // the by-reference run really used the store
}

TEST_CASE("a Ref received through another process survives that process once adopted") {
  Daemon daemon("64M");
  std::string producerSocket = refstore::testing::uniqueSocketPath("rst-adopt");
  auto producer = spawn("tools/pipeline/pipeline",
                        {"producer", "--store", daemon.socket(), "--listen", producerSocket});
  REQUIRE(producer.readLine() == "listening");

  Client client = Client::connect(daemon.socket());
  auto& io = async::ioContext(client);
  auto stream = io.provider->getNetwork()
                    .parseAddress(kj::str("unix:", producerSocket.c_str()))
                    .wait(io.waitScope)
                    ->connect()
                    .wait(io.waitScope);
  capnp::TwoPartyClient rpc(*stream);
  auto service = rpc.bootstrap().castAs<pipeline::proto::Producer>();
  auto request = service.fRequest();
  request.setSeed(5);
  request.setCount(1000);
  auto response = request.send().wait(io.waitScope);

  // The Ref arrived as a proxy through the producer (Cap'n Proto is Level 1).
  Ref proxied = async::wrap(client, response.getValue());
  Ref adopted = async::adopt(client, response.getValue()).wait(io.waitScope);
  CHECK(proxied.read(8, 8) == adopted.read(8, 8));  // both reach the same value now
  // readMany takes the proxy too: the daemon follows it back to its own object.
  auto both = client.readMany({&proxied, &adopted});
  REQUIRE(both.size() == 2);
  CHECK(both[0].size() == 8000);
  CHECK(both[0] == both[1]);
  uint64_t last = 0;
  memcpy(&last, both[0].data() + 999 * 8, 8);
  CHECK(last == 5 * 999);

  producer.kill(SIGKILL);
  producer.wait();
  // The proxy died with the producer; the adopted Ref is direct and keeps the value alive.
  ErrorCode proxyError = ErrorCode::INTERNAL;
  try {
    proxied.read(0, 8);
  } catch (const Error& e) {
    proxyError = e.code();
  }
  CHECK(proxyError == ErrorCode::DISCONNECTED);
  View view = adopted.view();
  REQUIRE(view.size() == 8000);
  bool correct = true;
  for (uint64_t i = 0; i < 1000; i++) {
    uint64_t v;
    memcpy(&v, view.data() + i * 8, 8);
    correct = correct && v == 5 * i;
  }
  CHECK(correct);
  CHECK(client.stats().objects == 1);
}
