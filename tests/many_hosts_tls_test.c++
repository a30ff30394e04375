// TLS between hosts (DESIGN.md "Many hosts", "Security"): real daemons with --tls-cert/--tls-key/
// --tls-ca on their TCP listeners, peer connections and data ports, certificates made at test
// start with `openssl` (tests/test_certificates.h). A daemon with a certificate of another CA, an
// expired one, or no TLS at all is refused (UNREACHABLE where a token is restored, a line in the
// refusing daemon's log); a bad TLS configuration stops refstored with one line and an exit code.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "client/cpp/refstore_client.h"
#include "tests/hosts.h"
#include "tests/tcp_testing.h"
#include "tests/test_certificates.h"

using namespace refstore;
using namespace refstore::testing;

namespace {

using Issuer = TestCertificates::Issuer;
using Validity = TestCertificates::Validity;

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

// Hosts whose daemons get the TLS flags `tlsFor` returns for each (none: no TLS).
HostsOptions withTls(size_t count, std::function<std::vector<std::string>(const Host&)> tlsFor) {
  HostsOptions options;
  options.count = count;
  options.argsFor = std::move(tlsFor);
  return options;
}

// The data port a daemon announces ("... (announced as ip:port)" in its log).
std::string dataPortOf(const Host& host) {
  std::string log = host.log();
  std::string marker = "(announced as ";
  size_t at = log.find(marker);
  REQUIRE_MESSAGE(at != std::string::npos, log);
  at += marker.size();
  return log.substr(at, log.find(')', at) - at);
}

// Runs `openssl s_client` on `host`'s network against `address` with these client files (no
// client certificate when `files` has none); true if the handshake, checking the server's
// certificate against `files.ca` and its IP, succeeded and the server accepted us.
bool opensslHandshake(const Host& host, const std::string& address, const TlsFiles& files) {
  std::vector<std::string> args = {"s_client", "-connect", address, "-CAfile", files.ca,
                                   "-verify_return_error", "-verify_ip",
                                   address.substr(0, address.rfind(':')), "-brief", "-tls1_2"};
  if (!files.cert.empty()) args.insert(args.end(), {"-cert", files.cert, "-key", files.key});
  // TLS 1.2: a server refuses a client certificate within the handshake (TLS 1.3 tells the
  // client after it, and s_client then exits 0 all the same).
  std::vector<std::string> argv = host.commandPrefix();
  std::string command;
  for (auto& word: argv) command += "'" + word + "' ";
  command += "timeout 20 openssl";
  for (auto& arg: args) command += " '" + arg + "'";
  command += " < /dev/null > /dev/null 2>&1";
  int status = system(command.c_str());
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

TEST_CASE("TLS: a token from A restored on B reads the same bytes, over TLS peer and data links") {
  TestCertificates pki;
  Hosts hosts(withTls(2, [&](const Host& h) { return pki.issue(h.ip()).flags(); }));
  INFO(hosts.logs());
  Client onA = Client::connect(hosts[0].socket()), onB = Client::connect(hosts[1].socket());
  std::string token = onA.put("made on A", 9).share(60);
  Ref small = onB.restore(token);
  CHECK(text(small.readAll(10)) == "made on A");
  constexpr uint64_t kSize = 20u << 20;  // several chunks of the data plane
  WriteBuffer buffer = onA.create(kSize);
  fillPattern(buffer.data(), kSize, 11);
  Ref large = onB.restore(buffer.seal().share(60));
  View view = large.view(20);
  CHECK(view.size() == kSize);
  CHECK(checkPattern(view.data(), kSize, 11));
  CHECK(onB.stats().bytesPulledTotal == kSize + 9);
  CHECK(hosts[0].log().find("TLS on the TCP listener") != std::string::npos);
  // Both ports of A speak TLS and check the client's certificate: a handshake with a
  // certificate of the CA succeeds, one without a certificate does not.
  TlsFiles client = pki.issue(hosts[1].ip());
  TlsFiles anonymous{"", "", pki.caFile()};
  for (std::string port: {hosts[0].tcpAddress(), dataPortOf(hosts[0])}) {
    CAPTURE(port);
    CHECK(opensslHandshake(hosts[1], port, client));
    CHECK_FALSE(opensslHandshake(hosts[1], port, anonymous));
    CHECK_FALSE(opensslHandshake(hosts[1], port, pki.issue(hosts[1].ip(), Issuer::OTHER_CA)));
  }
}

TEST_CASE("TLS: a reader relays its copy to another over TLS too") {
  TestCertificates pki;
  Hosts hosts(withTls(3, [&](const Host& h) { return pki.issue(h.ip()).flags(); }));
  INFO(hosts.logs());
  Client onA = Client::connect(hosts[0].socket()), onB = Client::connect(hosts[1].socket()),
         onC = Client::connect(hosts[2].socket());
  constexpr uint64_t kSize = 12u << 20;  // large enough to be relayed (8 MiB)
  WriteBuffer buffer = onA.create(kSize);
  fillPattern(buffer.data(), kSize, 12);
  std::string token = buffer.seal().share(60);
  Ref onHostB = onB.restore(token);
  CHECK(checkPattern(onHostB.view(20).data(), kSize, 12));
  Ref onHostC = onC.restore(token);
  CHECK(checkPattern(onHostC.view(20).data(), kSize, 12));
  CHECK(onA.stats().bytesServedTotal == kSize);  // to B only
  CHECK(onB.stats().bytesServedTotal == kSize);  // B to C, over B's TLS data port
  CHECK(onC.stats().bytesPulledTotal == kSize);
}

TEST_CASE("TLS: a daemon whose certificate another CA signed is refused, both ways") {
  TestCertificates pki;
  Hosts hosts(withTls(2, [&](const Host& h) {
    return pki.issue(h.ip(), h.index() == 1 ? Issuer::OTHER_CA : Issuer::CA).flags();
  }));
  INFO(hosts.logs());
  Client onA = Client::connect(hosts[0].socket()), onB = Client::connect(hosts[1].socket());
  std::string message;
  // B dials A: A refuses B's certificate.
  std::string fromA = onA.put("A's", 3).share(60);
  CHECK(codeOf([&]() { onB.restore(fromA); }, &message) == ErrorCode::UNREACHABLE);
  CHECK(message.find(hosts[0].tcpAddress()) != std::string::npos);
  CHECK(eventually([&]() { return hosts[0].log().find("refused a TLS connection") != std::string::npos; }, 10));
  // A dials B: A does not trust B's certificate.
  std::string fromB = onB.put("B's", 3).share(60);
  CHECK(codeOf([&]() { onA.restore(fromB); }, &message) == ErrorCode::UNREACHABLE);
  CHECK(message.find("certificate") != std::string::npos);
  CHECK(onA.stats().remoteHolders == 0);
  CHECK(onB.stats().remoteHolders == 0);
  CHECK(onA.stats().proxies == 0);
  CHECK(onB.stats().proxies == 0);
}

TEST_CASE("TLS: an expired certificate is refused, both ways") {
  TestCertificates pki;
  Hosts hosts(withTls(2, [&](const Host& h) {
    return pki.issue(h.ip(), Issuer::CA, h.index() == 1 ? Validity::EXPIRED : Validity::CURRENT)
        .flags();
  }));
  INFO(hosts.logs());
  Client onA = Client::connect(hosts[0].socket()), onB = Client::connect(hosts[1].socket());
  std::string message;
  CHECK(codeOf([&]() { onB.restore(onA.put("A's", 3).share(60)); }) == ErrorCode::UNREACHABLE);
  CHECK(eventually([&]() { return hosts[0].log().find("refused a TLS connection") != std::string::npos; }, 10));
  CHECK(codeOf([&]() { onA.restore(onB.put("B's", 3).share(60)); }, &message) ==
        ErrorCode::UNREACHABLE);
  CHECK(message.find("certificate verify failed") != std::string::npos);
  CHECK(onA.stats().remoteHolders + onB.stats().remoteHolders == 0);
}

TEST_CASE("TLS: a daemon without TLS and one with it do not talk, either way") {
  TestCertificates pki;
  Hosts hosts(withTls(2, [&](const Host& h) {
    return h.index() == 0 ? pki.issue(h.ip()).flags() : std::vector<std::string>{};
  }));
  INFO(hosts.logs());
  Client onA = Client::connect(hosts[0].socket()), onB = Client::connect(hosts[1].socket());
  // B (plain) dials A (TLS): A reads no TLS handshake.
  CHECK(codeOf([&]() { onB.restore(onA.put("A's", 3).share(60)); }) == ErrorCode::UNREACHABLE);
  CHECK(eventually([&]() { return hosts[0].log().find("refused a TLS connection") != std::string::npos; }, 10));
  // A (TLS) dials B (plain): B's Cap'n Proto reads a TLS handshake and hangs up.
  CHECK(codeOf([&]() { onA.restore(onB.put("B's", 3).share(60)); }) == ErrorCode::UNREACHABLE);
  CHECK(onA.stats().remoteHolders + onB.stats().remoteHolders == 0);
  // The C++ client speaks no TLS: over TCP it is refused too (it must not hang or crash A).
  hosts[1].run([&]() {
    CHECK_THROWS_AS(Client::connect(hosts[0].tcpClient()).stats(), Error);
  });
  CHECK(hosts[0].running());
}

TEST_CASE("TLS: a certificate naming its IP only as an IP address is not accepted for it") {
  // kj-tls 0.9.2 checks a server's name with OpenSSL's host check, which matches DNS names (and
  // the common name) only: a daemon reached at an IP needs that IP as a DNS name in its
  // certificate too (README "TLS between hosts"). If this starts to pass through, kj checks IP
  // addresses: drop the DNS:<ip> from TestCertificates and this case.
  TestCertificates pki;
  Hosts hosts(withTls(2, [&](const Host& h) {
    return pki.issue(h.ip(), Issuer::CA, Validity::CURRENT, /*ipOnly=*/h.index() == 0).flags();
  }));
  INFO(hosts.logs());
  Client onA = Client::connect(hosts[0].socket()), onB = Client::connect(hosts[1].socket());
  std::string message;
  CHECK(codeOf([&]() { onB.restore(onA.put("A's", 3).share(60)); }, &message) ==
        ErrorCode::UNREACHABLE);
  CHECK(message.find("certificate verify failed") != std::string::npos);
  // B's certificate names B as a DNS name too: A reaches B.
  Ref fromB = onA.restore(onB.put("B's", 3).share(60));
  CHECK(text(fromB.readAll(10)) == "B's");
}

TEST_CASE("TLS: a connection that never finishes its handshake holds up nobody else") {
  TestCertificates pki;
  HostsOptions options = withTls(2, [&](const Host& h) { return pki.issue(h.ip()).flags(); });
  // Far longer than the test: the silent connections below stay open throughout.
  options.extraArgs = {"--hello-timeout-ms", "600000"};
  Hosts hosts(options);
  INFO(hosts.logs());
  Client onA = Client::connect(hosts[0].socket()), onB = Client::connect(hosts[1].socket());
  std::string dataPort = dataPortOf(hosts[0]);
  // From B's network: TCP connections to both of A's ports that say nothing.
  std::vector<int> silent = hosts[1].run([&]() {
    return std::vector<int>{connectTcp(hosts[0].tcpAddress()), connectTcp(dataPort)};
  });
  Ref fromA = onB.restore(onA.put("through", 7).share(60));
  CHECK(text(fromA.readAll(20)) == "through");
  for (int fd: silent) close(fd);
}

namespace {

// Runs refstored with `args` and returns its exit status and what it wrote to stderr.
std::pair<int, std::string> runRefstored(const std::vector<std::string>& args) {
  std::string command = "server/refstored --socket " + uniqueSocketPath() + " --no-spill";
  for (auto& arg: args) command += " '" + arg + "'";
  command += " 2>&1 > /dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
  return {pclose(pipe), output};
}

void writeText(const std::string& path, const std::string& text) {
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  fputs(text.c_str(), f);
  fclose(f);
}

}  // namespace

TEST_CASE("TLS configuration errors are one line naming the problem and an exit code") {
  TestCertificates pki;
  TlsFiles good = pki.issue("127.0.0.1"), other = pki.issue("127.0.0.1");
  std::string dir = pki.directory();
  std::string notPem = dir + "/not.pem", missing = dir + "/missing.pem";
  writeText(notPem, "this is not a certificate\n");
  std::string tcp = "127.0.0.1:" + std::to_string(freeTcpPort());
  struct Case {
    std::vector<std::string> args;
    std::string says;
  } cases[] = {
      {{"--tcp", tcp, "--tls-cert", good.cert}, "TLS needs all of --tls-cert, --tls-key and --tls-ca"},
      {{"--tcp", tcp, "--tls-cert", good.cert, "--tls-key", good.key},
       "TLS needs all of --tls-cert, --tls-key and --tls-ca"},
      {{"--tcp", tcp, "--tls-key", good.key, "--tls-ca", good.ca},
       "TLS needs all of --tls-cert, --tls-key and --tls-ca"},
      {{"--tls-cert", good.cert, "--tls-key", good.key, "--tls-ca", good.ca}, "need --tcp"},
      {{"--tcp", tcp, "--tls-cert", missing, "--tls-key", good.key, "--tls-ca", good.ca},
       "--tls-cert=" + missing + ": cannot read the file: it does not exist"},
      {{"--tcp", tcp, "--tls-cert", dir, "--tls-key", good.key, "--tls-ca", good.ca},
       "--tls-cert=" + dir + ": cannot read the file: Is a directory"},
      {{"--tcp", tcp, "--tls-cert", good.cert, "--tls-key", missing, "--tls-ca", good.ca},
       "--tls-key=" + missing + ": cannot read the file: it does not exist"},
      {{"--tcp", tcp, "--tls-cert", good.cert, "--tls-key", good.key, "--tls-ca", missing},
       "--tls-ca=" + missing + ": cannot read the file: it does not exist"},
      {{"--tcp", tcp, "--tls-cert", notPem, "--tls-key", good.key, "--tls-ca", good.ca},
       "--tls-cert=" + notPem + ": the file holds no PEM certificate"},
      {{"--tcp", tcp, "--tls-cert", good.cert, "--tls-key", notPem, "--tls-ca", good.ca},
       "--tls-key=" + notPem + ": the file holds no PEM private key"},
      {{"--tcp", tcp, "--tls-cert", good.cert, "--tls-key", good.cert, "--tls-ca", good.ca},
       "--tls-key=" + good.cert + ": the file holds no PEM private key"},
      {{"--tcp", tcp, "--tls-cert", good.cert, "--tls-key", good.key, "--tls-ca", notPem},
       "--tls-ca=" + notPem + ": the file holds no PEM certificate"},
      {{"--tcp", tcp, "--tls-cert", good.cert, "--tls-key", other.key, "--tls-ca", good.ca},
       "--tls-key: the key does not match the certificate of --tls-cert"},
  };
  for (auto& c: cases) {
    std::string shown;
    for (auto& arg: c.args) shown += arg + " ";
    auto [status, output] = runRefstored(c.args);
    CAPTURE(shown);
    CAPTURE(output);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) != 0);
    CHECK(output.find(c.says) != std::string::npos);
    CHECK(output.find("stack:") == std::string::npos);
    CHECK(output.find("Uncaught exception") == std::string::npos);
    // One line, naming the problem, then at most KJ's "Try --help" hint.
    size_t lines = std::count(output.begin(), output.end(), '\n');
    CHECK(lines >= 1);
    CHECK(lines <= 2);
    if (lines == 2) CHECK(output.find("--help") > output.find('\n'));
  }
}
