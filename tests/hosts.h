// Test support for many-host tests: N refstored "hosts" on one machine, each with its own Unix
// socket, spill directory, TCP address and (optionally) a fault proxy in front of it.
//
//   Hosts hosts(3);                                // network: $REFSTORE_TEST_NETWORK
//   Client local = Client::connect(hosts[0].socket());          // a client on host 0
//   hosts[1].run([&]() {                           // code on host 1's network
//     Client remote = Client::connect(hosts[0].tcpClient());   // host 0 over TCP
//   });
//   hosts[2].kill();  hosts[2].restart();          // SIGKILL, then the same host again
//   hosts[1].setLink(false);                       // partition (namespaces only)
//
// Two networks, the same test code:
// - LOOPBACK (everywhere): host i listens on 127.0.0.(i+2):<free port>. Linux routes all of
//   127/8 to lo, so no setup is needed; there is no link to cut, so use the fault proxies.
// - NAMESPACES (root only): host i's daemon runs in its own network namespace at
//   10.<a>.<b>.(i+1):7400 (tests/network_namespaces.h), behind a veth to a bridge; link control
//   (down, rate caps, dropped packets) works on top of the proxies. Sockets and spill directories
//   stay on the shared filesystem, so test clients anywhere reach daemons over Unix sockets;
//   TCP clients must be on a host's network: Host::run for code, Host::spawn for processes.
// BUILD: many_hosts_test (tests/defs.bzl) runs a test's cases in both networks.
#pragma once

#include <signal.h>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/cpp/refstore_client.h"
#include "tests/daemon.h"
#include "tests/fault_proxy.h"

namespace refstore::testing {

class NamespaceNetwork;
class Host;

enum class Network { LOOPBACK, NAMESPACES };
const char* networkName(Network network);  // "loopback", "namespaces"
// The network tests use unless told: $REFSTORE_TEST_NETWORK ("loopback", the default, or
// "namespaces"; anything else aborts with a message).
Network testNetwork();
// Why NAMESPACES cannot run here ("" when it can): not root, no `ip`, or `ip netns add` fails
// (a Bazel sandbox: tag the test "local").
std::string namespacesUnavailable();

struct HostsOptions {
  size_t count = 2;
  Network network = testNetwork();
  std::string memory = "64M";           // each daemon's --memory
  std::vector<std::string> extraArgs;   // passed to every daemon
  // More arguments per daemon, computed from its host (its addresses are set when this is
  // called), e.g. [](const Host& h) { return std::vector<std::string>{"--advertise",
  // h.proxyAddress()}; }. Also used again by Host::restart.
  std::function<std::vector<std::string>(const Host&)> argsFor;
  // Write a cluster secret to a file and pass --secret-file to every daemon (refstored requires
  // one for a non-loopback --tcp; tcpClient() presents it).
  bool secret = true;
  // Put a FaultProxy in front of every host: it listens on the host's proxyAddress() (in the
  // host's namespace, on its IP) and forwards to its tcpAddress().
  bool proxies = false;
};

class Host {
 public:
  size_t index() const { return hostIndex; }
  const std::string& name() const { return hostName; }  // "h0", "h1", ...
  const std::string& ip() const { return hostIp; }
  // "ip:port" the daemon's --tcp listens on.
  const std::string& tcpAddress() const { return tcpHostPort; }
  // "ip:port" of the fault proxy in front of it ("" without HostsOptions::proxies).
  const std::string& proxyAddress() const { return proxyHostPort; }
  FaultProxy& proxy();  // throws std::logic_error without HostsOptions::proxies
  // ConnectOptions for a TCP client of this daemon (address and the cluster secret), directly or
  // through the proxy. Use them on a host's network (run()).
  ConnectOptions tcpClient() const;
  ConnectOptions proxyClient() const;

  // The daemon of the moment (replaced by restart()). Its socket, spill directory and TCP
  // address stay the same across restarts.
  Daemon& daemon() { return *current; }
  const std::string& socket() const { return socketPath; }
  const std::string& spillDir() const { return spillPath; }
  const std::string& secretFile() const { return secretPath; }
  pid_t pid() const { return current ? current->pid() : -1; }
  bool running() { return current && current->alive(); }
  // What every daemon of this host wrote to stderr, the earliest first.
  std::string log() const;

