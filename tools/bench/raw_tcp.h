// The raw TCP baseline between two hosts: refbench's own sender and a `tcp-receiver` helper
// process, copying the same bytes over the same link as the data plane, with nothing added (no
// framing but an 8-byte length, no hashing, kernel defaults for socket buffers, as most programs
// run). Each copy opens a new connection, as each pull of the data plane does.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>

#include "tools/bench/bench_link.h"
#include "tools/bench/processes.h"

namespace refbench {

// `ip`:`port` as a socket address (throws if `ip` is not a dotted IPv4 address).
sockaddr_in ipv4Address(const std::string& ip, int port);
// Reads exactly `size` bytes; false at EOF or on an error first.
bool readFully(int fd, uint8_t* data, uint64_t size);

class RawTcpCopy {
 public:
  // Starts a receiver on host `toHost` of `link`, listening on its address (any free port). With
  // `readEveryByte` it also reads every byte it received (a checksum) before it answers, as a
  // reader of the value would.
  RawTcpCopy(const BenchLink& link, size_t toHost, bool readEveryByte);
  ~RawTcpCopy();
  // Connects from host `fromHost` (its network and address), sends `size` bytes of `data` and
  // waits for the receiver's answer (the bytes are all in its buffer: warm private memory).
  // Returns the answer: the checksum, or the byte count without readEveryByte.
  uint64_t copy(size_t fromHost, const uint8_t* data, uint64_t size);

  // `iperf3` from Debian, one run of `size` bytes from host `from` to host `to` of `link` (a
  // server started for the run on `to`): the receiver's bytes per second, or 0 if iperf3 is not
  // installed or fails.
  static double iperf3(const BenchLink& link, size_t from, size_t to, uint64_t size);

 private:
  const BenchLink& link;
  Child receiver;
  std::string ip;
  int port = 0;
};

}  // namespace refbench
