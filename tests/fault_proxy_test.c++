// Tests of the test harness's fault-injecting TCP proxy (tests/fault_proxy.h): it forwards bytes
// intact, and each fault does exactly what it is told, no more. The targets are small blocking
// TCP servers in this file (an echo server and a hashing sink), so the proxy is tested on its own.
// Timing is only ever checked from below (a delay or a rate cap cannot make anything faster).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "third_party/fast_xxhash.h"

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/daemon.h"
#include "tests/fault_proxy.h"
#include "tests/tcp_testing.h"

using namespace refstore::testing;

namespace {

// Accepts connections on 127.0.0.1 and hands each to `serve` on its own thread.
class TestServer {
 public:
  explicit TestServer(std::function<void(int fd)> serve): serve(std::move(serve)) {
    listenFd = listenTcp("127.0.0.1:0");
    acceptor = std::thread([this]() {
      for (;;) {
        int fd = accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) return;  // shut down
        std::lock_guard<std::mutex> lock(mutex);
        fds.push_back(fd);
        workers.emplace_back([this, fd]() {
          this->serve(fd);
          shutdown(fd, SHUT_RDWR);  // closed by the destructor (so that fds are not reused)
          finished++;
        });
      }
    });
  }
  ~TestServer() {
    shutdown(listenFd, SHUT_RDWR);
    acceptor.join();
    std::lock_guard<std::mutex> lock(mutex);
    for (int fd: fds) shutdown(fd, SHUT_RDWR);
    for (auto& worker: workers) worker.join();
    for (int fd: fds) close(fd);
    close(listenFd);
  }
  std::string address() const { return localAddress(listenFd); }
  // Connections whose `serve` returned (it saw the end of its stream, orderly or not).
  std::atomic<int> finished{0};

 private:
  std::function<void(int fd)> serve;
  int listenFd;
  std::thread acceptor;
  std::mutex mutex;
  std::vector<int> fds;
  std::vector<std::thread> workers;
};

void echo(int fd) {
  char buffer[64 << 10];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) return;
    if (!writeAll(fd, buffer, n)) return;
  }
}

std::string patternString(size_t size, uint64_t seed) {
  std::string text(size, '\0');
  fillPattern(reinterpret_cast<uint8_t*>(text.data()), size, seed);
  return text;
}

// Sends `data` on `fd` and reads as many bytes back (from an echo server), from two threads so
// that neither side's buffers fill up.
std::string roundTrip(int fd, const std::string& data) {
  std::thread writer([&]() { writeAll(fd, data.data(), data.size()); });
  std::string back = readUpTo(fd, data.size());
  writer.join();
  return back;
}

double secondsSince(double start) { return monotonicSeconds() - start; }

// howConnectionEnds() of a new connection to `address` (it may be reset while connecting).
std::string howANewConnectionEnds(const std::string& address) {
  int fd = tryConnectTcp(address, 20000);
  if (fd < 0) return errno == ECONNRESET ? "reset" : std::string("error: ") + strerror(errno);
  std::string end = howConnectionEnds(fd);
  close(fd);
  return end;
}

}  // namespace

TEST_CASE("the proxy forwards bytes intact both ways over many concurrent connections") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  constexpr int CONNECTIONS = 64;
  constexpr size_t SIZE = 256 << 10;
  std::vector<std::thread> clients;
  std::atomic<int> intact{0};
  for (int i = 0; i < CONNECTIONS; i++) {
    clients.emplace_back([&, i]() {
      int fd = connectTcp(proxy.address());
      std::string data = patternString(SIZE, i);
      if (roundTrip(fd, data) == data) intact++;
      close(fd);
    });
  }
  for (auto& client: clients) client.join();
  CHECK(intact == CONNECTIONS);
  CHECK(eventually([&]() { return proxy.counters().open == 0; }));
  auto counters = proxy.counters();
  CHECK(counters.connections == CONNECTIONS);
  CHECK(counters.bytesToTarget == CONNECTIONS * SIZE);
  CHECK(counters.bytesToClient == CONNECTIONS * SIZE);
  CHECK(counters.corruptedBytes == 0);
  CHECK(counters.cuts == 0);
  CHECK(eventually([&]() { return server.finished == CONNECTIONS; }));
}

