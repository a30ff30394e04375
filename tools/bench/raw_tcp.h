// The raw TCP baseline between two hosts: refbench's own sender and a `tcp-receiver` helper
// process, copying the same bytes over the same link as the data plane, with nothing added (no
// framing but an 8-byte length, no hashing, kernel defaults for socket buffers, as most programs
// run). Each copy opens a new connection, as each pull of the data plane does.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>

#include "tools/bench/processes.h"

namespace refbench {

// `ip`:`port` as a socket address (throws if `ip` is not a dotted IPv4 address).
sockaddr_in ipv4Address(const std::string& ip, int port);
// Reads exactly `size` bytes; false at EOF or on an error first.
bool readFully(int fd, uint8_t* data, uint64_t size);

class RawTcpCopy {
 public:
  // Starts a receiver listening on `toIp` (any free port). With `readEveryByte` it also reads
  // every byte it received (a checksum) before it answers, as a reader of the value would.
  RawTcpCopy(const std::string& toIp, bool readEveryByte);
  ~RawTcpCopy();
  // Connects from `fromIp`, sends `size` bytes of `data` and waits for the receiver's answer
  // (the bytes are all in its buffer: warm private memory). Returns the answer: the checksum,
  // or the byte count without readEveryByte.
  uint64_t copy(const std::string& fromIp, const uint8_t* data, uint64_t size);

  // `iperf3` from Debian, one run of `size` bytes from `fromIp` to `toIp` (a server started for
  // the run): the receiver's bytes per second, or 0 if iperf3 is not installed or fails.
  static double iperf3(const std::string& fromIp, const std::string& toIp, uint64_t size);

 private:
  Child receiver;
  std::string ip;
  int port = 0;
};

}  // namespace refbench
