// Test support: a TCP proxy that injects the network faults the kernel here cannot (it has no
// netem): delay, throughput caps, stalls, cuts and corrupted bytes, changeable while it runs.
//
//   FaultProxy proxy("127.0.0.2:0", host.tcpAddress());    // listen there, forward here
//   dial proxy.address() instead of the target; then, at any time:
//   proxy.setDelay(Direction::BOTH, 50);           // every chunk 50 ms late, each way
//   proxy.corrupt({Direction::TO_CLIENT, 4096});   // flip byte 4096 of every reply stream
//   proxy.stall(); ... proxy.resume();             // silence, then everything arrives intact
//   proxy.cut();                                   // both ends see the connection reset
//
// It runs in-process, on its own thread with its own KJ event loop: controls are plain method
// calls (executed on that loop, so each takes effect before it returns), counters are exact, and
// a test needs no helper binary or port handshake. Its sockets can live in another network
// namespace than the test (`networkNamespace`), so it can stand in front of a daemon that runs in
// one. Bytes are copied through 128 KiB buffers: a GiB crosses it on loopback in about a second
// (fault_proxy_test prints the figure), 2-3 times as long as over a direct connection.
#pragma once

#include <stdint.h>

#include <memory>
#include <string>

namespace refstore::testing {

enum class Direction {
  TO_TARGET,  // bytes the connecting side sends (requests)
  TO_CLIENT,  // bytes the target sends back (replies, pulled data)
  BOTH,       // for setters only: both of the above
};

struct FaultProxyOptions {
  std::string listen = "127.0.0.1:0";  // "ip:port" (IPv4); port 0 picks a free one
  // "ip:port" every accepted connection is forwarded to (dialed per connection; when that fails,
  // the accepted connection is reset).
  std::string target;
  // "" = the test's own network; else a network namespace file (e.g. "/run/netns/NAME") that
  // the proxy's thread joins before it opens any socket: it listens and dials in there.
  std::string networkNamespace;
  // Bytes read ahead of the writer per direction and connection (what a delay holds in flight):
  // a sender beyond it waits, as on a real link. Caps a delayed link at maxInFlight / delay.
  uint64_t maxInFlight = 4 << 20;
};

// Flips bytes of one direction's stream: byte `offset` (counted from the connection's first
// byte in that direction), and when `every` > 0 also offset + every, offset + 2 * every, ...
struct Corruption {
  Direction direction = Direction::TO_CLIENT;  // TO_TARGET or TO_CLIENT
  uint64_t offset = 0;
  uint64_t every = 0;      // 0: the byte at `offset` only
  uint64_t limit = 0;      // stop after this many flipped bytes in all (0: no limit)
  int64_t connection = -1;  // only the connection with this number (see Counters), -1: all
  uint8_t xorMask = 0xFF;  // what each flipped byte is XORed with
};

// What happens to a connection when a breakAfter() rule fires.
enum class Break {
  CUT,    // reset both of its ends
  STALL,  // stop forwarding it, both ways, until resume()
};

class FaultProxy {
 public:
  // Listening when it returns. Throws std::runtime_error if it cannot listen.
  explicit FaultProxy(const FaultProxyOptions& options);
  FaultProxy(const std::string& listen, const std::string& target);
  ~FaultProxy();  // closes every connection and the listener, joins the thread

  // "ip:port" the proxy listens on (the port chosen when the options said 0).
  const std::string& address() const { return listenAddress; }

  // Each chunk of bytes (and the end of the stream) is forwarded `millis` after it arrived
  // (one-way latency; chunks in flight overlap, as on a link). Applies to what arrives from now.
  void setDelay(Direction direction, uint64_t millis);
  // At most this many bytes per second per connection in that direction (0: no cap).
  void setRate(Direction direction, uint64_t bytesPerSecond);
  // Stops forwarding bytes and ends of streams (open connections stay open, new ones are
  // accepted and wait too): what a peer sees while packets are lost, until the network comes
  // back. resume() undoes it, and every STALL break; nothing is lost.
  void stall(Direction direction = Direction::BOTH);
  void resume();
  // Resets every open connection now: both ends see ECONNRESET. The proxy keeps accepting; use
  // refuse(true) as well for a peer that is gone.
  void cut();
  // true: connections are reset as soon as they are accepted (the target is never dialed).
  void refuse(bool refusing);
  // Replaces the corruption rule of `corruption.direction`; clearCorruption() removes both.
  void corrupt(const Corruption& corruption);
  void clearCorruption();
  // Once a connection has forwarded `bytes` bytes of `direction` (TO_TARGET or TO_CLIENT) and
  // more are to follow, it forwards no more of them and `action` happens to it. Only connection
  // number `connection`, or every connection if -1. Replaces any previous rule; clearBreak()
  // removes it. Resuming a STALL break lets the connection carry on (the rule has fired for it).
  void breakAfter(Direction direction, uint64_t bytes, Break action, int64_t connection = -1);
  void clearBreak();
  // Undoes every fault: no delay, rate cap, stall, refusal, corruption or break.
  void reset();

  struct Counters {
    uint64_t bytesToTarget = 0;   // forwarded client -> target, all connections
    uint64_t bytesToClient = 0;   // forwarded target -> client
    uint64_t connections = 0;     // accepted so far; connections are numbered 0, 1, ... in the
                                  // order accepted, so this is the next connection's number
    uint64_t open = 0;            // currently forwarding
    uint64_t corruptedBytes = 0;  // bytes flipped by corruption rules
    uint64_t cuts = 0;            // connections reset by cut(), refuse() or a CUT break
  };
  Counters counters() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl;
  std::string listenAddress;
};

}  // namespace refstore::testing
