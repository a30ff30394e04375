// Integration tests of references across hosts (issue 17): several real refstored daemons, each
// a "host" with its own Unix socket, spill directory and TCP address on a loopback alias
// (127.0.0.2, 127.0.0.3, ...), clients on each host talking to their own daemon only. Tokens
// minted on one host are restored on another; the daemons dial each other, hold proxies and
// remote holders, copy bytes over their data ports, and free everything when the last
// reference anywhere goes.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/cpp/refstore_client.h"
#include "tests/daemon.h"

using namespace refstore;
using refstore::testing::Daemon;
using refstore::testing::eventually;

namespace {

const std::string kSecret = "many-hosts-test-secret";

std::string secretFile() {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string path = std::string(tmp ? tmp : "/tmp") + "/cluster-secret";
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  fputs(kSecret.c_str(), f);
  fclose(f);
  return path;
}

// One "host": a daemon listening on 127.0.0.<n> (its TCP address is what other daemons dial).
struct Host {
  std::string ip;
  int port;
  std::unique_ptr<Daemon> daemon;

  Host(int n, std::vector<std::string> extra = {}) : ip("127.0.0." + std::to_string(n)) {
    port = refstore::testing::freeTcpPort();
    std::vector<std::string> args = {"--tcp", address(), "--secret-file", secretFile(),
                                     "--heartbeat-ms", "200", "--peer-timeout-ms", "1500"};
    for (auto& arg: extra) args.push_back(arg);
    daemon = std::make_unique<Daemon>("128M", args);
  }
  std::string address() const { return ip + ":" + std::to_string(port); }
  Client client() const { return Client::connect(daemon->socket()); }
};

std::string text(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }

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

// A value of `size` pattern bytes (seed `seed`) made in place on `client`.
Ref makeValue(Client& client, uint64_t size, uint64_t seed) {
  WriteBuffer buffer = client.create(size);
  refstore::testing::fillPattern(buffer.data(), size, seed);
  return buffer.seal();
}

bool idle(Client& client) {
  Stats s = client.stats();
  return s.objects == 0 && s.proxies == 0 && s.remoteHolders == 0 && s.holders == 0;
}

}  // namespace

TEST_CASE("a token restored on another host reads the same bytes, both directions") {
  Host a(2), b(3);
  Client onA = a.client(), onB = b.client();
  std::string token = onA.put("made on A", 9).share(60);
  CHECK(token.find("@" + a.address()) != std::string::npos);  // the token names its owner
  Ref fromA = onB.restore(token);
  CHECK(text(fromA.readAll(10)) == "made on A");
  CHECK(fromA.info().size == 9);
  // And the other way, with a value large enough to take several chunks of the data plane.
  constexpr uint64_t kSize = 20u << 20;
  Ref large = makeValue(onB, kSize, 7);
  Ref fromB = onA.restore(large.share(60));
  View view = fromB.view(20);
  CHECK(view.size() == kSize);
  CHECK(refstore::testing::checkPattern(view.data(), kSize, 7));
  CHECK(onA.stats().proxies == 1);
  CHECK(onB.stats().remoteHolders == 1);
}

TEST_CASE("one proxy, one copy and one remote holder per object per host") {
  Host a(2), b(3);
  Client onA = a.client(), onB = b.client(), alsoOnB = b.client();
  Ref value = makeValue(onA, 5u << 20, 3);
  std::string token = value.share(60);
  Ref first = onB.restore(token);
  Ref second = alsoOnB.restore(token);
  CHECK(first.info().id.serial == second.info().id.serial);
  CHECK(refstore::testing::checkPattern(first.view(20).data(), 5u << 20, 3));
  CHECK(refstore::testing::checkPattern(second.view(20).data(), 5u << 20, 3));
  Stats onBStats = onB.stats();
  CHECK(onBStats.proxies == 1);
  CHECK(onBStats.pullsTotal == 1);
  CHECK(onBStats.bytesPulledTotal == 5u << 20);
  CHECK(eventually([&]() { return onA.stats().remoteHolders == 1; }, 10));
  // The listing on the owner names the peer; on the reader, the owner.
  bool peerListed = false;
  for (auto& row: onA.list()) {
    for (auto& h: row.holders) peerListed |= h.peerOrigin != 0;
  }
  CHECK(peerListed);
  auto rows = onB.list();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].info.state == "remote");
  CHECK(rows[0].ownerAddress == a.address());
  CHECK(rows[0].bytesLocal);
  auto peers = onB.peers();
  REQUIRE(peers.size() == 1);
  CHECK(peers[0].address == a.address());
  CHECK(peers[0].state == "up");
  CHECK(peers[0].heldFromPeer == 1);
  CHECK(peers[0].bytesPulled == 5u << 20);
}

