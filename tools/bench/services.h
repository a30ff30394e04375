// The daemons a run measures: its own refstored and, for the Redis baseline, Debian's
// redis-server. Both listen on Unix sockets inside the run's private temporary directory (short
// /tmp paths: sun_path holds 107 bytes) and are stopped with SIGTERM when the run ends.
#pragma once

#include <string>
#include <vector>

#include "tools/bench/processes.h"

namespace refbench {

// A private directory under /tmp for sockets and logs, removed (with its contents) at the end.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return dir; }

 private:
  std::string dir;
};

// Finds the refstored binary: `flag` if given, else next to this binary in its Bazel runfiles,
// else bazel-bin/server/refstored relative to the current directory.
std::string findRefstored(const std::string& flag);

class Refstored {
 public:
  // Starts `binary --socket <dir>/<name>.sock --memory <memory> <extraArgs...>` (plus
  // `--spill-dir <dir>/<name>.spill` when the binary has that option) and waits until it accepts
  // connections and, for up to half a second, until it has its first pre-faulted spare segment
  // (so measurements do not race the daemon's start-up work).
  Refstored(const std::string& binary, const TempDir& dir, const std::string& name,
            const std::string& memory, const std::vector<std::string>& extraArgs);
  ~Refstored();  // SIGTERM, then wait
  const std::string& socket() const { return socketPath; }
  pid_t pid() const { return process.pid(); }
  const std::string& logPath() const { return log; }

 private:
  std::string socketPath, log;
  Child process;
};

class Redis {
 public:
  // redis-server on a Unix socket only (port 0), no persistence (--save "" --appendonly no),
  // bulk strings up to 2 GiB (the 1 GiB handoff needs more than the default 512 MiB).
  Redis(const std::string& binary, const TempDir& dir);
  // Also listening on TCP at `ip`, on a free port (tcpAddress()): the cross-host baseline, a
  // Redis on the owner host read by a client on another. Its Unix socket is `<name>.sock`. Start
  // it on that host's network (BenchLink::InNetwork).
  Redis(const std::string& binary, const TempDir& dir, const std::string& name,
        const std::string& ip);
  // "tcp:IP:PORT" when listening on TCP, "" otherwise (role_consumer.c++ takes either).
  const std::string& tcpAddress() const { return tcp; }
  ~Redis();
  const std::string& socket() const { return socketPath; }
  pid_t pid() const { return process.pid(); }

 private:
  void start(const std::string& binary, const TempDir& dir, const std::string& name,
             std::vector<std::string> extraArgs);
  std::string socketPath, tcp;
  Child process;
};

// Polls until a Unix socket accepts a connection; throws after `seconds` or if `owner` exits,
// quoting the end of `logPath`.
void waitForSocket(const std::string& path, double seconds, Child& owner,
                   const std::string& logPath);

}  // namespace refbench
