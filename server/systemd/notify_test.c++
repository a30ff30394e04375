// Tests for server/systemd/notify.h against real datagram sockets: notifications reach a path
// and an abstract address as one datagram each, the environment is read and then cleared, the
// watchdog is fed from the event loop, and a bad address is a clear error.

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <random>
#include <string>

#include <kj/async-io.h>
#include <kj/debug.h>

#include "server/systemd/notify.h"

using refstore::server::systemd::Notifier;

namespace {

std::string randomSuffix() {
  std::random_device random;
  return std::to_string(random()) + std::to_string(random());
}

// A datagram socket standing in for the service manager's notification socket.
struct ManagerSocket {
  int fd = -1;
  std::string address;  // as $NOTIFY_SOCKET would name it

  explicit ManagerSocket(bool abstract) {
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    REQUIRE(fd >= 0);
    std::string name = "/tmp/rst-notify-" + randomSuffix();
    struct sockaddr_un un = {};
    un.sun_family = AF_UNIX;
    memcpy(un.sun_path, name.data(), name.size());
    socklen_t length = offsetof(struct sockaddr_un, sun_path) + name.size() + 1;
    if (abstract) {
      un.sun_path[0] = '\0';
      length--;
      address = "@" + name.substr(1);
    } else {
      address = name;
    }
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&un), length) == 0);
  }
  ~ManagerSocket() {
    close(fd);
    if (address[0] == '/') unlink(address.c_str());
  }

  // The next datagram, or "" if none is waiting.
  std::string receive() {
    char buffer[4096];
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    return n <= 0 ? "" : std::string(buffer, n);
  }
};

std::string describe(kj::Function<void()> body) {
  try {
    body();
  } catch (const kj::Exception& e) {
    return e.getDescription().cStr();
  }
  return "";
}

}  // namespace

TEST_CASE("READY, STATUS and STOPPING reach a socket path as one datagram each") {
  ManagerSocket manager(/*abstract=*/false);
  Notifier notifier(manager.address.c_str(), nullptr);
  CHECK(notifier.ready("serving 0 clients"));
  CHECK(manager.receive() == "READY=1\nSTATUS=serving 0 clients");
  CHECK(notifier.stopping("received SIGTERM"));
  CHECK(manager.receive() == "STOPPING=1\nSTATUS=received SIGTERM");
  CHECK(manager.receive() == "");
}

TEST_CASE("an @abstract address works") {
  ManagerSocket manager(/*abstract=*/true);
  Notifier notifier(manager.address.c_str(), nullptr);
  CHECK(notifier.notify("READY=1"));
  CHECK(manager.receive() == "READY=1");
}

TEST_CASE("notify reports a manager that is gone") {
  std::string path;
  {
    ManagerSocket manager(/*abstract=*/false);
    path = manager.address;
  }
  Notifier notifier(path.c_str(), nullptr);
  CHECK_FALSE(notifier.notify("READY=1"));
}

TEST_CASE("fromEnvironment reads NOTIFY_SOCKET and the watchdog, then clears them") {
  ManagerSocket manager(/*abstract=*/false);
  setenv("NOTIFY_SOCKET", manager.address.c_str(), 1);
  setenv("WATCHDOG_USEC", "200000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  auto notifier = Notifier::fromEnvironment();
  CHECK(getenv("NOTIFY_SOCKET") == nullptr);
  CHECK(getenv("WATCHDOG_USEC") == nullptr);
  CHECK(getenv("WATCHDOG_PID") == nullptr);
  auto& n = *KJ_ASSERT_NONNULL(notifier);
  CHECK(KJ_ASSERT_NONNULL(n.watchdogInterval()) == 200 * kj::MILLISECONDS);
  CHECK(n.ready("x"));
  CHECK(manager.receive() == "READY=1\nSTATUS=x");

  // A watchdog meant for another process is not ours to feed.
  setenv("NOTIFY_SOCKET", manager.address.c_str(), 1);
  setenv("WATCHDOG_USEC", "200000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);
  CHECK(KJ_ASSERT_NONNULL(Notifier::fromEnvironment())->watchdogInterval() == nullptr);

  // No NOTIFY_SOCKET: nobody to notify.
  setenv("WATCHDOG_USEC", "200000", 1);
  CHECK(Notifier::fromEnvironment() == nullptr);
  CHECK(getenv("WATCHDOG_USEC") == nullptr);
}

TEST_CASE("a relative NOTIFY_SOCKET is a clear configuration error") {
  setenv("NOTIFY_SOCKET", "relative/path", 1);
  auto error = describe([]() { Notifier::fromEnvironment(); });
  CHECK(error ==
        "NOTIFY_SOCKET must be an absolute socket path or an @abstract name, not 'relative/path'");
  unsetenv("NOTIFY_SOCKET");
}

TEST_CASE("the watchdog is fed from the event loop until the promise is dropped") {
  auto io = kj::setupAsyncIo();
  auto& timer = io.provider->getTimer();
  ManagerSocket manager(/*abstract=*/false);
  Notifier notifier(manager.address.c_str(), 20 * kj::MILLISECONDS);
  auto feeding = notifier.feedWatchdog(timer).eagerlyEvaluate(nullptr);
  int pings = 0;
  for (int turn = 0; turn < 2000 && pings < 3; turn++) {  // at most 20 s
    timer.afterDelay(10 * kj::MILLISECONDS).wait(io.waitScope);
    for (std::string datagram = manager.receive(); !datagram.empty();
         datagram = manager.receive()) {
      CHECK(datagram == "WATCHDOG=1");
      pings++;
    }
  }
  CHECK(pings >= 3);
  feeding = nullptr;
  timer.afterDelay(50 * kj::MILLISECONDS).wait(io.waitScope);
  while (!manager.receive().empty()) {
  }  // anything sent before the drop
  timer.afterDelay(50 * kj::MILLISECONDS).wait(io.waitScope);
  CHECK(manager.receive() == "");
}