TEST_CASE("a GiB crosses the proxy intact, at a speed that keeps big transfers cheap") {
  // The sink hashes what it receives and answers with the hash when the stream ends.
  TestServer sink([](int fd) {
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    std::vector<char> buffer(1 << 20);
    for (;;) {
      ssize_t n = read(fd, buffer.data(), buffer.size());
      if (n <= 0) break;
      XXH3_64bits_update(state, buffer.data(), n);
    }
    uint64_t hash = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    writeAll(fd, &hash, sizeof(hash));
  });
  FaultProxy proxy("127.0.0.1:0", sink.address());
  constexpr size_t BLOCK = 1 << 20, BLOCKS = 1024;
  std::string block = patternString(BLOCK, 7);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  int fd = connectTcp(proxy.address());
  double start = monotonicSeconds();
  for (uint64_t i = 0; i < BLOCKS; i++) {
    memcpy(block.data(), &i, sizeof(i));  // every block differs: reordering would show
    XXH3_64bits_update(state, block.data(), BLOCK);
    REQUIRE(writeAll(fd, block.data(), BLOCK));
  }
  shutdown(fd, SHUT_WR);
  std::string reply = readUpTo(fd, 8);
  double seconds = secondsSince(start);
  REQUIRE(reply.size() == 8);
  uint64_t sent = XXH3_64bits_digest(state), received;
  memcpy(&received, reply.data(), 8);
  XXH3_freeState(state);
  close(fd);
  CHECK(received == sent);
  CHECK(proxy.counters().bytesToTarget == BLOCK * BLOCKS);
  MESSAGE("1 GiB through the proxy in " << seconds << " s (" << (BLOCKS / seconds)
                                        << " MiB/s, hashing on both ends included)");
}

TEST_CASE("a delay holds every chunk for at least that long, each way") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  int fd = connectTcp(proxy.address());
  REQUIRE(roundTrip(fd, "warm") == "warm");

  proxy.setDelay(Direction::TO_TARGET, 150);
  double start = monotonicSeconds();
  CHECK(roundTrip(fd, "ping") == "ping");
  CHECK(secondsSince(start) >= 0.150);

  proxy.setDelay(Direction::BOTH, 150);
  start = monotonicSeconds();
  CHECK(roundTrip(fd, "pong") == "pong");
  CHECK(secondsSince(start) >= 0.300);

  // Many chunks in flight overlap rather than queue one delay each behind the other: a
  // megabyte in small writes still arrives intact (its duration is not asserted).
  std::string data = patternString(1 << 20, 3);
  CHECK(roundTrip(fd, data) == data);
  close(fd);
}

TEST_CASE("a rate cap keeps a direction at or below its bytes per second") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  int fd = connectTcp(proxy.address());
  constexpr uint64_t RATE = 4 << 20;  // 4 MiB/s
  proxy.setRate(Direction::TO_CLIENT, RATE);
  std::string data = patternString(2 << 20, 5);
  double start = monotonicSeconds();
  CHECK(roundTrip(fd, data) == data);
  // The first 10 ms slice goes at once; the rest cannot be faster than the rate.
  double floor = double(data.size() - RATE / 100) / RATE;
  CHECK(secondsSince(start) >= floor);
  close(fd);
}

TEST_CASE("a stall holds bytes without closing anything; resume delivers all of them") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  int fd = connectTcp(proxy.address());
  REQUIRE(roundTrip(fd, "before") == "before");
  auto before = proxy.counters();

  proxy.stall();
  std::string data = patternString(300 << 10, 9);
  std::thread writer([&]() { writeAll(fd, data.data(), data.size()); });
  CHECK_FALSE(readableWithin(fd, 300));
  auto during = proxy.counters();
  CHECK(during.bytesToTarget == before.bytesToTarget);  // nothing went through
  CHECK(during.open == 1);                                // and nothing was closed

  proxy.resume();
  CHECK(readUpTo(fd, data.size()) == data);
  writer.join();
  close(fd);
}

