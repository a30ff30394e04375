#include "server/systemd/listen_fds.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <kj/debug.h>
#include <kj/vector.h>

namespace refstore::server::systemd {

namespace {

constexpr int kFirstFd = 3;  // SD_LISTEN_FDS_START

// A configuration error: one clear sentence, for refstored to print and exit with.
template <typename... Params>
[[noreturn]] void fail(Params&&... params) {
  kj::throwFatalException(kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                                        kj::str(kj::fwd<Params>(params)...)));
}

kj::Maybe<uint64_t> parseNumber(const char* text) {
  if (text == nullptr || *text == '\0' || *text == '-') return nullptr;
  char* end = nullptr;
  unsigned long long value = strtoull(text, &end, 10);
  if (*end != '\0') return nullptr;
  return uint64_t(value);
}

kj::String describeAddress(int fd, int& family) {
  struct sockaddr_storage storage;
  socklen_t length = sizeof(storage);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length) < 0) {
    fail("socket activation: inherited fd ", fd, " is not a socket (", strerror(errno), ")");
  }
  family = storage.ss_family;
  char host[INET6_ADDRSTRLEN] = "";
  switch (family) {
    case AF_UNIX: {
      auto& un = reinterpret_cast<sockaddr_un&>(storage);
      size_t size = length - offsetof(struct sockaddr_un, sun_path);
      if (size == 0) return kj::str("(unnamed)");
      if (un.sun_path[0] == '\0') return kj::str("@", kj::heapString(un.sun_path + 1, size - 1));
      return kj::str(un.sun_path);
    }
    case AF_INET: {
      auto& in = reinterpret_cast<sockaddr_in&>(storage);
      inet_ntop(AF_INET, &in.sin_addr, host, sizeof(host));
      return kj::str(host, ":", ntohs(in.sin_port));
    }
    case AF_INET6: {
      auto& in6 = reinterpret_cast<sockaddr_in6&>(storage);
      inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof(host));
      return kj::str("[", host, "]:", ntohs(in6.sin6_port));
    }
  }
  return kj::str("(address family ", family, ")");
}

}  // namespace

kj::Array<InheritedSocket> takeListenFds() {
  auto pid = parseNumber(getenv("LISTEN_PID"));
  const char* countText = getenv("LISTEN_FDS");
  auto count = parseNumber(countText);
  kj::String names = kj::str(getenv("LISTEN_FDNAMES") == nullptr ? "" : getenv("LISTEN_FDNAMES"));
  bool forUs = pid != nullptr && KJ_ASSERT_NONNULL(pid) == uint64_t(getpid());
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (!forUs || countText == nullptr) return nullptr;
  if (count == nullptr || KJ_ASSERT_NONNULL(count) > 64) {
    fail("socket activation: LISTEN_FDS must be a whole number up to 64, not '", countText, "'");
  }
  size_t n = KJ_ASSERT_NONNULL(count);

  kj::Vector<kj::String> nameList;
  if (names.size() > 0) {
    kj::StringPtr rest = names;
    for (;;) {
      KJ_IF_MAYBE(colon, rest.findFirst(':')) {
        nameList.add(kj::heapString(rest.slice(0, *colon)));
        rest = rest.slice(*colon + 1);
      } else {
        nameList.add(kj::heapString(rest));
        break;
      }
    }
    if (nameList.size() != n) {
      fail("socket activation: LISTEN_FDNAMES has ", nameList.size(), " names for ", n,
           " sockets");
    }
  }

  auto sockets = kj::heapArrayBuilder<InheritedSocket>(n);
  for (size_t i = 0; i < n; i++) {
    int fd = kFirstFd + int(i);
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0) fail("socket activation: inherited fd ", fd, " is not open");
    kj::AutoCloseFd owned(fd);
    KJ_SYSCALL(fcntl(fd, F_SETFD, flags | FD_CLOEXEC));
    int family = 0;
    auto address = describeAddress(fd, family);
    int type = 0, listening = 0;
    socklen_t size = sizeof(type);
    KJ_SYSCALL(getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size));
    size = sizeof(listening);
    KJ_SYSCALL(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size));
    if (type != SOCK_STREAM || !listening) {
      fail("socket activation: inherited fd ", fd, " (", address,
           ") is not a listening stream socket (use ListenStream=)");
    }
    if (family != AF_UNIX && family != AF_INET && family != AF_INET6) {
      fail("socket activation: inherited fd ", fd, " (", address, ") is not a Unix or TCP socket");
    }
    sockets.add(InheritedSocket{kj::mv(owned), i < nameList.size() ? kj::mv(nameList[i]) : kj::str(),
                                family, kj::mv(address)});
  }
  return sockets.finish();
}

ActivatedSockets sortActivatedSockets(kj::Array<InheritedSocket> sockets) {
  ActivatedSockets sorted;
  for (auto& socket: sockets) {
    kj::Maybe<InheritedSocket>* slot;
    const char* role;
    if (socket.family == AF_UNIX) {
      slot = &sorted.unixSocket;
      role = "Unix socket";
    } else if (socket.name == "metrics") {
      slot = &sorted.metrics;
      role = "metrics socket (FileDescriptorName=metrics)";
    } else {
      slot = &sorted.tcp;
      role = "TCP socket";
    }
    if (*slot != nullptr) {
      fail("socket activation passed more than one ", role, " (", socket.address, "); refstored "
           "serves one of each");
    }
    *slot = kj::mv(socket);
  }
  return sorted;
}

}  // namespace refstore::server::systemd
