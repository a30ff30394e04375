// refstored: the per-host object-store daemon. Parses its flags into DaemonOptions and runs a
// Daemon (server/daemon/) in the foreground; see README.md.
#include <stdlib.h>

#include <kj/filesystem.h>
#include <kj/main.h>

#include "server/daemon/daemon.h"
#include "server/daemon/tls_files.h"
#include "server/runtime/log.h"
#include "server/runtime/size_parse.h"

namespace refstore::server {
namespace {

class RefstoredMain {
 public:
  explicit RefstoredMain(kj::ProcessContext& context)
      : context(context), options(DaemonOptions::defaults()) {}

  kj::MainFunc getMain() {
    return kj::MainBuilder(context, "refstored 0.1",
                           "Per-host object store for immutable values, whose references are "
                           "Cap'n Proto capabilities. Runs in the foreground until SIGTERM/SIGINT.")
        .addOptionWithArg({'s', "socket"}, KJ_BIND_METHOD(*this, setSocket), "<path>",
                          "Unix socket to listen on (default: $REFSTORE_SOCKET, else "
                          "$XDG_RUNTIME_DIR/refstored.sock, else /tmp/refstore-<uid>/refstored.sock).")
        .addOptionWithArg({'m', "memory"}, KJ_BIND_METHOD(*this, setMemory), "<size>",
                          "Shared-memory capacity, e.g. 512M or 8G (default: a quarter of RAM).")
        .addOptionWithArg({"segment-size"}, KJ_BIND_METHOD(*this, setSegmentSize), "<size>",
                          "Size of each shared-memory segment, a power of two (default: "
                          "capacity/16 rounded down, between 64M and 1G).")
        .addOptionWithArg({"spill-dir"}, KJ_BIND_METHOD(*this, setSpillDir), "<dir>",
                          "Where objects spill when memory is full, and where values larger than "
                          "memory live (default: $XDG_STATE_HOME/refstore/spill, else "
                          "~/.local/state/refstore/spill, else /var/tmp/refstore-<uid>/spill).")
        .addOption({"no-spill"}, KJ_BIND_METHOD(*this, setNoSpill),
                   "Never use disk: requests that do not fit wait for memory, then fail.")
        .addOptionWithArg({"tcp"}, KJ_BIND_METHOD(*this, setTcp), "<host:port>",
                          "Also listen on TCP (copy path, no shared memory). Non-loopback "
                          "addresses require --secret-file.")
        .addOptionWithArg({"secret-file"}, KJ_BIND_METHOD(*this, setSecretFile), "<file>",
                          "Cluster secret TCP clients must present in Store.hello.")
        .addOptionWithArg({"busy-poll-us"}, KJ_BIND_METHOD(*this, setBusyPoll), "<us>",
                          "After client traffic, poll for more instead of sleeping for this many "
                          "microseconds (default 100; 0: never). Trades up to that much CPU per "
                          "burst for round trips without wakeups.")
        .addOptionWithArg({"hash-delay-ms"}, KJ_BIND_METHOD(*this, setHashDelay), "<ms>",
                          "Hash values over 1 MiB once they have lived this long (default 200), "
                          "or sooner when the hash is needed; values dropped before are never "
                          "hashed.")
        .addOptionWithArg({"max-tokens"}, KJ_BIND_METHOD(*this, setMaxTokens), "<n>",
                          "Live share tokens the daemon keeps at most (default 4194304); "
                          "Ref.share beyond fails with RESOURCE_EXHAUSTED.")
        .addOptionWithArg({"max-tokens-per-client"}, KJ_BIND_METHOD(*this, setMaxTokensPerClient),
                          "<n>", "Live share tokens one connection may have minted (default "
                          "1048576).")
        .addOptionWithArg({"max-names"}, KJ_BIND_METHOD(*this, setMaxNames), "<n>",
                          "Names the daemon keeps at most (default 1048576).")
        .addOptionWithArg({"max-clients"}, KJ_BIND_METHOD(*this, setMaxClients), "<n>",
                          "Open connections at most (default 4096); more are closed at once.")
        .addOptionWithArg({"hello-timeout-ms"}, KJ_BIND_METHOD(*this, setHelloTimeout), "<ms>",
                          "A TCP connection that must present the cluster secret is closed if it "
                          "has not within this long (default 10000).")
        .addOptionWithArg({"stall-timeout-ms"}, KJ_BIND_METHOD(*this, setStallTimeout), "<ms>",
                          "A connection that begins a message and sends nothing more for this "
                          "long is closed (default 60000).")
        .addOptionWithArg({"advertise"}, KJ_BIND_METHOD(*this, setAdvertise), "<host:port>",
                          "Where other daemons reach this one; tokens carry it (default: the "
                          "--tcp address, unless it is a wildcard).")
        .addOptionWithArg({"data"}, KJ_BIND_METHOD(*this, setData), "<host:port>",
                          "The data port other daemons copy values from (default: the --tcp "
                          "host, any free port).")
        .addOptionWithArg({"data-advertise"}, KJ_BIND_METHOD(*this, setDataAdvertise),
                          "<host:port>",
                          "Where other daemons reach the data port, if not at the advertised "
                          "host (behind NAT or a proxy).")
        .addOptionWithArg({"heartbeat-ms"}, KJ_BIND_METHOD(*this, setHeartbeat), "<ms>",
                          "Heartbeat period on connections to other daemons (default 1000).")
        .addOptionWithArg({"peer-timeout-ms"}, KJ_BIND_METHOD(*this, setPeerTimeout), "<ms>",
                          "A daemon silent this long is treated as disconnected (default 5000).")
        .addOptionWithArg({"peer-grace-ms"}, KJ_BIND_METHOD(*this, setPeerGrace), "<ms>",
                          "How long the references of a disconnected daemon are kept for it to "
                          "come back (default 15000).")
        .addOptionWithArg({"peer-idle-ms"}, KJ_BIND_METHOD(*this, setPeerIdle), "<ms>",
                          "Close a connection this daemon dialed once no reference has used it "
                          "for this long (default 30000; 0 never).")
        .addOptionWithArg({"tls-cert"}, KJ_BIND_METHOD(*this, setTlsCert), "<file>",
                          "TLS certificate (PEM) for the TCP listener and connections to other "
                          "daemons; with --tls-key and --tls-ca.")
        .addOptionWithArg({"tls-key"}, KJ_BIND_METHOD(*this, setTlsKey), "<file>",
                          "TLS private key (PEM).")
        .addOptionWithArg({"tls-ca"}, KJ_BIND_METHOD(*this, setTlsCa), "<file>",
                          "CA certificate (PEM) every peer's certificate must be signed by.")
        .addOptionWithArg({"metrics"}, KJ_BIND_METHOD(*this, setMetrics), "<host:port>",
                          "Serve Prometheus metrics (GET /metrics) and GET /healthz over HTTP "
                          "there (off by default; counters only, never data, ids or tokens).")
        .addOption({"debug"}, KJ_BIND_METHOD(*this, setDebug), "Log every connection and token expiry.")
        .callAfterParsing(KJ_BIND_METHOD(*this, run))
        .build();
  }