TEST_CASE("a stall holds the end of a stream too") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  int fd = connectTcp(proxy.address());
  REQUIRE(roundTrip(fd, "x") == "x");
  proxy.stall();
  shutdown(fd, SHUT_WR);
  sleepMillis(200);
  CHECK(server.finished == 0);  // the server has not seen the end of the stream
  proxy.resume();
  CHECK(howConnectionEnds(fd) == "closed");  // it has now, and closed its end in turn
  CHECK(server.finished == 1);
  close(fd);
}

TEST_CASE("a stall of one direction lets the other flow") {
  TestServer server([](int fd) {
    // Answers "hello" at once, then echoes.
    writeAll(fd, "hello", 5);
    echo(fd);
  });
  FaultProxy proxy("127.0.0.1:0", server.address());
  proxy.stall(Direction::TO_TARGET);
  int fd = connectTcp(proxy.address());
  CHECK(readUpTo(fd, 5) == "hello");  // TO_CLIENT still flows
  REQUIRE(writeAll(fd, "x", 1));
  CHECK_FALSE(readableWithin(fd, 200));  // but nothing reaches the server to be echoed
  proxy.resume();
  CHECK(readUpTo(fd, 1) == "x");
  close(fd);
}

TEST_CASE("cut resets both ends of every open connection; new connections still work") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  int first = connectTcp(proxy.address());
  int second = connectTcp(proxy.address());
  REQUIRE(roundTrip(first, "a") == "a");
  REQUIRE(roundTrip(second, "b") == "b");

  proxy.cut();
  CHECK(howConnectionEnds(first) == "reset");
  CHECK(howConnectionEnds(second) == "reset");
  CHECK(eventually([&]() { return server.finished == 2; }));  // the target's ends went too
  CHECK(proxy.counters().cuts == 2);
  CHECK(proxy.counters().open == 0);

  int third = connectTcp(proxy.address());
  CHECK(roundTrip(third, "c") == "c");
  close(first);
  close(second);
  close(third);
}

TEST_CASE("refuse resets new connections as they come, without dialing the target") {
  std::atomic<int> served{0};
  TestServer server([&](int fd) {
    served++;
    echo(fd);
  });
  FaultProxy proxy("127.0.0.1:0", server.address());
  proxy.refuse(true);
  CHECK(howANewConnectionEnds(proxy.address()) == "reset");
  CHECK(served == 0);
  CHECK(proxy.counters().cuts == 1);

  proxy.refuse(false);
  int fd = connectTcp(proxy.address());
  CHECK(roundTrip(fd, "again") == "again");
  CHECK(served == 1);
  close(fd);
}

TEST_CASE("corruption flips exactly the byte at the given offset, on the chosen connection") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  int bystander = connectTcp(proxy.address());
  REQUIRE(roundTrip(bystander, "open") == "open");  // connection 0

  Corruption corruption;
  corruption.direction = Direction::TO_CLIENT;
  corruption.offset = 1000;
  corruption.connection = int64_t(proxy.counters().connections);  // the next one: 1
  corruption.xorMask = 0x5A;
  proxy.corrupt(corruption);

  std::string data = patternString(4096, 11);
  int fd = connectTcp(proxy.address());
  std::string back = roundTrip(fd, data);
  REQUIRE(back.size() == data.size());
  for (size_t i = 0; i < data.size(); i++) {
    uint8_t expected = uint8_t(data[i]) ^ (i == 1000 ? 0x5A : 0);
    if (uint8_t(back[i]) != expected) FAIL("byte " << i << " is wrong");
  }
  CHECK(proxy.counters().corruptedBytes == 1);

  // Connection 0 is past offset 1000 of nothing (it sent 4 bytes): its next 4096 are intact.
  CHECK(roundTrip(bystander, data) == data);
  CHECK(proxy.counters().corruptedBytes == 1);
  close(fd);
  close(bystander);
}

