// refstored: the per-host object-store daemon. Runs in the foreground; see README.md.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/filesystem.h>
#include <kj/main.h>

#include "schema/socket_path.h"
#include "server/busy_poll.h"
#include "server/listener.h"
#include "server/log.h"
#include "server/metrics/metrics_service.h"
#include "server/object_store.h"
#include "server/prefaulter.h"
#include "server/shm/jemalloc_arena.h"
#include "server/size_parse.h"
#include "server/spill/file_backed.h"
#include "server/spill/spill_store.h"
#include "server/systemd/service_manager.h"
#include "server/token.h"
#include "server/uv_loop.h"

namespace refstore::server {
namespace {

uint64_t physicalMemory() { return uint64_t(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE); }

bool isLoopbackHost(kj::StringPtr hostPort) {
  return hostPort.startsWith("127.") || hostPort.startsWith("localhost:") ||
         hostPort.startsWith("[::1]:");
}

class RefstoredMain {
 public:
  explicit RefstoredMain(kj::ProcessContext& context)
      : context(context), socketPath(kj::str(defaultSocketPath().c_str())),
        capacity(physicalMemory() / 4) {}

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
    socketPath = kj::str(path);
    return true;
  }
  kj::MainBuilder::Validity setMemory(kj::StringPtr text) {
    KJ_IF_MAYBE(size, parseSize(text)) {
      if (*size < (1 << 20)) return "memory must be at least 1M";
      capacity = *size;
      return true;
    }
    return "expected a size such as 512M or 8G";
  }
  kj::MainBuilder::Validity setSegmentSize(kj::StringPtr text) {
    KJ_IF_MAYBE(size, parseSize(text)) {
      if (*size < (4 << 20)) return "segment size must be at least 4M";
      if ((*size & (*size - 1)) != 0) return "segment size must be a power of two";
      segmentSize = *size;
      return true;
    }
    return "expected a size such as 64M";
  }
  kj::MainBuilder::Validity setSpillDir(kj::StringPtr dir) {
    if (dir.size() == 0) return "the spill directory cannot be empty";
    spillDir = kj::str(dir);
    return true;
  }
  kj::MainBuilder::Validity setNoSpill() {
    noSpill = true;
    return true;
  }
  // Large values are only cheap when they land in an existing, pre-faulted segment: a value
  // bigger than half a segment gets a dedicated segment, created and faulted for it alone
  // (refbench: ~60 ms per 64 MiB). So segments grow with the capacity.
  static uint64_t defaultSegmentSize(uint64_t capacity) {
    uint64_t size = uint64_t(64) << 20;
    while (size * 2 <= capacity / 16 && size < (uint64_t(1) << 30)) size *= 2;
    return size;
  }
  static kj::String defaultSpillDir() {
    if (const char* state = getenv("XDG_STATE_HOME"); state && *state) {
      return kj::str(state, "/refstore/spill");
    }
    if (const char* home = getenv("HOME"); home && *home) {
      return kj::str(home, "/.local/state/refstore/spill");
    }
    return kj::str("/var/tmp/refstore-", getuid(), "/spill");
  }
  kj::MainBuilder::Validity setTcp(kj::StringPtr address) {
    tcpAddress = kj::str(address);
    return true;
  }
  kj::MainBuilder::Validity setMetrics(kj::StringPtr address) {
    if (address.findLast(':') == nullptr) return "--metrics expects host:port, e.g. 127.0.0.1:9470";
    metricsAddress = kj::str(address);
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
      secret = kj::mv(text);
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
                      "--busy-poll-us must be at most 1000000 (one second)", busyPollMicros);
  }
  kj::MainBuilder::Validity setHashDelay(kj::StringPtr text) {
    return parseCount(text, 3600000, "milliseconds",
                      "--hash-delay-ms must be at most 3600000 (one hour)", hashDelayMillis);
  }
  kj::MainBuilder::Validity setMaxTokens(kj::StringPtr text) {
    return parseCount(text, uint64_t(1) << 32, "tokens", "--max-tokens must be at most 2^32",
                      limits.maxTokens);
  }
  kj::MainBuilder::Validity setMaxTokensPerClient(kj::StringPtr text) {
    return parseCount(text, uint64_t(1) << 32, "tokens",
                      "--max-tokens-per-client must be at most 2^32", limits.maxTokensPerClient);
  }
  kj::MainBuilder::Validity setMaxNames(kj::StringPtr text) {
    return parseCount(text, uint64_t(1) << 32, "names", "--max-names must be at most 2^32",
                      limits.maxNames);
  }
  kj::MainBuilder::Validity setMaxClients(kj::StringPtr text) {
    uint64_t value = 0;
    auto valid = parseCount(text, 1000000, "connections", "--max-clients must be at most 1000000",
                            value);
    limits.maxClients = value;
    return valid;
  }
  kj::MainBuilder::Validity setHelloTimeout(kj::StringPtr text) {
    uint64_t millis = 0;
    auto valid = parseCount(text, 3600000, "milliseconds",
                            "--hello-timeout-ms must be at most 3600000 (one hour)", millis);
    limits.helloTimeout = millis * kj::MILLISECONDS;
    return valid;
  }
  kj::MainBuilder::Validity setStallTimeout(kj::StringPtr text) {
    uint64_t millis = 0;
    auto valid = parseCount(text, 3600000, "milliseconds",
                            "--stall-timeout-ms must be at most 3600000 (one hour)", millis);
    limits.stalledMessageTimeout = millis * kj::MILLISECONDS;
    return valid;
  }
  kj::MainBuilder::Validity setDebug() {
    setLogLevel(LogLevel::DEBUG);
    return true;
  }

