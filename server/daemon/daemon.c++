#include "server/daemon/daemon.h"

#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kj/async-unix.h>

#include "server/net/tls_receiver.h"
#include "server/net/unix_socket.h"
#include "server/rpc/wire.h"
#include "server/runtime/log.h"
#include "server/runtime/size_parse.h"
#include "server/store/token.h"

namespace refstore::server {
namespace {

// Every connection and Segment capability costs a descriptor: take all the kernel allows.
void raiseDescriptorLimit() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Only the default /tmp/refstore-<uid> directory is ours to create (and must be private).
void ensureSocketDirectory(kj::StringPtr socketPath) {
  KJ_IF_MAYBE(at, socketPath.findLast('/')) {
    if (*at == 0) return;
    auto dir = kj::str(socketPath.slice(0, *at));
    if (mkdir(dir.cStr(), 0700) == 0) logInfo("created socket directory ", dir);
  }
}

// Runs `start`; a failure is rethrown as one line saying which option it was about.
template <typename Start>
void starting(kj::StringPtr option, Start&& start) {
  KJ_IF_MAYBE(e, kj::runCatchingExceptions(kj::fwd<Start>(start))) {
    kj::throwFatalException(kj::Exception(e->getType(), __FILE__, __LINE__,
                                          kj::str(option, ": ", e->getDescription())));
  }
}

}  // namespace

Daemon::Daemon(DaemonOptions optionsIn)
    : options(kj::mv(optionsIn)),
      manager(systemd::ServiceManager::fromEnvironment()),
      io(kj::setupAsyncIo()),
      uv(io.unixEventPort),
      stopSignal(uv.onSignal({SIGTERM, SIGINT})) {
  signal(SIGPIPE, SIG_IGN);
  // A spill write past a file-size limit must fail with EFBIG (OUT_OF_DISK), not kill us.
  signal(SIGXFSZ, SIG_IGN);
  raiseDescriptorLimit();
  auto& activated = manager->sockets;
  KJ_IF_MAYBE(inherited, activated.tcp) {
    KJ_REQUIRE(options.tcpAddress == nullptr, "--tcp and an inherited TCP socket: use one of them");
    options.tcpAddress = kj::str(inherited->address);
  }
  KJ_IF_MAYBE(inherited, activated.metrics) {
    KJ_REQUIRE(options.metricsAddress == nullptr,
               "--metrics and an inherited metrics socket: use one of them");
    options.metricsAddress = kj::str(inherited->address);
  }
  // A second daemon on the same path fails here, before touching shared memory or the spill
  // directory. The socket itself is created last: accepting connections means ready.
  KJ_IF_MAYBE(inherited, activated.unixSocket) {
    options.socketPath = kj::str(inherited->address);  // the service manager owns this path
  } else {
    ensureSocketDirectory(options.socketPath);
    requireSocketFree(options.socketPath);
  }

  startTls();
  KJ_IF_MAYBE(address, options.tcpAddress) {
    starting(kj::str("--tcp ", *address), [&]() { bindTcp(*address); });
  }
  arena = kj::heap<shm::JemallocArena>(
      shm::JemallocArena::Options{options.capacity, options.effectiveSegmentSize()});
  origin = randomSecret().hi;
  hasher = kj::heap<BackgroundHasher>();
  if (!options.noSpill) {
    kj::String dir = options.effectiveSpillDir();
    spillStore = kj::heap<SpillStore>(uv, SpillStore::Options{kj::str(dir)});
    fileAllocator = kj::heap<FileBackedAllocator>(kj::str(dir), /*diskBudget=*/0);
    logInfo("spilling to ", dir);
  }
  prefaulter = kj::heap<SegmentPrefaulter>(uv, *arena);
  ObjectStore::Options storeOptions{*arena, io.provider->getTimer(), origin};
  storeOptions.limits = options.limits;
  KJ_IF_MAYBE(disk, spillStore) { storeOptions.spill = **disk; }
  KJ_IF_MAYBE(files, fileAllocator) { storeOptions.files = **files; }
  storeOptions.hashing = HashScheduler::Options{*hasher, uv, options.hashDelayMillis};
  storeOptions.afterAllocate = [this]() { prefaulter->refill(); };
  storeOptions.proxies = proxyDoor;
  storeOptions.advertise = kj::str(advertise);
  store = kj::heap<ObjectStore>(kj::mv(storeOptions));
  prefaulter->refill();
  services = kj::heap<RpcServices>(*store);
  // Busy-polling pauses while threads need a core the loop would take: pool jobs (spills,
  // restores) and hashes of dead values that must stop before their memory is freed.
  busyPoll = kj::heap<BusyPoll>(io.waitScope, options.busyPollMicros * kj::MICROSECONDS,
                                [this]() { return uv.poolBusy() || store->threadsNeedCpu(); });
  listener = kj::heap<Listener>(*services, *busyPoll, io.provider->getTimer());
  KJ_IF_MAYBE(address, options.metricsAddress) {
    starting(kj::str("--metrics ", *address), [&]() { startMetrics(*address); });
  }
  if (tcpReceiver != nullptr) {
    starting("--data", [&]() { startPeers(); });
    startTcp();
  }
  startUnix();
}

Daemon::~Daemon() noexcept(false) {}

kj::Own<kj::ConnectionReceiver> Daemon::listenTcp(kj::Maybe<systemd::InheritedSocket>& inherited,
                                                  kj::StringPtr address) {
  KJ_IF_MAYBE(socket, inherited) {
    return io.lowLevelProvider->wrapListenSocketFd(kj::mv(socket->fd));
  }
  return io.provider->getNetwork().parseAddress(address).wait(io.waitScope)->listen();
}

void Daemon::startMetrics(kj::StringPtr address) {
  auto service = kj::heap<metrics::MetricsService>(
      io.provider->getTimer(), listenTcp(manager->sockets.metrics, address),
      [this](proto::Stats::Builder stats) { fillStats(stats, store->stats()); }, "0.1");
  listener->wrapTransports([&service = *service](capnp::MessageStream& transport) {
    return service.timeCalls(transport);
  });
  logInfo("metrics on http://", address, "/metrics (port ", service->getPort(), ")");
  metrics = kj::mv(service);
}

void Daemon::startTls() {
  KJ_IF_MAYBE(cert, options.tlsCert) {
    keypair = kj::heap<kj::TlsKeypair>(kj::TlsKeypair{
        kj::TlsPrivateKey(KJ_ASSERT_NONNULL(options.tlsKey)), kj::TlsCertificate(*cert)});
    trusted = kj::heapArray<kj::TlsCertificate>({kj::TlsCertificate(KJ_ASSERT_NONNULL(options.tlsCa))});
    kj::TlsContext::Options tlsOptions;
    tlsOptions.useSystemTrustStore = false;
    tlsOptions.verifyClients = true;  // a peer (or client) without a valid certificate is refused
    tlsOptions.trustedCertificates = trusted;
    tlsOptions.defaultKeypair = *KJ_ASSERT_NONNULL(keypair);
    tls = kj::heap<kj::TlsContext>(tlsOptions);
    logInfo("TLS on the TCP listener and connections to other daemons");
  }
}

void Daemon::bindTcp(kj::StringPtr address) {
  auto receiver = listenTcp(manager->sockets.tcp, address);
  uint port = receiver->getPort();
  KJ_IF_MAYBE(context, tls) {
    receiver = kj::heap<TlsReceiver>(**context, kj::mv(receiver), io.provider->getTimer(),
                                     options.limits.helloTimeout, "tcp listener");
  }
  KJ_IF_MAYBE(chosen, options.advertise) {
    advertise = kj::str(*chosen);
  } else if (!isWildcardHost(address)) {
    advertise = kj::str(hostOf(address), ":", port);
  }
  logInfo("listening on tcp:", address, " port ", port,
          options.secret == nullptr ? " (loopback, no secret)" : " (cluster secret required)",
          advertise.size() > 0 ? kj::str(", other daemons reach it at ", advertise) : kj::str());
  tcpReceiver = kj::mv(receiver);
}

void Daemon::startTcp() {
  kj::Maybe<kj::StringPtr> required;
  KJ_IF_MAYBE(s, options.secret) { required = s->asPtr(); }
  auto& receiver = *KJ_ASSERT_NONNULL(tcpReceiver);
  tcpServing = listener->serveTcp(receiver, required).eagerlyEvaluate([](kj::Exception&& e) {
    logError("tcp listener failed: ", e.getDescription());
  });
}

void Daemon::startPeers() {
  kj::Timer& timer = io.provider->getTimer();
  auto& ticketBook = *tickets.emplace(kj::heap<dataplane::TicketBook>(*store, timer));
  // The data port: the --data address, else the TCP listener's host on any free port.
  kj::String dataListen = kj::str(KJ_ASSERT_NONNULL(options.tcpAddress));
  KJ_IF_MAYBE(chosen, options.dataAddress) {
    dataListen = kj::str(*chosen);
  } else {
    dataListen = kj::str(hostOf(dataListen), ":0");
  }
  auto port = io.provider->getNetwork().parseAddress(dataListen).wait(io.waitScope)->listen();
  kj::String dataAnnounced = kj::str(advertise.size() > 0 ? hostOf(advertise) : hostOf(dataListen),
                                     ":", port->getPort());
  KJ_IF_MAYBE(announced, options.dataAdvertise) { dataAnnounced = kj::str(*announced); }
  KJ_IF_MAYBE(context, tls) {
    port = kj::heap<TlsReceiver>(**context, kj::mv(port), timer, options.limits.helloTimeout,
                                 "data port");
  }
  PeerOptions peerOptions;
  peerOptions.origin = origin;
  peerOptions.advertise = kj::str(advertise);
  peerOptions.dataAddress = kj::str(dataAnnounced);
  KJ_IF_MAYBE(s, options.secret) { peerOptions.secret = kj::str(*s); }
  peerOptions.heartbeat = options.heartbeatMillis * kj::MILLISECONDS;
  peerOptions.timeout = options.peerTimeoutMillis * kj::MILLISECONDS;
  peerOptions.grace = options.peerGraceMillis * kj::MILLISECONDS;
  peerOptions.idle = options.peerIdleMillis * kj::MILLISECONDS;
  KJ_IF_MAYBE(context, tls) { peerOptions.tls = **context; }
  auto& directory = *peers.emplace(kj::heap<PeerDirectory>(
      *services, io.provider->getNetwork(), timer, *busyPoll, ticketBook, kj::mv(peerOptions)));
  auto& sender = *dataSender.emplace(kj::heap<dataplane::DataSender>(
      *store, ticketBook, timer,
      [&directory](gc::PeerId peer, uint64_t bytes) { directory.countServed(peer, bytes); }));
  kj::Maybe<kj::TlsContext&> dataTls;
  KJ_IF_MAYBE(context, tls) { dataTls = **context; }
  auto& receiver = *dataReceiver.emplace(
      kj::heap<dataplane::DataReceiver>(io.provider->getNetwork(), timer, dataTls));
  auto& objects = *remote.emplace(kj::heap<RemoteObjects>(*services, directory, receiver, timer));
  services->connectPeers(directory);
  services->connectRemote(objects);
  sender.setArrivingBytes(objects);  // relays copies still arriving
  proxyDoor.connect(objects);
  dataServing = sender.serve(*port).eagerlyEvaluate([](kj::Exception&& e) {
    logError("data port failed: ", e.getDescription());
  });
  logInfo("data port on ", dataListen, " (announced as ", dataAnnounced, ")");
  dataReceiverPort = kj::mv(port);
}

void Daemon::startUnix() {
  auto& inherited = manager->sockets.unixSocket;
  unixReceiver = io.lowLevelProvider->wrapListenSocketFd(
      inherited == nullptr ? listenUnixSocket(options.socketPath)
                           : kj::mv(KJ_ASSERT_NONNULL(inherited).fd));
  unixServing = listener->serveUnix(*unixReceiver).eagerlyEvaluate([](kj::Exception&& e) {
    logError("unix listener failed: ", e.getDescription());
  });
  logInfo("listening on unix:", options.socketPath, " (capacity ", formatSize(options.capacity),
          ", segments of ", formatSize(options.effectiveSegmentSize()), ", origin ",
          kj::hex(origin), ")");
}

void Daemon::run() {
  KJ_IF_MAYBE(service, metrics) { (*service)->setHealth(metrics::Health::READY); }
  manager->ready(kj::str("serving on unix:", options.socketPath), io.provider->getTimer());

  int signum = stopSignal.wait(io.waitScope);
  logInfo("received ", strsignal(signum), ": shutting down (", services->connectionCount(),
          " clients, ", store->table().size(), " objects)");
  manager->stopping(kj::str("received ", strsignal(signum)));
  KJ_IF_MAYBE(service, metrics) { (*service)->setHealth(metrics::Health::STOPPING); }
  unixServing = nullptr;
  tcpServing = nullptr;
  if (manager->sockets.unixSocket == nullptr) unlink(options.socketPath.cStr());
  listener->closeAll();
  // Pool threads may still be reading shared memory for a spill: let them finish before
  // anything is torn down.
  uv.drainPool();
  logInfo("stopped");
}

}  // namespace refstore::server