  // Sends `signal` and waits for the daemon to exit (see Daemon::kill); returns its status.
  int kill(int signal = SIGKILL);
  // SIGTERM and wait; returns the exit status.
  int stop() { return kill(SIGTERM); }
  // Starts a new daemon on the same socket, spill directory, address and arguments (stopping
  // the running one first, with SIGTERM). It has a new origin, as a real restarted daemon.
  void restart();

  // Network: "" (loopback) or the host's namespace name.
  const std::string& networkNamespace() const { return namespaceName; }
  // Words that run a command on this host's network: {} on loopback, nsenter in namespaces.
  std::vector<std::string> commandPrefix() const;
  // Runs `program args...` (like spawn() in daemon.h: stdout piped) on this host's network.
  Process spawn(const std::string& program, const std::vector<std::string>& args) const;
  // Runs `function` on a new thread that uses this host's network, and returns its result (or
  // rethrows what it threw, test assertion failures included). A new thread in both networks,
  // so that code behaves the same: Clients made inside belong to that thread and must not
  // escape it.
  template <typename Function>
  auto run(Function&& function) const -> decltype(function());
  // Makes the calling thread use this host's network (nothing on loopback). For threads the
  // test makes itself.
  void enterNetwork() const;

  // Link control, NAMESPACES only (std::logic_error on loopback: use the proxies there).
  // A link set down is a partition: the host's packets go nowhere, nobody is told.
  void setLink(bool up);
  // Caps the host's link at `bitsPerSecond` each way (0: no cap).
  void shape(uint64_t bitsPerSecond);
  // Silently drops packets between this host and `peer` (or everyone), until allowTraffic().
  void dropTraffic(const Host& peer);
  void dropAllTraffic();
  void allowTraffic();

 private:
  friend class Hosts;
  Host() = default;
  void start();
  NamespaceNetwork& namespaces() const;

  size_t hostIndex = 0;
  std::string hostName, hostIp, tcpHostPort, proxyHostPort, namespaceName;
  std::string socketPath, spillPath, secretPath, secret, logBase;
  std::vector<std::string> logFiles;
  DaemonOptions daemonOptions;  // without the per-host arguments, which argsFor makes anew
  std::function<std::vector<std::string>(const Host&)> argsFor;
  NamespaceNetwork* namespaceNetwork = nullptr;  // null on loopback
  std::unique_ptr<FaultProxy> faultProxy;
  std::unique_ptr<Daemon> current;
};

class Hosts {
 public:
  // Starts every host's proxy and daemon. Fails the test (std::runtime_error) if NAMESPACES is
  // asked for where it is unavailable: many_hosts_test's main skips such runs before any case.
  explicit Hosts(HostsOptions options);
  explicit Hosts(size_t count = 2);  // default options otherwise
  ~Hosts();  // stops the daemons (a daemon that exits uncleanly fails the test), then removes
             // the proxies, namespaces and the secret file
  Hosts(const Hosts&) = delete;

  size_t size() const { return hosts.size(); }
  Host& operator[](size_t i) { return *hosts.at(i); }
  Network network() const { return networkKind; }
  const std::string& secretFile() const { return secretPath; }
  // Every host's log() under a header naming the host: for a failing test's report, e.g.
  // INFO(hosts.logs()) (doctest evaluates it only if something fails).
  std::string logs() const;
  // The namespaces (nullptr on loopback), for what Host does not wrap.
  NamespaceNetwork* namespaces() { return namespaceNetwork.get(); }

 private:
  Network networkKind;
  std::string secretPath;
  std::unique_ptr<NamespaceNetwork> namespaceNetwork;
  std::vector<std::unique_ptr<Host>> hosts;
};

// --- implementation of the template ---
template <typename Function>
auto Host::run(Function&& function) const -> decltype(function()) {
  using Result = decltype(function());
  std::exception_ptr failure;
  std::optional<std::conditional_t<std::is_void_v<Result>, bool, Result>> result;
  std::thread thread([&]() {
    try {
      enterNetwork();
      if constexpr (std::is_void_v<Result>) {
        function();
        result = true;
      } else {
        result.emplace(function());
      }
    } catch (...) {
      failure = std::current_exception();
    }
  });
  thread.join();
  if (failure) std::rethrow_exception(failure);
  if constexpr (!std::is_void_v<Result>) return std::move(*result);
}

}  // namespace refstore::testing
