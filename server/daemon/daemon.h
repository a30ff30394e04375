// Daemon: refstored built from its options, in one readable place. The members are its parts in
// the order they are built (and the reverse of the order they are torn down): the event loop and
// libuv, shared memory, the background hasher, disk, the store, the RPC services, busy polling,
// the listeners, metrics. main.c++ only parses flags into DaemonOptions.
#pragma once

#include <kj/async-io.h>

#include <kj/compat/tls.h>

#include "server/daemon/options.h"
#include "server/dataplane/data_receiver.h"
#include "server/dataplane/data_sender.h"
#include "server/dataplane/ticket_book.h"
#include "server/peer/peer_directory.h"
#include "server/remote/remote_objects.h"
#include "server/metrics/metrics_service.h"
#include "server/net/listener.h"
#include "server/rpc/services.h"
#include "server/runtime/busy_poll.h"
#include "server/runtime/uv_loop.h"
#include "server/shm/jemalloc_arena.h"
#include "server/spill/file_backed.h"
#include "server/spill/spill_store.h"
#include "server/store/background_hasher.h"
#include "server/store/object_store.h"
#include "server/store/prefaulter.h"
#include "server/systemd/service_manager.h"

namespace refstore::server {

class Daemon {
 public:
  // Builds the daemon; nothing listens yet. Throws on a problem found while starting -- another
  // daemon on the socket or the spill directory, an address that does not parse, no shared
  // memory -- with a description meant to be printed as one line.
  explicit Daemon(DaemonOptions options);
  ~Daemon() noexcept(false);
  KJ_DISALLOW_COPY(Daemon);

  // Accepts connections until SIGTERM or SIGINT, then shuts down gracefully (the socket file is
  // removed, every client disconnected, pool threads drained).
  void run();

 private:
  // Listens on `address`, or takes over the socket the service manager opened for it.
  kj::Own<kj::ConnectionReceiver> listenTcp(kj::Maybe<systemd::InheritedSocket>& inherited,
                                            kj::StringPtr address);
  void startTls();
  void bindTcp(kj::StringPtr address);  // before the store: tokens name the bound address
  void startMetrics(kj::StringPtr address);
  void startTcp();
  void startPeers();  // the daemons' side of the TCP listener: data port, peers, proxies
  void startUnix();

  DaemonOptions options;
  kj::Own<systemd::ServiceManager> manager;  // sockets it passed us; readiness
  kj::AsyncIoContext io;
  UvLoop uv;
  // Signal handling before the socket exists: anyone who can connect can also stop us
  // gracefully, even while we are still starting.
  kj::Promise<int> stopSignal;
  // TLS for the TCP listener and connections to other daemons, when configured.
  kj::Array<kj::TlsCertificate> trusted;
  kj::Maybe<kj::Own<kj::TlsKeypair>> keypair;
  kj::Maybe<kj::Own<kj::TlsContext>> tls;
  kj::Maybe<kj::Own<kj::ConnectionReceiver>> tcpReceiver;
  kj::String advertise;  // where other daemons reach this one ("" without --tcp)
  kj::Own<shm::JemallocArena> arena;
  uint64_t origin;
  kj::Own<BackgroundHasher> hasher;  // before the store: its hashes stop before the hasher does
  kj::Maybe<kj::Own<SpillStore>> spillStore;
  kj::Maybe<kj::Own<FileBackedAllocator>> fileAllocator;
  kj::Own<SegmentPrefaulter> prefaulter;
  ProxyDoorHandle proxyDoor;  // the store's door to RemoteObjects, connected once it exists
  kj::Own<ObjectStore> store;
  kj::Own<RpcServices> services;
  kj::Own<BusyPoll> busyPoll;
  kj::Own<Listener> listener;
  kj::Maybe<kj::Own<metrics::MetricsService>> metrics;
  // Many hosts (with --tcp).
  kj::Maybe<kj::Own<dataplane::TicketBook>> tickets;
  kj::Maybe<kj::Own<dataplane::DataSender>> dataSender;
  kj::Maybe<kj::Own<kj::ConnectionReceiver>> dataReceiverPort;
  kj::Maybe<kj::Own<dataplane::DataReceiver>> dataReceiver;
  kj::Maybe<kj::Own<PeerDirectory>> peers;
  kj::Maybe<kj::Own<RemoteObjects>> remote;
  kj::Promise<void> dataServing = nullptr;
  kj::Own<kj::ConnectionReceiver> unixReceiver;
  kj::Promise<void> tcpServing = nullptr;
  kj::Promise<void> unixServing = nullptr;
};

}  // namespace refstore::server