TEST_CASE("share of a proxy names the owner, and a third host restores it directly") {
  Host a(2), b(3), c(4);
  Client onA = a.client(), onB = b.client(), onC = c.client();
  Ref value = onA.put("owned by A", 10);
  Ref onBRef = onB.restore(value.share(60));
  std::string again = onBRef.share(60);
  CHECK(again.find("@" + a.address()) != std::string::npos);
  Ref onCRef = onC.restore(again);
  CHECK(text(onCRef.readAll(10)) == "owned by A");
  CHECK(onC.peers().size() == 1);  // C talked to A only, not through B
  CHECK(eventually([&]() { return onA.stats().remoteHolders == 2; }, 10));
}

TEST_CASE("when the last reference anywhere goes, every host is back to nothing") {
  Host a(2), b(3), c(4);
  Client onA = a.client(), onB = b.client(), onC = c.client();
  Stats aBefore = onA.stats();
  {
    std::optional<Ref> value(makeValue(onA, 3u << 20, 9));
    std::string token = value->share(60, 2);
    Ref onBRef = onB.restore(token);
    Ref onCRef = onC.restore(token);
    CHECK(onBRef.view(20).size() == 3u << 20);
    CHECK(onCRef.readAll(20).size() == 3u << 20);
    value.reset();
    CHECK(onA.stats().objects == 1);  // B and C still hold it
  }
  CHECK(eventually([&]() { return idle(onA) && idle(onB) && idle(onC); }, 10));
  CHECK(onA.stats().bytesUsed == aBefore.bytesUsed);
  CHECK(onB.stats().proxyBytes == 0);
}

TEST_CASE("promises across hosts: a reader on B sees A's value, rejection, or broken promise") {
  Host a(2), b(3);
  Client onA = a.client(), onB = b.client();
  {
    Promise p = onA.promise();
    Ref reader = onB.restore(p.ref.share(60));
    CHECK(codeOf([&]() { reader.whenReady(0.3); }) == ErrorCode::TIMEOUT);
    p.fulfiller.fulfill("settled on A", 12);
    CHECK(text(reader.readAll(10)) == "settled on A");
  }
  {
    Promise p = onA.promise();
    Ref reader = onB.restore(p.ref.share(60));
    p.fulfiller.reject("no good");
    std::string message;
    CHECK(codeOf([&]() { reader.readAll(10); }, &message) == ErrorCode::REJECTED);
    CHECK(message.find("no good") != std::string::npos);
  }
  {
    std::optional<Promise> p(onA.promise());
    Ref reader = onB.restore(p->ref.share(60));
    p.reset();  // the Fulfiller goes unfulfilled
    CHECK(codeOf([&]() { reader.whenReady(10); }) == ErrorCode::BROKEN_PROMISE);
  }
}

TEST_CASE("nested references across hosts: children of a remote parent are proxies too") {
  Host a(2), b(3);
  Client onA = a.client(), onB = b.client();
  Ref left = onA.put("left", 4), right = onA.put("right", 5);
  Ref parent = onA.put("parent", 6, {&left, &right});
  Ref remote = onB.restore(parent.share(60));
  auto kids = remote.children();
  REQUIRE(kids.size() == 2);
  CHECK(text(kids[0].readAll(10)) == "left");
  CHECK(text(kids[1].readAll(10)) == "right");
  CHECK(onB.stats().proxies == 3);
}

