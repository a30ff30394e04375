// Tests of the many-host test harness (tests/hosts.h): N refstored hosts start, each answers on
// its own TCP address from every host's network, restart in place, sit behind fault proxies,
// and leave nothing behind. Run on loopback (hosts_test) and, as root, in network namespaces
// (hosts_test_netns), where link control is tested as well ("namespaces only").
#include <doctest/doctest.h>

#include <dirent.h>
#include <stdio.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client/cpp/refstore_client.h"
#include "tests/hosts.h"
#include "tests/network_namespaces.h"
#include "tests/tcp_testing.h"

using namespace refstore;
using namespace refstore::testing;

namespace {

std::string text(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

bool exists(const std::string& path) {
  struct stat info;
  return lstat(path.c_str(), &info) == 0;
}

// Names in /run/netns that belong to the network `id`.
std::vector<std::string> namespacesOf(const std::string& id) {
  std::vector<std::string> found;
  for (auto& name: listDirectory("/run/netns")) {
    if (name.rfind("rst-" + id + "-", 0) == 0) found.push_back(name);
  }
  return found;
}

std::string readFile(const std::string& path) {
  std::string content;
  if (FILE* file = fopen(path.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), file)) > 0) content.append(buffer, n);
    fclose(file);
  }
  return content;
}

// Whether `pid` has exited (a zombie not yet reaped by whoever inherited it counts as exited).
bool processGone(pid_t pid) {
  if (kill(pid, 0) != 0) return true;
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

// A TCP probe that cannot succeed through a partition: short, since failure is expected (a
// healthy link answers a SYN in well under a millisecond, and the positive checks retry).
constexpr int UNREACHABLE_PROBE_MILLIS = 300;

}  // namespace

TEST_CASE("every host answers on its own TCP address, from every host's network") {
  Hosts hosts(3);
  std::set<std::string> ips, addresses, sockets, spillDirs;
  for (size_t i = 0; i < hosts.size(); i++) {
    ips.insert(hosts[i].ip());
    addresses.insert(hosts[i].tcpAddress());
    sockets.insert(hosts[i].socket());
    spillDirs.insert(hosts[i].spillDir());
    CHECK(hosts[i].tcpAddress().rfind(hosts[i].ip() + ":", 0) == 0);
  }
  CHECK(ips.size() == 3);
  CHECK(addresses.size() == 3);
  CHECK(sockets.size() == 3);
  CHECK(spillDirs.size() == 3);

  // From host j's network, store "j->i" on host i over TCP, under a name that pins it.
  for (size_t j = 0; j < hosts.size(); j++) {
    for (size_t i = 0; i < hosts.size(); i++) {
      hosts[j].run([&]() {
        Client client = Client::connect(hosts[i].tcpClient());
        std::string value = std::to_string(j) + "->" + std::to_string(i);
        client.put(value.data(), value.size()).saveAs("from-" + std::to_string(j));
      });
    }
  }
  // Each value is on the daemon it was sent to: ask each over its Unix socket.
  for (size_t i = 0; i < hosts.size(); i++) {
    Client local = Client::connect(hosts[i].socket());
    CHECK(local.stats().objects == 3);
    for (size_t j = 0; j < hosts.size(); j++) {
      Ref ref = local.lookup("from-" + std::to_string(j));
      CHECK(text(ref.readAll()) == std::to_string(j) + "->" + std::to_string(i));
    }
  }
}

TEST_CASE("a TCP client without the cluster secret is refused") {
  Hosts hosts(2);
  REQUIRE(!hosts.secretFile().empty());
  hosts[1].run([&]() {
    ConnectOptions options = hosts[0].tcpClient();
    options.secret = "";
    std::string code;
    try {
      Client client = Client::connect(options);
      client.stats();
    } catch (const Error& e) {
      code = errorCodeName(e.code());
    }
    CHECK(code == "UNAUTHENTICATED");
    // With it, the same address answers.
    CHECK(Client::connect(hosts[0].tcpClient()).stats().clients >= 1);
  });
}

TEST_CASE("a process spawned on a host uses that host's network") {
  Hosts hosts(2);
  // The source address of a connection from host 1 to host 0 tells which network it left from.
  std::string ip = hosts[0].tcpAddress().substr(0, hosts[0].tcpAddress().rfind(':'));
  std::string port = hosts[0].tcpAddress().substr(hosts[0].tcpAddress().rfind(':') + 1);
  Process probe = hosts[1].spawn(
      "/usr/bin/python3",
      {"-c", "import socket; s = socket.create_connection(('" + ip + "', " + port +
                 ")); print(s.getsockname()[0])"});
  std::string source = probe.readLine();
  int status = probe.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  if (hosts.network() == Network::NAMESPACES) {
    CHECK(source == hosts[1].ip());
  } else {
    CHECK(source.rfind("127.", 0) == 0);
  }
}

