#include "tests/hosts.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tests/network_namespaces.h"
#include "tests/tcp_testing.h"

namespace refstore::testing {
namespace {

// In a namespace every host has the whole port space to itself: fixed ports, no races.
constexpr int NAMESPACE_DAEMON_PORT = 7400;
constexpr int NAMESPACE_PROXY_PORT = 7401;
constexpr int START_ATTEMPTS = 3;

std::string randomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (getrandom(raw.data(), bytes, 0) != ssize_t(bytes)) abort();
  std::string text;
  char digits[3];
  for (unsigned char c: raw) {
    snprintf(digits, sizeof(digits), "%02x", c);
    text += digits;
  }
  return text;
}

std::string tempDir() {
  const char* tmp = getenv("TEST_TMPDIR");
  return tmp ? tmp : "/tmp";
}

// A port nobody listens on at `ip` right now (bound, then released).
int freePortOn(const std::string& ip) {
  int fd = listenTcp(ip + ":0");
  std::string address = localAddress(fd);
  close(fd);
  return std::stoi(address.substr(address.rfind(':') + 1));
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

const char* networkName(Network network) {
  return network == Network::LOOPBACK ? "loopback" : "namespaces";
}

Network testNetwork() {
  const char* value = getenv("REFSTORE_TEST_NETWORK");
  std::string name = value ? value : "loopback";
  if (name == "loopback") return Network::LOOPBACK;
  if (name == "namespaces") return Network::NAMESPACES;
  fprintf(stderr, "REFSTORE_TEST_NETWORK=%s: expected \"loopback\" or \"namespaces\"\n",
          name.c_str());
  abort();
}

std::string namespacesUnavailable() { return NamespaceNetwork::unavailable(); }

// --- Host ---

FaultProxy& Host::proxy() {
  if (!faultProxy) throw std::logic_error("no fault proxy: set HostsOptions::proxies");
  return *faultProxy;
}

ConnectOptions Host::tcpClient() const {
  ConnectOptions options;
  options.address = "tcp:" + tcpHostPort;
  options.secret = secret;
  return options;
}

ConnectOptions Host::proxyClient() const {
  if (proxyHostPort.empty()) throw std::logic_error("no fault proxy: set HostsOptions::proxies");
  ConnectOptions options = tcpClient();
  options.address = "tcp:" + proxyHostPort;
  return options;
}

std::string Host::log() const {
  std::string text;
  for (size_t i = 0; i < logFiles.size(); i++) {
    if (logFiles.size() > 1) text += "--- " + hostName + ", daemon " + std::to_string(i) + " ---\n";
    text += readFile(logFiles[i]);
  }
  return text;
}

int Host::kill(int signal) { return current ? current->kill(signal) : -1; }

void Host::restart() {
  if (running()) current->stop();
  current.reset();
  start();
}

void Host::start() {
  DaemonOptions options = daemonOptions;
  std::vector<std::string> args = {"--tcp", tcpHostPort};
  if (!secretPath.empty()) args.insert(args.end(), {"--secret-file", secretPath});
  args.insert(args.end(), options.extraArgs.begin(), options.extraArgs.end());
  if (argsFor) {
    auto more = argsFor(*this);
    args.insert(args.end(), more.begin(), more.end());
  }
  options.extraArgs = args;
  options.logPath = logBase + "." + std::to_string(logFiles.size()) + ".log";
  logFiles.push_back(options.logPath);
  std::string failure;
  current = Daemon::tryStart(options, &failure);
  if (!current) {
    throw std::runtime_error("refstored of host " + hostName + " (" + tcpHostPort +
                             ") did not start:\n" + failure);
  }
}

std::vector<std::string> Host::commandPrefix() const {
  if (!namespaceNetwork) return {};
  return namespaceNetwork->commandPrefix(hostIndex);
}

Process Host::spawn(const std::string& program, const std::vector<std::string>& args) const {
  std::vector<std::string> argv = commandPrefix();
  if (argv.empty()) return testing::spawn(program, args);
  argv.push_back(program);
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::spawn(argv[0], std::vector<std::string>(argv.begin() + 1, argv.end()));
}

void Host::enterNetwork() const {
  if (namespaceNetwork) namespaceNetwork->enter(hostIndex);
}

NamespaceNetwork& Host::namespaces() const {
  if (!namespaceNetwork) {
    throw std::logic_error("link control needs Network::NAMESPACES (on loopback, use the fault "
                           "proxies: HostsOptions::proxies)");
  }
  return *namespaceNetwork;
}

void Host::setLink(bool up) { namespaces().setLink(hostIndex, up); }

void Host::shape(uint64_t bitsPerSecond) { namespaces().shape(hostIndex, bitsPerSecond); }

void Host::dropTraffic(const Host& peer) { namespaces().dropTraffic(hostIndex, peer.hostIndex); }

void Host::dropAllTraffic() { namespaces().dropTraffic(hostIndex); }

void Host::allowTraffic() { namespaces().allowTraffic(hostIndex); }

// --- Hosts ---

Hosts::Hosts(size_t count): Hosts([count]() {
  HostsOptions options;
  options.count = count;
  return options;
}()) {}

Hosts::Hosts(HostsOptions options): networkKind(options.network) {
  std::string run = randomHex(4);
  if (networkKind == Network::NAMESPACES) {
    std::string why = namespacesUnavailable();
    if (!why.empty()) throw std::runtime_error("network namespaces are unavailable: " + why);
    namespaceNetwork = std::make_unique<NamespaceNetwork>(options.count);
  }
  std::string secret;
  if (options.secret) {
    secret = randomHex(16);
    secretPath = tempDir() + "/rst-secret-" + run;
    int fd = open(secretPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, secret.data(), secret.size()) != ssize_t(secret.size())) {
      throw std::runtime_error("cannot write " + secretPath);
    }
    close(fd);
  }
  for (size_t i = 0; i < options.count; i++) {
    auto host = std::unique_ptr<Host>(new Host());
    host->hostIndex = i;
    host->hostName = "h" + std::to_string(i);
    host->namespaceNetwork = namespaceNetwork.get();
    host->namespaceName = namespaceNetwork ? namespaceNetwork->name(i) : "";
    host->hostIp =
        namespaceNetwork ? namespaceNetwork->ip(i) : "127.0.0." + std::to_string(i + 2);
    host->secret = secret;
    host->secretPath = secretPath;
    host->socketPath = "/tmp/rst-" + run + "-" + host->hostName + ".sock";
    host->logBase = tempDir() + "/refstored-" + run + "-" + host->hostName;
    host->spillPath = host->logBase + ".spill";
    host->argsFor = options.argsFor;
    host->daemonOptions.memory = options.memory;
    host->daemonOptions.extraArgs = options.extraArgs;
    host->daemonOptions.commandPrefix = host->commandPrefix();
    host->daemonOptions.socketPath = host->socketPath;
    host->daemonOptions.spillDir = host->spillPath;
    for (int attempt = 1;; attempt++) {
      int port = namespaceNetwork ? NAMESPACE_DAEMON_PORT : freePortOn(host->hostIp);
      host->tcpHostPort = host->hostIp + ":" + std::to_string(port);
      if (options.proxies) {
        FaultProxyOptions proxyOptions;
        proxyOptions.listen = host->hostIp + ":" +
                              std::to_string(namespaceNetwork ? NAMESPACE_PROXY_PORT : 0);
        proxyOptions.target = host->tcpHostPort;
        proxyOptions.networkNamespace = namespaceNetwork ? namespaceNetwork->path(i) : "";
        host->faultProxy.reset();
        host->faultProxy = std::make_unique<FaultProxy>(proxyOptions);
        host->proxyHostPort = host->faultProxy->address();
      }
      try {
        host->start();
        break;
      } catch (const std::runtime_error& e) {
        // A loopback port can be taken between choosing it and the daemon binding it.
        bool portTaken = std::string(e.what()).find("already in use") != std::string::npos;
        if (namespaceNetwork || !portTaken || attempt == START_ATTEMPTS) throw;
      }
    }
    hosts.push_back(std::move(host));
  }
}

std::string Hosts::logs() const {
  std::string text;
  for (auto& host: hosts) {
    text += "=== " + host->name() + " (" + host->tcpAddress() + ") ===\n" + host->log();
  }
  return text;
}

Hosts::~Hosts() {
  for (auto& host: hosts) host->current.reset();  // SIGTERM; an unclean exit fails the test
  for (auto& host: hosts) host->faultProxy.reset();
  namespaceNetwork.reset();
  if (!secretPath.empty()) unlink(secretPath.c_str());
}

}  // namespace refstore::testing
