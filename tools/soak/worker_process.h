// A soak_worker process as the coordinator sees it: commands written to its stdin, answers
// read from its stdout without blocking (the coordinator waits on every worker at once), its
// stderr in a log file. Killing it is a SIGKILL: a real client death.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace refstore::soak {

class WorkerProcess {
 public:
  // Starts `command` (a prefix such as nsenter's, then the program and its arguments).
  WorkerProcess(const std::vector<std::string>& command, const std::string& logPath);
  ~WorkerProcess();  // SIGKILLs it if still running
  WorkerProcess(const WorkerProcess&) = delete;

  pid_t pid() const { return child; }
  int stdoutFd() const { return output; }
  // Writes one command line; false if the worker is gone (its stdin closed).
  bool send(const std::string& line);
  // Reads what is available; true when a whole answer line is in `*line` (false: not yet, or
  // `closed()` if the worker closed its stdout).
  bool readLine(std::string* line);
  bool closed() const { return eof; }
  void kill();  // SIGKILL and reap
  // Waits for it to exit; returns the status (as from waitpid), -1 if already reaped.
  int wait();
  const std::string& logPath() const { return log; }

 private:
  pid_t child = -1;
  int input = -1, output = -1;
  bool eof = false;
  std::string buffered, log;
};

}  // namespace refstore::soak