  // Listens on `address`, or takes over the socket the service manager opened for it.
  static kj::Own<kj::ConnectionReceiver> listenTcp(kj::AsyncIoContext& io,
                                                   kj::Maybe<systemd::InheritedSocket>& inherited,
                                                   kj::StringPtr address) {
    KJ_IF_MAYBE(socket, inherited) {
      return io.lowLevelProvider->wrapListenSocketFd(kj::mv(socket->fd));
    }
    return io.provider->getNetwork().parseAddress(address).wait(io.waitScope)->listen();
  }

  void ensureSocketDirectory() {
    // Only the default /tmp/refstore-<uid> directory is ours to create (and must be private).
    auto slash = socketPath.findLast('/');
    KJ_IF_MAYBE(at, slash) {
      if (*at == 0) return;
      auto dir = kj::str(socketPath.slice(0, *at));
      if (mkdir(dir.cStr(), 0700) == 0) logInfo("created socket directory ", dir);
    }
  }

  // Every connection and Segment capability costs a descriptor: take all the kernel allows.
  static void raiseDescriptorLimit() {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
      limit.rlim_cur = limit.rlim_max;
      setrlimit(RLIMIT_NOFILE, &limit);
    }
  }

  kj::MainBuilder::Validity run() {
    signal(SIGPIPE, SIG_IGN);
    raiseDescriptorLimit();
    // A spill write past a file-size limit must fail with EFBIG (OUT_OF_DISK), not kill us.
    signal(SIGXFSZ, SIG_IGN);
    KJ_IF_MAYBE(address, tcpAddress) {
      if (!isLoopbackHost(*address) && secret == nullptr) {
        return "--tcp on a non-loopback address requires --secret-file";
      }
    }
    if (segmentSize == 0) segmentSize = defaultSegmentSize(capacity);
    // Under systemd: sockets it opened for us, and where to report readiness (server/systemd).
    kj::Own<systemd::ServiceManager> manager;
    KJ_IF_MAYBE(error, kj::runCatchingExceptions(
                           [&]() { manager = systemd::ServiceManager::fromEnvironment(); })) {
      return kj::str(error->getDescription());
    }
    auto& activated = manager->sockets;
    KJ_IF_MAYBE(inherited, activated.tcp) {
      if (tcpAddress != nullptr) return "--tcp and an inherited TCP socket: use one of them";
      tcpAddress = kj::str(inherited->address);
    }
    KJ_IF_MAYBE(inherited, activated.metrics) {
      if (metricsAddress != nullptr) return "--metrics and an inherited metrics socket: use one";
      metricsAddress = kj::str(inherited->address);
    }
    auto io = kj::setupAsyncIo();
    UvLoop uv(io.unixEventPort);
    // Signal handling before the socket exists: anyone who can connect can also stop us
    // gracefully, even while we are still starting.
    auto stopSignal = uv.onSignal({SIGTERM, SIGINT});
    // A second daemon on the same path fails here, before touching shared memory or the spill
    // directory. The socket itself is created last: accepting connections means ready.
    KJ_IF_MAYBE(inherited, activated.unixSocket) {
      socketPath = kj::str(inherited->address);  // the service manager owns this path
    } else {
      ensureSocketDirectory();
      requireSocketFree(socketPath);
    }
    shm::JemallocArena arena(shm::JemallocArena::Options{capacity, segmentSize});
    uint64_t origin = randomSecret().hi;
    BackgroundHasher hasher;  // before the store: its hashes must stop before the hasher does
    ObjectStore store(arena, io.provider->getTimer(), origin, MemoryPolicy(), limits);
    store.enableBackgroundHashing(hasher, uv, hashDelayMillis);
    kj::Maybe<kj::Own<SpillStore>> spillStore;
    kj::Maybe<kj::Own<FileBackedAllocator>> fileAllocator;
    if (!noSpill) {
      kj::String dir = kj::mv(spillDir).orDefault(defaultSpillDir());
      auto disk = kj::heap<SpillStore>(uv, SpillStore::Options{kj::str(dir)});
      auto files = kj::heap<FileBackedAllocator>(kj::str(dir), /*diskBudget=*/0);
      store.enableDisk(*disk, *files);
      logInfo("spilling to ", dir);
      spillStore = kj::mv(disk);
      fileAllocator = kj::mv(files);
    }
    SegmentPrefaulter prefaulter(uv, arena);
    store.setAllocationListener([&prefaulter]() { prefaulter.refill(); });
    prefaulter.refill();
    // Busy-polling pauses while threads need a core the loop would take: pool jobs (spills,
    // restores) and hashes of dead values that must stop before their memory is freed.
    BusyPoll busyPoll(io.waitScope, busyPollMicros * kj::MICROSECONDS, [&uv, &store]() {
      return uv.poolBusy() || store.cancelledHashesRunning();
    });
    Listener listener(store, busyPoll, io.provider->getTimer());

    kj::Maybe<kj::Own<metrics::MetricsService>> metricsService;
    KJ_IF_MAYBE(address, metricsAddress) {
      kj::Own<metrics::MetricsService> service;
      KJ_IF_MAYBE(error, kj::runCatchingExceptions([&]() {
        service = kj::heap<metrics::MetricsService>(
            io.provider->getTimer(), listenTcp(io, activated.metrics, *address),
            [&store](proto::Stats::Builder stats) { store.fillStats(stats); }, "0.1");
      })) {
        return kj::str("--metrics ", *address, ": ", error->getDescription());
      }
      listener.wrapTransports([&service = *service](capnp::MessageStream& transport) {
        return service.timeCalls(transport);
      });
      logInfo("metrics on http://", *address, "/metrics (port ", service->getPort(), ")");
      metricsService = kj::mv(service);
    }

    kj::Maybe<kj::Own<kj::ConnectionReceiver>> tcpReceiver;
    kj::Promise<void> tcpServing = nullptr;
    KJ_IF_MAYBE(address, tcpAddress) {
      auto receiver = listenTcp(io, activated.tcp, *address);
      logInfo("listening on tcp:", *address, " port ", receiver->getPort(),
              secret == nullptr ? " (loopback, no secret)" : " (cluster secret required)");
      kj::Maybe<kj::StringPtr> required;
      KJ_IF_MAYBE(s, secret) { required = s->asPtr(); }
      tcpServing = listener.serveTcp(*receiver, required).eagerlyEvaluate([](kj::Exception&& e) {
        logError("tcp listener failed: ", e.getDescription());
      });
      tcpReceiver = kj::mv(receiver);
    }

    auto unixReceiver = io.lowLevelProvider->wrapListenSocketFd(
        activated.unixSocket == nullptr ? listenUnixSocket(socketPath)
                                        : kj::mv(KJ_ASSERT_NONNULL(activated.unixSocket).fd));
    auto serving = listener.serveUnix(*unixReceiver).eagerlyEvaluate([](kj::Exception&& e) {
      logError("unix listener failed: ", e.getDescription());
    });
    logInfo("listening on unix:", socketPath, " (capacity ", formatSize(capacity),
            ", segments of ", formatSize(segmentSize), ", origin ", kj::hex(origin), ")");
    KJ_IF_MAYBE(service, metricsService) { (*service)->setHealth(metrics::Health::READY); }
    manager->ready(kj::str("serving on unix:", socketPath), io.provider->getTimer());

    int signum = stopSignal.wait(io.waitScope);
    logInfo("received ", strsignal(signum), ": shutting down (", store.clientCount(),
            " clients, ", store.table().size(), " objects)");
    manager->stopping(kj::str("received ", strsignal(signum)));
    KJ_IF_MAYBE(service, metricsService) { (*service)->setHealth(metrics::Health::STOPPING); }
    serving = nullptr;
    tcpServing = nullptr;
    if (activated.unixSocket == nullptr) unlink(socketPath.cStr());
    listener.closeAll();
    // Pool threads may still be reading shared memory for a spill: let them finish before
    // anything is torn down.
    uv.drainPool();
    logInfo("stopped");
    return true;
  }

  kj::ProcessContext& context;
  kj::String socketPath;
  uint64_t capacity;
  uint64_t segmentSize = 0;  // 0: defaultSegmentSize(capacity)
  kj::Maybe<kj::String> tcpAddress;
  kj::Maybe<kj::String> metricsAddress;
  kj::Maybe<kj::String> spillDir;
  bool noSpill = false;
  kj::Maybe<kj::String> secret;
  uint64_t busyPollMicros = 100;
  uint64_t hashDelayMillis = ObjectStore::kDefaultHashDelayMillis;
  Limits limits;
};

}  // namespace
}  // namespace refstore::server

KJ_MAIN(refstore::server::RefstoredMain)
