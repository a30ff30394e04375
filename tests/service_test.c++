// refstored under a service manager, played by this test with real sockets and processes:
// readiness, stopping and watchdog notifications to $NOTIFY_SOCKET (sd_notify), and socket
// activation (listening sockets passed as fds 3, 4, ... with $LISTEN_FDS and a $LISTEN_PID set
// after fork, as systemd does), including a restart on the same socket while a client waits.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/cpp/refstore_client.h"
#include "server/metrics/text_format_check.h"
#include "tests/daemon.h"
#include "tests/http_get.h"

extern char** environ;

using namespace refstore;
using namespace refstore::testing;

namespace {

// A datagram socket standing in for systemd's notification socket.
struct NotifySocket {
  int fd = -1;
  std::string address;  // what $NOTIFY_SOCKET says

  explicit NotifySocket(bool abstract = false) {
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    std::string path = uniqueSocketPath("rst-notify");
    struct sockaddr_un un = {};
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, path.data(), path.size());
    socklen_t length = offsetof(struct sockaddr_un, sun_path) + path.size() + 1;
    if (abstract) {
      un.sun_path[0] = '\0';
      length--;
      address = "@" + path.substr(1);
    } else {
      address = path;
    }
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&un), length) == 0);
  }
  ~NotifySocket() {
    close(fd);
    if (address[0] == '/') unlink(address.c_str());
  }

  // The next notification; fails the test after 20 s without one.
  std::string next() {
    struct pollfd ready = {fd, POLLIN, 0};
    REQUIRE_MESSAGE(poll(&ready, 1, 20000) == 1, "no notification within 20 s");
    char buffer[4096];
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    REQUIRE(n > 0);
    return std::string(buffer, n);
  }
};

int listeningUnixSocket(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un un = {};
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path.data(), path.size());
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&un), sizeof(un)) == 0);
  REQUIRE(listen(fd, 16) == 0);
  return fd;
}

int boundUnixSocket(const std::string& path) {  // bound, not listening
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un un = {};
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path.data(), path.size());
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&un), sizeof(un)) == 0);
  return fd;
}

int listeningTcpSocket(int& port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in in = {};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof(in)) == 0);
  REQUIRE(listen(fd, 16) == 0);
  socklen_t length = sizeof(in);
  getsockname(fd, reinterpret_cast<sockaddr*>(&in), &length);
  port = ntohs(in.sin_port);
  return fd;
}

bool connectsAtOnce(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un un = {};
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path.data(), path.size());
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&un), sizeof(un)) == 0;
  close(fd);
  return ok;
}