// Found by tools/soak (seed 1): B's value holds one of A's; a client on A restores B's value
// and asks its children. The child is A's own object: A used to dial itself for it and fail
// with INVALID_ARGUMENT "... is this refstored itself".
TEST_CASE("a remote parent's child owned by the asking host comes back as its own object") {
  Host a(2), b(3);
  Client onA = a.client(), onB = b.client();
  Ref mine = onA.put("A's own", 7);
  Ref mineOnB = onB.restore(mine.share(60));
  Ref parent = onB.put("B's parent", 10, {&mineOnB});
  Ref parentOnA = onA.restore(parent.share(60));
  auto kids = parentOnA.children();
  REQUIRE(kids.size() == 1);
  CHECK(text(kids[0].readAll(10)) == "A's own");
  CHECK(onA.stats().proxies == 1);  // B's parent only: the child is A's own object
}

TEST_CASE("tokens of another host: forged, expired, unreachable and restarted owners") {
  Host a(2), b(3);
  Client onA = a.client(), onB = b.client();
  Ref value = onA.put("value", 5);
  std::string token = value.share(1);
  std::string forged = token;
  size_t secretAt = forged.find('@') - 1;
  forged[secretAt] = forged[secretAt] == '0' ? '1' : '0';
  CHECK(codeOf([&]() { onB.restore(forged); }) == ErrorCode::NOT_FOUND);
  sleep(2);
  CHECK(codeOf([&]() { onB.restore(token); }) == ErrorCode::EXPIRED);
  // A token of a daemon B does not know, naming an address where no daemon listens. (Its
  // origin is another's: a daemon is known by its origin, the address is where to find it.)
  std::string nowhere = value.share(60);
  nowhere = nowhere.substr(0, nowhere.find('@')) + "@127.0.0.9:1";
  nowhere[4] = nowhere[4] == 'f' ? 'e' : 'f';  // "rs2." then the owner's origin
  CHECK(codeOf([&]() { onB.restore(nowhere); }) == ErrorCode::UNREACHABLE);
  // A daemon that restarted on the same address has a new origin: its old tokens are refused.
  std::string old = value.share(60);
  int port = a.port;
  a.daemon.reset();
  Daemon restarted("128M", {"--tcp", "127.0.0.2:" + std::to_string(port), "--secret-file",
                            secretFile()});
  std::string message;
  CHECK(codeOf([&]() { onB.restore(old); }, &message) == ErrorCode::WRONG_STORE);
  CHECK(message.find("restarted") != std::string::npos);
}

TEST_CASE("a daemon without the cluster secret cannot use another's objects") {
  Host a(2);
  const char* tmp = getenv("TEST_TMPDIR");
  std::string wrong = std::string(tmp ? tmp : "/tmp") + "/wrong-secret";
  FILE* f = fopen(wrong.c_str(), "w");
  fputs("not-the-cluster-secret", f);
  fclose(f);
  int port = refstore::testing::freeTcpPort();
  Daemon outsider("64M", {"--tcp", "127.0.0.5:" + std::to_string(port), "--secret-file", wrong});
  Client onA = a.client(), onOutsider = Client::connect(outsider.socket());
  std::string token = onA.put("secret", 6).share(60);
  std::string message;
  CHECK(codeOf([&]() { onOutsider.restore(token); }, &message) == ErrorCode::UNAUTHENTICATED);
  CHECK(onA.stats().remoteHolders == 0);
}

TEST_CASE("a reader host killed: the owner frees what only it held once the grace period passes") {
  Host a(2, {"--peer-grace-ms", "2000"}), b(3);
  Client onA = a.client();
  Stats before = onA.stats();
  Client onB = b.client();
  std::optional<Ref> remote;
  {
    Ref value = makeValue(onA, 2u << 20, 5);
    remote = onB.restore(value.share(60, 1));  // a token of one use: no lease is left
    CHECK(remote->view(20).size() == 2u << 20);
  }  // A's own Ref is gone: only B's remote holder keeps the value
  CHECK(onA.stats().objects == 1);
  CHECK(onA.stats().remoteHolders == 1);
  CHECK(onA.stats().tokens == 0);
  b.daemon->kill(SIGKILL);
  CHECK(eventually([&]() { return onA.stats().detachedHolders == 1; }, 10));
  CHECK(onA.stats().objects == 1);  // kept through the grace period
  CHECK(eventually([&]() { return onA.stats().objects == 0; }, 10));
  CHECK(onA.stats().remoteHolders == 0);
  CHECK(onA.stats().bytesUsed == before.bytesUsed);
}

