// Tests for server/systemd/listen_fds.h. Each case runs in a forked child that places real
// sockets at fds 3, 4, ... and sets $LISTEN_* as a service manager would (fds 3+ of the test
// process itself are not ours to overwrite); the child reports what it found on a pipe.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include <kj/debug.h>

#include "server/systemd/listen_fds.h"

using namespace refstore::server::systemd;

namespace {

std::string socketPath() {
  std::random_device random;
  return "/tmp/rst-lfd-" + std::to_string(random()) + ".sock";
}

int unixSocket(const std::string& path, bool listening) {
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un un = {};
  un.sun_family = AF_UNIX;
  memcpy(un.sun_path, path.data(), path.size());
  if (bind(fd, reinterpret_cast<sockaddr*>(&un), sizeof(un)) != 0) _exit(90);
  if (listening && listen(fd, 8) != 0) _exit(91);
  return fd;
}

int tcpListener() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in in = {};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof(in)) != 0) _exit(92);
  if (listen(fd, 8) != 0) _exit(93);
  return fd;
}

// Forks; the child runs `body` and its returned text comes back here.
std::string inChild(std::function<std::string()> body) {
  int pipeFds[2];
  REQUIRE(pipe(pipeFds) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(pipeFds[0]);
    // Keep the report pipe clear of fds 3..9, which the cases fill with sockets.
    int report = fcntl(pipeFds[1], F_DUPFD_CLOEXEC, 20);
    std::string text;
    try {
      text = body();
    } catch (const kj::Exception& e) {
      text = std::string("error: ") + e.getDescription().cStr();
    }
    if (write(report, text.data(), text.size()) < 0) _exit(95);
    _exit(0);
  }
  close(pipeFds[1]);
  std::string text;
  char buffer[1024];
  for (ssize_t n; (n = read(pipeFds[0], buffer, sizeof(buffer))) > 0;) text.append(buffer, n);
  close(pipeFds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  return text;
}

// Moves `fds` to 3, 4, ... and sets the variables for this process.
void passAsActivated(const std::vector<int>& fds, const char* names, pid_t pid = getpid()) {
  for (size_t i = 0; i < fds.size(); i++) {
    if (dup2(fds[i], 3 + i) < 0) _exit(94);
  }
  setenv("LISTEN_PID", std::to_string(pid).c_str(), 1);
  setenv("LISTEN_FDS", std::to_string(fds.size()).c_str(), 1);
  if (names != nullptr) setenv("LISTEN_FDNAMES", names, 1);
}

}  // namespace

TEST_CASE("inherited Unix and TCP sockets are found, named, made close-on-exec") {
  std::string path = socketPath();
  auto text = inChild([&]() {
    int unixFd = unixSocket(path, true), tcpFd = tcpListener();
    passAsActivated({unixFd, tcpFd}, "refstored.socket:metrics");
    auto sockets = takeListenFds();
    std::string out = std::to_string(sockets.size());
    for (auto& s: sockets) {
      out += "|" + std::to_string(s.fd.get()) + " " + s.name.cStr() + " " +
             (s.family == AF_UNIX ? "unix " : "inet ") + s.address.cStr() +
             ((fcntl(s.fd.get(), F_GETFD) & FD_CLOEXEC) ? " cloexec" : " inheritable");
    }
    out += getenv("LISTEN_FDS") == nullptr && getenv("LISTEN_PID") == nullptr &&
                   getenv("LISTEN_FDNAMES") == nullptr
               ? "|unset"
               : "|still set";
    auto sorted = sortActivatedSockets(kj::mv(sockets));
    out += "|unix=" + std::string(KJ_ASSERT_NONNULL(sorted.unixSocket).address.cStr());
    out += sorted.tcp == nullptr ? "|no tcp" : "|tcp";
    out += "|metrics=" + std::string(KJ_ASSERT_NONNULL(sorted.metrics).name.cStr());
    return out;
  });
  unlink(path.c_str());
  CHECK(text.find("2|3 refstored.socket unix " + path + " cloexec|4 metrics inet 127.0.0.1:") == 0);
  CHECK(text.find(" cloexec|unset|unix=" + path + "|no tcp|metrics=metrics") != std::string::npos);
}

TEST_CASE("sockets meant for another process are left alone") {
  auto text = inChild([&]() {
    passAsActivated({tcpListener()}, nullptr, getpid() + 1);
    auto sockets = takeListenFds();
    bool stillOpen = fcntl(3, F_GETFD) >= 0;
    return std::to_string(sockets.size()) + (stillOpen ? " open" : " closed") +
           (getenv("LISTEN_FDS") == nullptr ? " unset" : " set");
  });
  CHECK(text == "0 open unset");
}

TEST_CASE("no LISTEN_FDS: nothing inherited") {
  auto text = inChild([&]() {
    unsetenv("LISTEN_FDS");
    setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
    return std::to_string(takeListenFds().size());
  });
  CHECK(text == "0");
}

TEST_CASE("a TCP socket without a name, and one more Unix socket") {
  std::string a = socketPath(), b = socketPath();
  auto text = inChild([&]() {
    std::string out;
    {
      passAsActivated({tcpListener()}, nullptr);
      auto sorted = sortActivatedSockets(takeListenFds());
      out = sorted.tcp != nullptr && sorted.metrics == nullptr ? "tcp" : "wrong";
    }
    passAsActivated({unixSocket(a, true), unixSocket(b, true)}, nullptr);
    try {
      sortActivatedSockets(takeListenFds());
    } catch (const kj::Exception& e) {
      out += std::string("|") + e.getDescription().cStr();
    }
    return out;
  });
  unlink(a.c_str());
  unlink(b.c_str());
  CHECK(text == "tcp|socket activation passed more than one Unix socket (" + b +
                    "); refstored serves one of each");
}

TEST_CASE("malformed variables and unusable fds are clear errors") {
  std::string path = socketPath();
  CHECK(inChild([&]() {
          passAsActivated({unixSocket(path, false)}, nullptr);
          return std::to_string(takeListenFds().size());
        }) == "error: socket activation: inherited fd 3 (" + path +
                  ") is not a listening stream socket (use ListenStream=)");
  unlink(path.c_str());
  CHECK(inChild([&]() {
          passAsActivated({tcpListener()}, "a:b");
          return std::to_string(takeListenFds().size());
        }) == "error: socket activation: LISTEN_FDNAMES has 2 names for 1 sockets");
  CHECK(inChild([&]() {
          passAsActivated({tcpListener()}, nullptr);
          setenv("LISTEN_FDS", "two", 1);
          return std::to_string(takeListenFds().size());
        }) == "error: socket activation: LISTEN_FDS must be a whole number up to 64, not 'two'");
  CHECK(inChild([&]() {
          passAsActivated({}, nullptr);
          setenv("LISTEN_FDS", "1", 1);
          close(3);
          return std::to_string(takeListenFds().size());
        }) == "error: socket activation: inherited fd 3 is not open");
}