bool isSocketFile(const std::string& path) {
  struct stat info;
  return lstat(path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// refstored started the way a service manager starts it: `fds` become 3, 4, ... and, when
// there are any, LISTEN_FDS is their count and LISTEN_PID the child's own pid (known only after
// fork). `listenPid` overrides that pid (to play a manager that meant another process).
struct ManagedDaemon {
  pid_t pid = -1;
  std::string logPath;

  ManagedDaemon(std::vector<std::string> args, std::vector<std::string> environment,
                std::vector<int> fds = {}, pid_t listenPid = 0) {
    const char* tmp = getenv("TEST_TMPDIR");
    logPath = std::string(tmp ? tmp : "/tmp") + "/managed-" + std::to_string(random()) + ".log";
    // Everything the child needs is prepared before fork: the test process has threads, so the
    // child may only make async-signal-safe calls.
    std::vector<std::string> argv = {"server/refstored"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> argp;
    for (auto& arg: argv) argp.push_back(const_cast<char*>(arg.c_str()));
    argp.push_back(nullptr);
    std::vector<std::string> env;
    for (char** e = environ; *e; e++) {
      std::string entry = *e;
      if (entry.rfind("LISTEN_", 0) != 0 && entry.rfind("NOTIFY_SOCKET=", 0) != 0) env.push_back(entry);
    }
    env.insert(env.end(), environment.begin(), environment.end());
    if (!fds.empty()) env.push_back("LISTEN_FDS=" + std::to_string(fds.size()));
    char listenPidEntry[32] = "LISTEN_PID=";
    std::vector<char*> envp;
    for (auto& entry: env) envp.push_back(const_cast<char*>(entry.c_str()));
    if (!fds.empty()) envp.push_back(listenPidEntry);
    envp.push_back(nullptr);
    int log = open(logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(log >= 0);

    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      pid_t target = listenPid != 0 ? listenPid : getpid();
      char digits[16];
      int n = 0;
      do {
        digits[n++] = char('0' + target % 10);
        target /= 10;
      } while (target > 0);
      char* out = listenPidEntry + strlen("LISTEN_PID=");
      while (n > 0) *out++ = digits[--n];
      *out = '\0';
      dup2(log, STDERR_FILENO);
      // Out of the way first (fds 3, 4, ... may be among them), then into place without
      // close-on-exec.
      std::vector<int> moved;
      for (int fd: fds) moved.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 64));
      for (size_t i = 0; i < moved.size(); i++) dup2(moved[i], 3 + int(i));
      execve(argp[0], argp.data(), envp.data());
      _exit(127);
    }
    close(log);
  }

  std::string log() const { return readFile(logPath); }

  // SIGTERM, then the exit status.
  int stop() {
    kill(pid, SIGTERM);
    return wait();
  }
  int wait() {
    int status = 0;
    waitpid(pid, &status, 0);
    pid = -1;
    return status;
  }
  ~ManagedDaemon() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

void putAndGet(const std::string& socket, uint64_t seed) {
  Client client = Client::connect(socket);
  CHECK(client.sharedMemory());
  std::vector<uint8_t> bytes(100000);
  fillPattern(bytes.data(), bytes.size(), seed);
  Ref ref = client.put(bytes.data(), bytes.size());
  View view = ref.view();
  CHECK(checkPattern(view.data(), view.size(), seed));
}

}  // namespace

TEST_CASE("READY=1 once the socket accepts, STOPPING=1 on SIGTERM") {
  NotifySocket manager;
  std::string socket = uniqueSocketPath();
  ManagedDaemon daemon({"--socket", socket, "--memory", "64M", "--no-spill"},
                       {"NOTIFY_SOCKET=" + manager.address});
  CHECK(manager.next() == "READY=1\nSTATUS=serving on unix:" + socket);
  CHECK(connectsAtOnce(socket));  // ready means ready: no retry needed
  putAndGet(socket, 1);
  kill(daemon.pid, SIGTERM);
  CHECK(manager.next() == "STOPPING=1\nSTATUS=received Terminated");
  int status = daemon.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("the watchdog is fed from the event loop; an @abstract NOTIFY_SOCKET works") {
  NotifySocket manager(/*abstract=*/true);
  std::string socket = uniqueSocketPath();
  ManagedDaemon daemon({"--socket", socket, "--memory", "64M", "--no-spill"},
                       {"NOTIFY_SOCKET=" + manager.address, "WATCHDOG_USEC=100000"});
  CHECK(manager.next().rfind("READY=1\n", 0) == 0);
  CHECK(manager.next() == "WATCHDOG=1");
  putAndGet(socket, 2);
  CHECK(manager.next() == "WATCHDOG=1");
  CHECK(daemon.stop() == 0);
}

TEST_CASE("an inherited Unix socket is served, kept on stop, and reused by the next daemon") {
  std::string socket = uniqueSocketPath(), unused = uniqueSocketPath();
  int listening = listeningUnixSocket(socket);
  {
    NotifySocket manager;
    ManagedDaemon daemon({"--socket", unused, "--memory", "64M", "--no-spill"},
                         {"NOTIFY_SOCKET=" + manager.address}, {listening});
    CHECK(manager.next() == "READY=1\nSTATUS=serving on unix:" + socket);
    putAndGet(socket, 3);
    CHECK_FALSE(isSocketFile(unused));  // --socket gives way to the inherited socket
    CHECK(daemon.stop() == 0);
    CHECK(daemon.log().find("listening on unix:" + socket) != std::string::npos);
  }
  // The service manager owns the path: it survives the daemon, and a client connecting now
  // waits in the backlog until the next daemon takes over the same socket.
  CHECK(isSocketFile(socket));
  bool served = false;
  std::thread early([&]() {
    putAndGet(socket, 4);
    served = true;
  });
  sleepMillis(200);
  CHECK_FALSE(served);
  ManagedDaemon next({"--memory", "64M", "--no-spill"}, {}, {listening});
  early.join();
  CHECK(served);
  CHECK(next.stop() == 0);
  close(listening);
  unlink(socket.c_str());
}

TEST_CASE("a TCP socket named metrics serves the metrics endpoint") {
  std::string socket = uniqueSocketPath();
  int port = 0;
  int unixFd = listeningUnixSocket(socket), tcpFd = listeningTcpSocket(port);
  NotifySocket manager;
  ManagedDaemon daemon({"--memory", "64M", "--no-spill"},
                       {"NOTIFY_SOCKET=" + manager.address,
                        "LISTEN_FDNAMES=refstored.socket:metrics"},
                       {unixFd, tcpFd});
  CHECK(manager.next().rfind("READY=1\n", 0) == 0);
  close(unixFd);
  close(tcpFd);
  auto health = httpGet(port, "/healthz");
  CHECK(health.status == 200);
  auto metrics = httpGet(port, "/metrics");
  CHECK(metrics.status == 200);
  auto report = refstore::server::metrics::checkTextFormat(metrics.body);
  CHECK_MESSAGE(report.ok(), report.describe());
  CHECK(daemon.stop() == 0);
  unlink(socket.c_str());
}

TEST_CASE("sockets meant for another process are not taken") {
  std::string inherited = uniqueSocketPath(), own = uniqueSocketPath();
  int listening = listeningUnixSocket(inherited);
  NotifySocket manager;
  ManagedDaemon daemon({"--socket", own, "--memory", "64M", "--no-spill"},
                       {"NOTIFY_SOCKET=" + manager.address}, {listening}, /*listenPid=*/1);
  CHECK(manager.next() == "READY=1\nSTATUS=serving on unix:" + own);
  putAndGet(own, 5);
  CHECK(daemon.stop() == 0);
  close(listening);
  unlink(inherited.c_str());
}

TEST_CASE("an inherited socket that does not listen is one clear error") {
  std::string path = uniqueSocketPath();
  int bound = boundUnixSocket(path);
  ManagedDaemon daemon({"--memory", "64M", "--no-spill"}, {}, {bound});
  int status = daemon.wait();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  std::string log = daemon.log();
  CHECK(log.find("socket activation: inherited fd 3 (" + path +
                 ") is not a listening stream socket (use ListenStream=)") != std::string::npos);
  CHECK(log.find("Uncaught") == std::string::npos);
  close(bound);
  unlink(path.c_str());
}