TEST_CASE("the owner killed: complete copies stay readable, the rest fails with OWNER_LOST") {
  Host a(2), b(3, {"--peer-grace-ms", "1000"});
  Client onA = a.client(), onB = b.client();
  Ref copied = onB.restore(onA.put("copied to B", 11).share(60));
  CHECK(text(copied.readAll(10)) == "copied to B");
  Ref notCopied = onB.restore(makeValue(onA, 1u << 20, 4).share(60));
  std::string token = onA.put("never restored", 14).share(60);
  a.daemon->kill(SIGKILL);
  CHECK(text(copied.readAll(10)) == "copied to B");
  CHECK(text(copied.readAll(10)) == "copied to B");
  CHECK(codeOf([&]() { notCopied.readAll(20); }) == ErrorCode::OWNER_LOST);
  CHECK(codeOf([&]() { copied.share(60); }) == ErrorCode::OWNER_LOST);
  CHECK(codeOf([&]() { onB.restore(token); }) == ErrorCode::UNREACHABLE);
  CHECK(eventually([&]() { return onB.stats().ownerLost == 2; }, 10));
}

// Children of a proxy are taken one by one; if one fails, the holders taken for the others
// must go too (they used to stay, held by no Ref, until the daemon stopped: tools/soak found
// proxies with a holder of a long-gone client).
TEST_CASE("children of a proxy: one child's owner lost, the others' holders are released") {
  Host a(2), b(3, {"--peer-grace-ms", "500"}), c(4);
  Client onA = a.client(), onB = b.client(), onC = c.client();
  Ref fromC = onB.restore(onC.put("C's", 3).share(60));
  Ref own = onB.put("B's", 3);
  Ref parent = onB.put("parent", 6, {&own, &fromC});
  Ref parentOnA = onA.restore(parent.share(60));
  c.daemon->kill(SIGKILL);
  CHECK(eventually([&]() { return onB.stats().ownerLost == 1; }, 20));
  ErrorCode code = codeOf([&]() { parentOnA.children(); });
  CHECK((code == ErrorCode::OWNER_LOST || code == ErrorCode::UNREACHABLE));
  // B's parent only: the proxy of B's own child, taken before the other child failed, is gone.
  CHECK(eventually([&]() { return onA.stats().proxies == 1 && onA.stats().objects == 1; }, 10));
}

// Found by tools/soak: two daemons that dial each other at once have two links, and a proxy's
// reference works only on the link it came through. The proxy used to be tied to whichever link
// was up last, and reading it failed with INVALID_ARGUMENT "not a Ref of this refstored".
TEST_CASE("two hosts restoring each other's tokens at once: both proxies read") {
  for (int attempt = 0; attempt < 5; attempt++) {
    Host a(2), b(3);
    std::string fromA, fromB;
    {
      Client onA = a.client(), onB = b.client();
      fromA = onA.put("A's value", 9).share(60);
      fromB = onB.put("B's value", 9).share(60);
      // The Refs above are gone with their clients; the tokens' leases keep the values.
    }
    std::string readOnA, readOnB;
    auto restoreAndRead = [](const Host& host, const std::string& token, std::string* out) {
      try {
        Client client = host.client();
        Ref ref = client.restore(token);
        *out = text(ref.readAll(10));
      } catch (const Error& e) {
        *out = e.what();  // the check below shows it
      }
    };
    std::thread first([&]() { restoreAndRead(a, fromB, &readOnA); });
    std::thread second([&]() { restoreAndRead(b, fromA, &readOnB); });
    first.join();
    second.join();
    CHECK(readOnA == "B's value");
    CHECK(readOnB == "A's value");
  }
}