TEST_CASE("a killed host restarts on the same socket, spill directory and address") {
  Hosts hosts(2);
  Host& host = hosts[0];
  std::string address = host.tcpAddress();
  pid_t first = host.pid();
  {
    Client client = Client::connect(host.socket());
    client.put("x", 1).saveAs("before");
  }
  int status = host.kill(SIGKILL);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK_FALSE(host.running());
  hosts[1].run([&]() { CHECK_FALSE(reachable(address, 2000)); });

  host.restart();
  CHECK(host.running());
  CHECK(host.pid() != first);
  CHECK(host.tcpAddress() == address);
  hosts[1].run([&]() {
    Client client = Client::connect(host.tcpClient());
    CHECK(client.stats().objects == 0);  // a new daemon: the old one's values died with it
  });
  // The log keeps both daemons' output.
  std::string log = host.log();
  CHECK(log.find("daemon 0") != std::string::npos);
  CHECK(log.find("daemon 1") != std::string::npos);
}

TEST_CASE("argsFor gives each daemon its own arguments, knowing its addresses") {
  HostsOptions options;
  options.count = 2;
  options.proxies = true;
  std::vector<std::string> seen;
  options.argsFor = [&](const Host& host) {
    seen.push_back(host.name() + " " + host.tcpAddress() + " " + host.proxyAddress());
    return std::vector<std::string>{"--max-names", std::to_string(1 + host.index())};
  };
  Hosts hosts(options);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0] == "h0 " + hosts[0].tcpAddress() + " " + hosts[0].proxyAddress());
  CHECK(seen[1] == "h1 " + hosts[1].tcpAddress() + " " + hosts[1].proxyAddress());
  // Host 0 may keep one name, host 1 two.
  for (size_t i = 0; i < 2; i++) {
    Client client = Client::connect(hosts[i].socket());
    Ref ref = client.put("v", 1);
    std::string refused;
    for (size_t n = 0; n < 3 && refused.empty(); n++) {
      try {
        ref.saveAs("name-" + std::to_string(n));
      } catch (const Error& e) {
        refused = "after " + std::to_string(n);
      }
    }
    CHECK(refused == "after " + std::to_string(1 + i));
  }
}

TEST_CASE("a fault proxy in front of each host carries and cuts its TCP clients") {
  HostsOptions options;
  options.count = 2;
  options.proxies = true;
  Hosts hosts(options);
  CHECK(hosts[0].proxyAddress() != hosts[0].tcpAddress());
  hosts[1].run([&]() {
    Client client = Client::connect(hosts[0].proxyClient());
    Ref ref = client.put("through", 7);
    CHECK(text(ref.readAll()) == "through");
    auto counters = hosts[0].proxy().counters();
    CHECK(counters.connections == 1);
    CHECK(counters.open == 1);
    CHECK(counters.bytesToTarget > 7);
    CHECK(counters.bytesToClient > 7);

    hosts[0].proxy().cut();
    CHECK_THROWS_AS(client.stats(), Error);
    // A new client gets through again.
    CHECK(Client::connect(hosts[0].proxyClient()).stats().objects == 0);  // the value went
  });
  CHECK(hosts[1].proxy().counters().connections == 0);  // nobody dialed host 1
}

TEST_CASE("when the hosts go, nothing they made is left") {
  std::vector<std::string> files;
  std::vector<pid_t> pids;
  std::string id;
  {
    Hosts hosts(2);
    files.push_back(hosts.secretFile());
    for (size_t i = 0; i < hosts.size(); i++) {
      files.push_back(hosts[i].socket());
      pids.push_back(hosts[i].pid());
      CHECK(exists(hosts[i].socket()));
    }
    CHECK(exists(hosts.secretFile()));
    if (hosts.namespaces()) {
      id = hosts.namespaces()->id();
      CHECK(namespacesOf(id).size() == 3);  // two hosts and the switch
    }
  }
  for (auto& file: files) CHECK_MESSAGE(!exists(file), file);
  for (pid_t pid: pids) CHECK(processGone(pid));
  if (!id.empty()) {
    CHECK(namespacesOf(id).empty());
    CHECK_FALSE(exists("/tmp/rst-netns-" + id + ".lock"));
  }
}