 private:
  kj::MainBuilder::Validity setSocket(kj::StringPtr path) {
    if (path.size() >= 108) return "socket path must be shorter than 108 bytes";
    options.socketPath = kj::str(path);
    return true;
  }
  kj::MainBuilder::Validity setMemory(kj::StringPtr text) {
    KJ_IF_MAYBE(size, parseSize(text)) {
      if (*size < (1 << 20)) return "memory must be at least 1M";
      options.capacity = *size;
      return true;
    }
    return "expected a size such as 512M or 8G";
  }
  kj::MainBuilder::Validity setSegmentSize(kj::StringPtr text) {
    KJ_IF_MAYBE(size, parseSize(text)) {
      if (*size < (4 << 20)) return "segment size must be at least 4M";
      if ((*size & (*size - 1)) != 0) return "segment size must be a power of two";
      options.segmentSize = *size;
      return true;
    }
    return "expected a size such as 64M";
  }
  kj::MainBuilder::Validity setSpillDir(kj::StringPtr dir) {
    if (dir.size() == 0) return "the spill directory cannot be empty";
    options.spillDir = kj::str(dir);
    return true;
  }
  kj::MainBuilder::Validity setNoSpill() {
    options.noSpill = true;
    return true;
  }
  kj::MainBuilder::Validity setTcp(kj::StringPtr address) {
    options.tcpAddress = kj::str(address);
    return true;
  }
  kj::MainBuilder::Validity setMetrics(kj::StringPtr address) {
    if (address.findLast(':') == nullptr) return "--metrics expects host:port, e.g. 127.0.0.1:9470";
    options.metricsAddress = kj::str(address);
    return true;
  }
  kj::MainBuilder::Validity setSecretFile(kj::StringPtr path) {
    auto fs = kj::newDiskFilesystem();
    auto file = fs->getRoot().tryOpenFile(fs->getCurrentPath().eval(path));
    KJ_IF_MAYBE(f, file) {
      auto text = (*f)->readAllText();
      while (text.size() > 0 && (text.endsWith("\n") || text.endsWith("\r"))) {
        text = kj::str(text.slice(0, text.size() - 1));
      }
      if (text.size() < 16) return "the secret must be at least 16 characters";
      options.secret = kj::mv(text);
      return true;
    }
    return "cannot read the secret file";
  }
  // A whole number in [0, max] into `out`, or why not (`unit` and `tooLarge` name it).
  static kj::MainBuilder::Validity parseCount(kj::StringPtr text, uint64_t max, const char* unit,
                                              const char* tooLarge, uint64_t& out) {
    char* end = nullptr;
    unsigned long long value = strtoull(text.cStr(), &end, 10);
    if (text.size() == 0 || *end != '\0' || text[0] == '-') {
      return kj::str("expected a number of ", unit);
    }
    if (value > max) return kj::str(tooLarge);
    out = value;
    return true;
  }
  kj::MainBuilder::Validity setBusyPoll(kj::StringPtr text) {
    return parseCount(text, 1000000, "microseconds",
                      "--busy-poll-us must be at most 1000000 (one second)",
                      options.busyPollMicros);
  }
  kj::MainBuilder::Validity setAdvertise(kj::StringPtr address) {
    if (address.findLast(':') == nullptr) return "--advertise expects host:port";
    options.advertise = kj::str(address);
    return true;
  }
  kj::MainBuilder::Validity setData(kj::StringPtr address) {
    if (address.findLast(':') == nullptr) return "--data expects host:port";
    options.dataAddress = kj::str(address);
    return true;
  }
  kj::MainBuilder::Validity setDataAdvertise(kj::StringPtr address) {
    if (address.findLast(':') == nullptr) return "--data-advertise expects host:port";
    options.dataAdvertise = kj::str(address);
    return true;
  }
  kj::MainBuilder::Validity setHeartbeat(kj::StringPtr text) {
    return parseCount(text, 600000, "milliseconds", "--heartbeat-ms must be at most 600000",
                      options.heartbeatMillis);
  }
  kj::MainBuilder::Validity setPeerTimeout(kj::StringPtr text) {
    return parseCount(text, 3600000, "milliseconds", "--peer-timeout-ms must be at most 3600000",
                      options.peerTimeoutMillis);
  }
  kj::MainBuilder::Validity setPeerGrace(kj::StringPtr text) {
    return parseCount(text, 86400000, "milliseconds", "--peer-grace-ms must be at most a day",
                      options.peerGraceMillis);
  }
  kj::MainBuilder::Validity setPeerIdle(kj::StringPtr text) {
    return parseCount(text, 86400000, "milliseconds", "--peer-idle-ms must be at most a day",
                      options.peerIdleMillis);
  }
  // The text of a PEM file holding what `holds` checks for (`what`, e.g. "PEM certificate"),
  // or why not. A directory or an unreadable file is a line of its own, not an exception.
  // (kj::MainBuilder puts the option and the path before the message.)
  static kj::MainBuilder::Validity readPem(kj::StringPtr path, kj::StringPtr what,
                                           bool (*holds)(kj::StringPtr),
                                           kj::Maybe<kj::String>& out) {
    kj::Maybe<kj::String> text;
    KJ_IF_MAYBE(error, kj::runCatchingExceptions([&]() {
      auto fs = kj::newDiskFilesystem();
      KJ_IF_MAYBE(file, fs->getRoot().tryOpenFile(fs->getCurrentPath().eval(path))) {
        text = (*file)->readAllText();
      }
    })) {
      // KJ says "pread(fd, ...): Is a directory": keep the system's reason.
      kj::StringPtr reason = error->getDescription();
      KJ_IF_MAYBE(colon, reason.findLast(':')) { reason = reason.slice(*colon + 1); }
      while (reason.startsWith(" ")) reason = reason.slice(1);
      return kj::str("cannot read the file: ", reason);
    }
    KJ_IF_MAYBE(pem, text) {
      if (!holds(*pem)) return kj::str("the file holds no ", what);
      out = kj::mv(*pem);
      return true;
    }
    return kj::str("cannot read the file: it does not exist");
  }
  kj::MainBuilder::Validity setTlsCert(kj::StringPtr path) {
    return readPem(path, "PEM certificate", holdsPemCertificate, options.tlsCert);
  }
  kj::MainBuilder::Validity setTlsKey(kj::StringPtr path) {
    return readPem(path, "PEM private key (unencrypted)", holdsPemPrivateKey, options.tlsKey);
  }
  kj::MainBuilder::Validity setTlsCa(kj::StringPtr path) {
    return readPem(path, "PEM certificate", holdsPemCertificate, options.tlsCa);
  }
  kj::MainBuilder::Validity setHashDelay(kj::StringPtr text) {
    return parseCount(text, 3600000, "milliseconds",
                      "--hash-delay-ms must be at most 3600000 (one hour)",
                      options.hashDelayMillis);
  }
  kj::MainBuilder::Validity setMaxTokens(kj::StringPtr text) {
    return parseCount(text, uint64_t(1) << 32, "tokens", "--max-tokens must be at most 2^32",
                      options.limits.maxTokens);
  }
  kj::MainBuilder::Validity setMaxTokensPerClient(kj::StringPtr text) {
    return parseCount(text, uint64_t(1) << 32, "tokens",
                      "--max-tokens-per-client must be at most 2^32", options.limits.maxTokensPerClient);
  }
  kj::MainBuilder::Validity setMaxNames(kj::StringPtr text) {
    return parseCount(text, uint64_t(1) << 32, "names", "--max-names must be at most 2^32",
                      options.limits.maxNames);
  }
  kj::MainBuilder::Validity setMaxClients(kj::StringPtr text) {
    uint64_t value = 0;
    auto valid = parseCount(text, 1000000, "connections", "--max-clients must be at most 1000000",
                            value);
    options.limits.maxClients = value;
    return valid;
  }
  kj::MainBuilder::Validity setHelloTimeout(kj::StringPtr text) {
    uint64_t millis = 0;
    auto valid = parseCount(text, 3600000, "milliseconds",
                            "--hello-timeout-ms must be at most 3600000 (one hour)", millis);
    options.limits.helloTimeout = millis * kj::MILLISECONDS;
    return valid;
  }
  kj::MainBuilder::Validity setStallTimeout(kj::StringPtr text) {
    uint64_t millis = 0;
    auto valid = parseCount(text, 3600000, "milliseconds",
                            "--stall-timeout-ms must be at most 3600000 (one hour)", millis);
    options.limits.stalledMessageTimeout = millis * kj::MILLISECONDS;
    return valid;
  }
  kj::MainBuilder::Validity setDebug() {
    setLogLevel(LogLevel::DEBUG);
    return true;
  }

  kj::MainBuilder::Validity run() {
    KJ_IF_MAYBE(problem, options.problem()) { return kj::mv(*problem); }
    KJ_IF_MAYBE(cert, options.tlsCert) {
      if (!keyMatchesCertificate(*cert, KJ_ASSERT_NONNULL(options.tlsKey))) {
        return "--tls-key: the key does not match the certificate of --tls-cert";
      }
    }
    // A problem found while starting (the socket or the spill directory taken by another daemon,
    // an address that does not parse, no shared memory) is one line and an exit code.
    kj::Own<Daemon> daemon;
    KJ_IF_MAYBE(error, kj::runCatchingExceptions([&]() {
      daemon = kj::heap<Daemon>(kj::mv(options));
    })) {
      return kj::str(error->getDescription());
    }
    daemon->run();
    return true;
  }

  kj::ProcessContext& context;
  DaemonOptions options;
};

}  // namespace
}  // namespace refstore::server

KJ_MAIN(refstore::server::RefstoredMain)
