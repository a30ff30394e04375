// Test support: start a real refstored process on a short, unique Unix socket path and stop it
// at the end of the test; spawn helper processes. Integration tests talk to the daemon only
// through real sockets.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace refstore::testing {

class Daemon {
 public:
  // Starts `server/refstored --socket <tmp path> --memory <memory> --spill-dir <fresh dir>`
  // plus `extraArgs`, and waits until it accepts connections (or fails the test after 20 s).
  // `fileSizeLimit` > 0 runs it under that RLIMIT_FSIZE (to simulate a full disk);
  // `descriptorLimit` > 0 under that RLIMIT_NOFILE, soft and hard (to run it out of fds).
  explicit Daemon(const std::string& memory = "64M", std::vector<std::string> extraArgs = {},
                  uint64_t fileSizeLimit = 0, uint64_t descriptorLimit = 0);
  ~Daemon();  // SIGTERM, then waits; a daemon that does not exit cleanly fails the process

  const std::string& socket() const { return socketPath; }
  const std::string& spillDir() const { return spillPath; }
  pid_t pid() const { return child; }
  // True while the process is running (it has not crashed).
  bool alive();
  // Sends SIGTERM and returns the exit status (as from waitpid).
  int stop();
  // Everything the daemon wrote to stderr so far.
  std::string log() const;

 private:
  std::string socketPath;
  std::string spillPath;
  std::string logPath;
  pid_t child = -1;
};

// Runs `program args...` (a path relative to the runfiles root, e.g. "tests/rs_helper") as a
// separate process with stdout piped to us.
struct Process {
  pid_t pid = -1;
  int stdoutFd = -1;
  Process() = default;
  Process(Process&& other) noexcept: pid(other.pid), stdoutFd(other.stdoutFd) {
    other.pid = -1;
    other.stdoutFd = -1;
  }
  Process(const Process&) = delete;
  ~Process();  // SIGKILLs the process if still running
  std::string readLine();  // blocks until a full line (without '\n'); "" at EOF
  int wait();              // waitpid status
  void kill(int signal);
};
Process spawn(const std::string& program, const std::vector<std::string>& args);

// A fresh short path "/tmp/<prefix>-<random>.sock" for a Unix socket. Random, not pid-based:
// Bazel sandboxes have their own pid namespaces but share /tmp, so pids collide across tests.
std::string uniqueSocketPath(const std::string& prefix = "rst");

// Names of the regular files in `dir` (no "." entries), sorted.
std::vector<std::string> listDirectory(const std::string& dir);

// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
int freeTcpPort();

// Polls `condition` every 10 ms until true or `seconds` pass; returns the final value. For
// waiting on asynchronous effects (a killed client's disconnect), never as a timing assertion.
template <typename Condition>
bool eventually(Condition&& condition, double seconds = 20.0);

// Deterministic test bytes: byte i of pattern `seed` (so any process can verify any value).
uint8_t patternByte(uint64_t seed, uint64_t index);
void fillPattern(uint8_t* data, size_t size, uint64_t seed);
bool checkPattern(const uint8_t* data, size_t size, uint64_t seed);

// --- implementation of the template ---
void sleepMillis(int millis);
double monotonicSeconds();
template <typename Condition>
bool eventually(Condition&& condition, double seconds) {
  double deadline = monotonicSeconds() + seconds;
  while (!condition()) {
    if (monotonicSeconds() > deadline) return condition();
    sleepMillis(10);
  }
  return true;
}

}  // namespace refstore::testing