TEST_SUITE("namespaces only") {

TEST_CASE("a link set down partitions a host; set up again, its connections carry on") {
  Hosts hosts(3);
  hosts[0].run([&]() {
    CHECK(reachable(hosts[1].tcpAddress(), 5000));
    Client client = Client::connect(hosts[1].tcpClient());
    Ref ref = client.put("kept", 4);

    hosts[1].setLink(false);
    CHECK_FALSE(reachable(hosts[1].tcpAddress(), UNREACHABLE_PROBE_MILLIS));
    CHECK(reachable(hosts[2].tcpAddress(), 5000));  // the others still reach each other

    hosts[1].setLink(true);
    CHECK(eventually([&]() { return reachable(hosts[1].tcpAddress(), 1000); }));
    // The connection made before the cut survived it (TCP retransmitted).
    CHECK(text(ref.readAll()) == "kept");
  });
  hosts[2].run([&]() { CHECK(reachable(hosts[1].tcpAddress(), 5000)); });
}

TEST_CASE("dropped packets isolate exactly the pair asked for, both ways") {
  Hosts hosts(3);
  hosts[0].dropTraffic(hosts[1]);
  hosts[0].run([&]() {
    CHECK_FALSE(reachable(hosts[1].tcpAddress(), UNREACHABLE_PROBE_MILLIS));
    CHECK(reachable(hosts[2].tcpAddress(), 5000));
  });
  hosts[1].run([&]() {
    CHECK_FALSE(reachable(hosts[0].tcpAddress(), UNREACHABLE_PROBE_MILLIS));
    CHECK(reachable(hosts[2].tcpAddress(), 5000));
  });
  hosts[0].allowTraffic();
  hosts[0].run([&]() { CHECK(reachable(hosts[1].tcpAddress(), 5000)); });

  hosts[2].dropAllTraffic();
  hosts[0].run([&]() {
    CHECK_FALSE(reachable(hosts[2].tcpAddress(), UNREACHABLE_PROBE_MILLIS));
    CHECK(reachable(hosts[1].tcpAddress(), 5000));
  });
  hosts[2].allowTraffic();
  hosts[1].run([&]() { CHECK(reachable(hosts[2].tcpAddress(), 5000)); });
}

TEST_CASE("a shaped link carries bytes no faster than its rate") {
  Hosts hosts(2);
  constexpr uint64_t BITS_PER_SECOND = 16'000'000;  // 2 MB/s
  constexpr size_t SIZE = 2'000'000;
  hosts[1].shape(BITS_PER_SECOND);
  int listener = hosts[1].run([&]() { return listenTcp(hosts[1].ip() + ":9000"); });
  std::string received;
  double seconds = 0;
  std::thread receiver([&]() {
    int fd = accept(listener, nullptr, nullptr);
    double start = monotonicSeconds();
    received = readUpTo(fd, SIZE);
    seconds = monotonicSeconds() - start;
    close(fd);
  });
  std::string data(SIZE, '\0');
  fillPattern(reinterpret_cast<uint8_t*>(data.data()), SIZE, 1);
  hosts[0].run([&]() {
    int fd = connectTcp(hosts[1].ip() + ":9000");
    CHECK(writeAll(fd, data));
    close(fd);
  });
  receiver.join();
  close(listener);
  CHECK(received == data);
  // Lower bound only: the bucket (tbf burst, 32 KiB here) may go at once, the rest at the rate.
  double floor = double(SIZE - (64 << 10)) / (BITS_PER_SECOND / 8);
  CHECK(seconds >= floor);
  MESSAGE("2 MB over a 16 Mbit/s link in " << seconds << " s (floor " << floor << " s)");
  hosts[1].shape(0);
}

TEST_CASE("a SIGTERM of the test removes its namespaces' names at once") {
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t child = fork();
  if (child == 0) {
    signal(SIGTERM, SIG_DFL);  // not doctest's reporting handler
    NamespaceNetwork network(2);
    std::string id = network.id() + "\n";
    if (write(ready[1], id.data(), id.size()) != ssize_t(id.size())) _exit(1);
    for (;;) pause();
  }
  close(ready[1]);
  std::string id;
  char c;
  while (read(ready[0], &c, 1) == 1 && c != '\n') id += c;
  close(ready[0]);
  REQUIRE(id.size() == 8);
  CHECK(namespacesOf(id).size() == 3);
  kill(child, SIGTERM);
  int status;
  waitpid(child, &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK(namespacesOf(id).empty());
  CHECK_FALSE(exists("/tmp/rst-netns-" + id + ".lock"));
}

TEST_CASE("namespaces of a SIGKILLed run are removed by the next run") {
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t child = fork();
  if (child == 0) {
    NamespaceNetwork network(1);
    // Something running inside, as a daemon would be.
    Process sleeper = spawn("/usr/bin/nsenter", {"--net=" + network.path(0), "--",
                                                 "/bin/sleep", "600"});
    // nsenter joins the namespace, then execs: once the process is `sleep`, it is inside.
    std::string comm = "/proc/" + std::to_string(sleeper.pid) + "/comm";
    if (!eventually([&]() { return readFile(comm) == "sleep\n"; })) _exit(1);
    std::string line = network.id() + " " + std::to_string(sleeper.pid) + "\n";
    if (write(ready[1], line.data(), line.size()) != ssize_t(line.size())) _exit(1);
    for (;;) pause();
  }
  close(ready[1]);
  std::string line;
  char c;
  while (read(ready[0], &c, 1) == 1 && c != '\n') line += c;
  close(ready[0]);
  std::string id = line.substr(0, line.find(' '));
  pid_t sleeper = std::stoi(line.substr(line.find(' ') + 1));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  CHECK(namespacesOf(id).size() == 2);  // SIGKILL cannot be caught: left behind
  CHECK_FALSE(processGone(sleeper));

  CHECK(NamespaceNetwork::removeStale() >= 2);
  CHECK(namespacesOf(id).empty());
  CHECK(eventually([&]() { return processGone(sleeper); }));
  CHECK_FALSE(exists("/tmp/rst-netns-" + id + ".lock"));
}

}  // TEST_SUITE("namespaces only")
