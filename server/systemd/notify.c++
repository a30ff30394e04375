#include "server/systemd/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <kj/debug.h>

namespace refstore::server::systemd {

namespace {

// A whole number from the environment, or null if unset, empty or not a number.
kj::Maybe<uint64_t> numberFromEnvironment(const char* name) {
  const char* text = getenv(name);
  if (text == nullptr || *text == '\0') return nullptr;
  char* end = nullptr;
  unsigned long long value = strtoull(text, &end, 10);
  if (*end != '\0' || text[0] == '-') return nullptr;
  return uint64_t(value);
}

}  // namespace

kj::Maybe<kj::Own<Notifier>> Notifier::fromEnvironment() {
  const char* address = getenv("NOTIFY_SOCKET");
  kj::Maybe<kj::Duration> watchdog;
  KJ_IF_MAYBE(usec, numberFromEnvironment("WATCHDOG_USEC")) {
    // WATCHDOG_PID, when set, says which process the watchdog is for (a shell in between must
    // not feed it on the daemon's behalf).
    auto pid = numberFromEnvironment("WATCHDOG_PID");
    if (*usec > 0 && (pid == nullptr || KJ_ASSERT_NONNULL(pid) == uint64_t(getpid()))) {
      watchdog = *usec * kj::MICROSECONDS;
    }
  }
  kj::Maybe<kj::Own<Notifier>> result;
  if (address != nullptr && *address != '\0') {
    result = kj::heap<Notifier>(address, watchdog);
  }
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  unsetenv("WATCHDOG_PID");
  return result;
}

Notifier::Notifier(kj::StringPtr path, kj::Maybe<kj::Duration> watchdog)
    : address(kj::heapArray<char>(sizeof(sockaddr_un))), watchdog(watchdog) {
  struct sockaddr_un un;
  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  bool abstract = path.startsWith("@");
  if (!path.startsWith("/") && !abstract) {
    kj::throwFatalException(kj::Exception(
        kj::Exception::Type::FAILED, __FILE__, __LINE__,
        kj::str("NOTIFY_SOCKET must be an absolute socket path or an @abstract name, not '",
                path, "'")));
  }
  if (path.size() >= sizeof(un.sun_path)) {
    kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                          kj::str("NOTIFY_SOCKET is too long: ", path)));
  }
  memcpy(un.sun_path, path.begin(), path.size());
  if (abstract) un.sun_path[0] = '\0';
  // An abstract name is exactly its bytes (no terminator); a path includes its NUL.
  addressLength = offsetof(struct sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1);
  memcpy(address.begin(), &un, sizeof(un));
  int fd;
  KJ_SYSCALL(fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  socket = kj::AutoCloseFd(fd);
}

bool Notifier::notify(kj::StringPtr state) {
  ssize_t sent;
  do {
    sent = sendto(socket.get(), state.begin(), state.size(), MSG_NOSIGNAL,
                  reinterpret_cast<const sockaddr*>(address.begin()), addressLength);
  } while (sent < 0 && errno == EINTR);
  return sent == ssize_t(state.size());
}

kj::Promise<void> Notifier::feedWatchdog(kj::Timer& timer) {
  KJ_IF_MAYBE(interval, watchdog) {
    return timer.afterDelay(*interval / 2).then([this, &timer]() {
      notify("WATCHDOG=1");
      return feedWatchdog(timer);
    });
  }
  return kj::NEVER_DONE;
}

}  // namespace refstore::server::systemd
