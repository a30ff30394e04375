// Test support: plain blocking TCP sockets (IPv4 "ip:port" text) for tests that check what a
// network does to connections: reachability, bytes arriving intact, connections ending.
#pragma once

#include <netinet/in.h>
#include <stddef.h>

#include <string>

namespace refstore::testing {

// Parses "a.b.c.d:port"; throws std::runtime_error naming the text if it is not one.
struct sockaddr_in ipv4SocketAddress(const std::string& hostPort);

// A listening socket on `hostPort` (port 0: any free port). Throws std::runtime_error on failure.
int listenTcp(const std::string& hostPort);
// "ip:port" a socket is bound to.
std::string localAddress(int fd);
// A connected socket; throws std::runtime_error naming the address and errno on failure.
int connectTcp(const std::string& hostPort);
// A connected socket, or -1 (errno set; ETIMEDOUT when no answer came within `timeoutMillis`).
// Does not throw: for asking whether an address is reachable.
int tryConnectTcp(const std::string& hostPort, int timeoutMillis);
// Whether a connection to `hostPort` succeeds within `timeoutMillis` (it is closed at once).
bool reachable(const std::string& hostPort, int timeoutMillis);
// Writes all of it (no SIGPIPE); false if the connection failed first.
bool writeAll(int fd, const void* data, size_t size);
inline bool writeAll(int fd, const std::string& data) {
  return writeAll(fd, data.data(), data.size());
}
// Reads until `size` bytes or the end of the stream (or an error); returns what came.
std::string readUpTo(int fd, size_t size);
// Whether bytes (or the end of the stream) arrive within `timeoutMillis`.
bool readableWithin(int fd, int timeoutMillis);
// How a connection with nothing (more) to read ends: "reset" (ECONNRESET), "closed" (EOF),
// "data" if bytes arrive instead, or "open" if nothing happens within 20 s (a deadline for what
// should happen at once, not a timing measurement).
std::string howConnectionEnds(int fd);

}  // namespace refstore::testing
