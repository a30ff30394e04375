#include "tools/bench/processes.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <stdexcept>

extern char** environ;

namespace refbench {
namespace {

// The pids of children not yet reaped, for the signal handler (fixed slots: a handler may not
// allocate or lock).
constexpr size_t kMaxChildren = 1024;
std::atomic<pid_t> liveChildren[kMaxChildren];

void remember(pid_t pid) {
  for (auto& slot: liveChildren) {
    pid_t empty = 0;
    if (slot.compare_exchange_strong(empty, pid)) return;
  }
}

void forget(pid_t pid) {
  for (auto& slot: liveChildren) {
    pid_t expected = pid;
    if (slot.compare_exchange_strong(expected, 0)) return;
  }
}

void killChildrenAndDie(int signum) {
  for (auto& slot: liveChildren) {
    pid_t pid = slot.load();
    if (pid > 0) kill(pid, SIGKILL);
  }
  signal(signum, SIG_DFL);
  raise(signum);  // delivered when this handler returns
}

}  // namespace

void killChildrenOnSignals() {
  for (int signum: {SIGTERM, SIGINT, SIGHUP}) {
    struct sigaction current;
    sigaction(signum, nullptr, &current);
    if (current.sa_handler == SIG_IGN) continue;  // e.g. SIGINT of a background job
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = killChildrenAndDie;
    sigemptyset(&action.sa_mask);
    sigaction(signum, &action, nullptr);
  }
}

std::string selfPath() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (n < 0) throw std::runtime_error("readlink /proc/self/exe failed");
  path[n] = 0;
  return path;
}

Child Child::start(const std::vector<std::string>& argv, bool pipes, const std::string& logPath) {
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (pipes) {
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
      throw std::runtime_error(std::string("pipe: ") + strerror(errno));
    }
    posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  }
  if (!logPath.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, logPath.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  }
  std::vector<char*> args;
  for (auto& arg: argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  Child c;
  int rc = posix_spawn(&c.child, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (pipes) {
    close(in[0]);
    close(out[1]);
    c.toChild = in[1];
    c.fromChild = out[0];
  }
  if (rc != 0) {
    c.child = -1;
    throw std::runtime_error("cannot start " + argv[0] + ": " + strerror(rc));
  }
  remember(c.child);
  return c;
}

Child Child::role(const std::string& role, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {selfPath(), "--role", role};
  argv.insert(argv.end(), args.begin(), args.end());
  return start(argv, /*pipes=*/true, "");
}

Child::Child(Child&& other) noexcept
    : child(other.child), toChild(other.toChild), fromChild(other.fromChild),
      pending(std::move(other.pending)) {
  other.child = other.toChild = other.fromChild = -1;
}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    this->~Child();
    new (this) Child(std::move(other));
  }
  return *this;
}

Child::~Child() {
  if (toChild >= 0) close(toChild);
  if (fromChild >= 0) close(fromChild);
  if (child > 0) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    forget(child);
  }
}

void Child::send(const std::string& line) {
  std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(toChild, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(std::string("write to helper: ") + strerror(errno));
    done += n;
  }
}

std::string Child::receive() {
  for (;;) {
    size_t newline = pending.find('\n');
    if (newline != std::string::npos) {
      std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      return line;
    }
    char buffer[4096];
    ssize_t n = read(fromChild, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("helper process " + std::to_string(child) + " exited");
    pending.append(buffer, n);
  }
}

void Child::signal(int signum) {
  if (child > 0) kill(child, signum);
}

int Child::wait() {
  int status = 0;
  if (child > 0) {
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    forget(child);
    child = -1;
  }
  return status;
}

bool Child::running() {
  if (child <= 0) return false;
  int status;
  if (waitpid(child, &status, WNOHANG) == child) {
    forget(child);
    child = -1;
    return false;
  }
  return true;
}

uint64_t procStatusBytes(pid_t pid, const char* field) {
  std::string path = "/proc/" + std::to_string(pid) + "/status";
  FILE* file = fopen(path.c_str(), "r");
  if (file == nullptr) return 0;
  char line[256];
  uint64_t kib = 0;
  size_t length = strlen(field);
  while (fgets(line, sizeof(line), file) != nullptr) {
    if (strncmp(line, field, length) == 0 && line[length] == ':') {
      kib = strtoull(line + length + 1, nullptr, 10);
      break;
    }
  }
  fclose(file);
  return kib * 1024;
}

double procCpuSeconds(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  FILE* file = fopen(path.c_str(), "r");
  if (file == nullptr) return 0;
  char line[1024];
  bool read = fgets(line, sizeof(line), file) != nullptr;
  fclose(file);
  if (!read) return 0;
  // Fields after the command (which may hold spaces, inside parentheses): state is field 3,
  // utime and stime fields 14 and 15, in clock ticks.
  const char* rest = strrchr(line, ')');
  if (rest == nullptr) return 0;
  unsigned long long utime = 0, stime = 0;
  if (sscanf(rest + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
             &stime) != 2) {
    return 0;
  }
  return double(utime + stime) / sysconf(_SC_CLK_TCK);
}

}  // namespace refbench
