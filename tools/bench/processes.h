// Child processes: the daemons refbench starts (refstored, redis-server) and its own helper
// roles (this same binary re-executed with --role), which it talks to over a line protocol on
// their stdin/stdout. Re-executing (posix_spawn of /proc/self/exe) rather than fork() keeps every
// helper a fresh process with no copy of the parent's event loops, threads or mappings.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace refbench {

class Child {
 public:
  Child() = default;
  // Starts argv[0] (an absolute path) with `argv`. With `pipes`, the child's stdin and stdout
  // are pipes to us (send/receive); otherwise they are /dev/null. stderr goes to `logPath`
  // ("" = inherit ours).
  static Child start(const std::vector<std::string>& argv, bool pipes, const std::string& logPath);
  // This binary with `--role <role> <args...>`, piped. Its stderr is ours.
  static Child role(const std::string& role, const std::vector<std::string>& args);

  Child(Child&& other) noexcept;
  Child& operator=(Child&& other) noexcept;
  Child(const Child&) = delete;
  ~Child();  // SIGKILLs and reaps the process if it is still running

  pid_t pid() const { return child; }
  void send(const std::string& line);  // one line to the child's stdin
  std::string receive();               // one line from its stdout (throws at EOF)
  void signal(int signum);
  int wait();    // waitpid status; the process is gone afterwards
  bool running();

 private:
  pid_t child = -1;
  int toChild = -1, fromChild = -1;
  std::string pending;  // bytes read past the last returned line
};

// Makes SIGTERM, SIGINT and SIGHUP (unless ignored) SIGKILL every Child still running before
// refbench dies of the signal: otherwise its daemons outlive it, and those in network namespaces
// (bench_link.h) keep their namespaces alive after the namespaces' names are gone.
void killChildrenOnSignals();

// Absolute path of this executable (/proc/self/exe).
std::string selfPath();

// One field of /proc/<pid>/status in bytes ("VmRSS", "RssAnon", "RssShmem"); 0 if absent.
uint64_t procStatusBytes(pid_t pid, const char* field);
// CPU time the process has used, user and system (/proc/<pid>/stat), in seconds; 0 if gone.
double procCpuSeconds(pid_t pid);

}  // namespace refbench