TEST_CASE("corruption of every Nth byte stops at its limit; clearCorruption stops it") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  Corruption corruption;
  corruption.direction = Direction::TO_TARGET;
  corruption.offset = 10;
  corruption.every = 100;
  corruption.limit = 5;
  proxy.corrupt(corruption);

  int fd = connectTcp(proxy.address());
  std::string data = patternString(2000, 13);
  // In small writes, so that flipped positions fall in different chunks of the stream.
  std::string back;
  for (size_t at = 0; at < data.size(); at += 70) {
    back += roundTrip(fd, data.substr(at, 70));
  }
  REQUIRE(back.size() == data.size());
  std::vector<size_t> flipped;
  for (size_t i = 0; i < data.size(); i++) {
    if (back[i] != data[i]) {
      flipped.push_back(i);
      CHECK(uint8_t(back[i]) == uint8_t(data[i] ^ 0xFF));
    }
  }
  CHECK(flipped == std::vector<size_t>{10, 110, 210, 310, 410});

  Corruption everyByte;
  everyByte.direction = Direction::TO_CLIENT;
  everyByte.every = 1;
  proxy.corrupt(everyByte);
  CHECK(roundTrip(fd, "ab") == std::string{char('a' ^ 0xFF), char('b' ^ 0xFF)});
  proxy.clearCorruption();
  CHECK(roundTrip(fd, "ab") == "ab");
  close(fd);
}

TEST_CASE("a CUT break lets exactly N bytes through, then resets the connection") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  proxy.breakAfter(Direction::TO_CLIENT, 5000, Break::CUT);
  int fd = connectTcp(proxy.address());
  std::string data = patternString(20000, 17);
  std::thread writer([&]() { writeAll(fd, data.data(), data.size()); });
  std::string back = readUpTo(fd, data.size());
  writer.join();
  CHECK(back == data.substr(0, 5000));
  CHECK(proxy.counters().cuts == 1);
  close(fd);
}

TEST_CASE("a STALL break holds a connection at N bytes until resume") {
  TestServer server(echo);
  FaultProxy proxy("127.0.0.1:0", server.address());
  int fd = connectTcp(proxy.address());
  proxy.breakAfter(Direction::TO_CLIENT, 5000, Break::STALL, /*connection=*/0);
  std::string data = patternString(20000, 19);
  std::thread writer([&]() { writeAll(fd, data.data(), data.size()); });
  CHECK(readUpTo(fd, 5000) == data.substr(0, 5000));
  CHECK_FALSE(readableWithin(fd, 200));
  CHECK(proxy.counters().bytesToClient == 5000);

  proxy.resume();
  CHECK(readUpTo(fd, data.size() - 5000) == data.substr(5000));
  writer.join();
  close(fd);
}

TEST_CASE("a proxy to a target nobody listens on resets what it accepts") {
  int unused = freeTcpPort();
  FaultProxy proxy("127.0.0.1:0", "127.0.0.1:" + std::to_string(unused));
  CHECK(howANewConnectionEnds(proxy.address()) == "reset");
  CHECK(proxy.counters().open == 0);
}

TEST_CASE("a proxy reports what it cannot do, by name") {
  CHECK_THROWS_WITH_AS(FaultProxy("127.0.0.1:0", "no-port"), doctest::Contains("no-port"),
                       std::runtime_error);
  TestServer server(echo);
  FaultProxy first("127.0.0.1:0", server.address());
  CHECK_THROWS_AS(FaultProxy(first.address(), server.address()), std::runtime_error);
  Corruption both;
  both.direction = Direction::BOTH;
  CHECK_THROWS_AS(first.corrupt(both), std::invalid_argument);
}
