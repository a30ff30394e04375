#include "server/net/unix_socket.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <kj/debug.h>

#include "server/runtime/log.h"

namespace refstore::server {

namespace {

struct sockaddr_un unixAddress(kj::StringPtr path) {
  struct sockaddr_un address;
  memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  KJ_REQUIRE(path.size() < sizeof(address.sun_path), "socket path too long (limit 107 bytes)",
             path);
  memcpy(address.sun_path, path.begin(), path.size());
  return address;
}

bool someoneListens(const struct sockaddr_un& address) {
  int probe;
  KJ_SYSCALL(probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  kj::AutoCloseFd probeFd(probe);
  return connect(probe, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
}

}  // namespace

void requireSocketFree(kj::StringPtr path) {
  if (someoneListens(unixAddress(path))) {
    KJ_FAIL_REQUIRE(kj::str("another refstored is already listening on ", path,
                            ": give each daemon its own --socket"));
  }
}

kj::AutoCloseFd listenUnixSocket(kj::StringPtr path) {
  struct sockaddr_un address = unixAddress(path);

  int raw;
  KJ_SYSCALL(raw = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  kj::AutoCloseFd fd(raw);

  struct stat existing;
  if (lstat(path.cStr(), &existing) == 0) {
    KJ_REQUIRE(S_ISSOCK(existing.st_mode), "socket path exists and is not a socket", path);
    // Someone accepting there? Then refuse rather than steal the path.
    if (someoneListens(address)) {
      KJ_FAIL_REQUIRE(kj::str("another refstored is already listening on ", path,
                              ": give each daemon its own --socket"));
    }
    KJ_SYSCALL(unlink(path.cStr()));
    logInfo("removed stale socket ", path);
  }

  // Owner-only from the first instant: no window where another user could connect.
  mode_t previous = umask(0177);
  int bound = bind(raw, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  int bindErrno = errno;
  umask(previous);
  if (bound < 0) KJ_FAIL_SYSCALL("bind", bindErrno, path);
  KJ_SYSCALL(listen(raw, SOMAXCONN));
  return fd;
}

}  // namespace refstore::server
