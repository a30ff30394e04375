#include "tests/daemon.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace refstore::testing {
namespace {

bool canConnect(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un address;
  memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return ok;
}

pid_t spawnWithRedirect(const std::vector<std::string>& argv, int stdoutFd, int stderrFd) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (stdoutFd >= 0) posix_spawn_file_actions_adddup2(&actions, stdoutFd, STDOUT_FILENO);
  if (stderrFd >= 0) posix_spawn_file_actions_adddup2(&actions, stderrFd, STDERR_FILENO);
  std::vector<char*> args;
  for (auto& arg: argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + ": " + strerror(rc));
  return pid;
}

}  // namespace

void sleepMillis(int millis) { usleep(millis * 1000); }

std::string uniqueSocketPath(const std::string& prefix) {
  // Bazel's temp dirs are too long for sun_path (107 bytes): use a short /tmp path.
  uint64_t random = 0;
  if (getrandom(&random, sizeof(random), 0) != sizeof(random)) abort();
  char suffix[17];
  snprintf(suffix, sizeof(suffix), "%016llx", (unsigned long long)random);
  return "/tmp/" + prefix + "-" + suffix + ".sock";
}

double monotonicSeconds() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec + now.tv_nsec / 1e9;
}

Daemon::Daemon(const std::string& memory, std::vector<std::string> extraArgs,
               uint64_t fileSizeLimit, uint64_t descriptorLimit)
    : socketPath(uniqueSocketPath()) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string base = std::string(tmp ? tmp : "/tmp") + "/refstored-" +
                     socketPath.substr(socketPath.rfind('-') + 1, 16);
  logPath = base + ".log";
  spillPath = base + ".spill";
  int logFd = open(logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  std::vector<std::string> argv;
  if (fileSizeLimit > 0 || descriptorLimit > 0) {
    argv = {"/usr/bin/prlimit"};
    if (fileSizeLimit > 0) argv.push_back("--fsize=" + std::to_string(fileSizeLimit));
    if (descriptorLimit > 0) argv.push_back("--nofile=" + std::to_string(descriptorLimit));
    argv.push_back("--");
  }
  for (auto& arg: std::vector<std::string>{"server/refstored", "--socket", socketPath,
                                           "--memory", memory, "--segment-size", "8M"}) {
    argv.push_back(arg);
  }
  bool ownSpill = true;
  for (auto& arg: extraArgs) {
    if (arg == "--spill-dir" || arg == "--no-spill") ownSpill = false;
  }
  // Each daemon gets its own spill directory: a shared default would be locked by whichever
  // test daemon started first.
  if (ownSpill) {
    argv.push_back("--spill-dir");
    argv.push_back(spillPath);
  }
  for (auto& arg: extraArgs) argv.push_back(arg);
  child = spawnWithRedirect(argv, -1, logFd);
  close(logFd);
  bool up = eventually([&]() { return canConnect(socketPath) || !alive(); });
  if (!up || !alive()) {
    fprintf(stderr, "refstored did not start:\n%s\n", log().c_str());
    abort();
  }
}

bool Daemon::alive() {
  if (child < 0) return false;
  int status;
  return waitpid(child, &status, WNOHANG) == 0;
}

int Daemon::stop() {
  if (child < 0) return -1;
  ::kill(child, SIGTERM);
  int status = 0;
  waitpid(child, &status, 0);
  child = -1;
  return status;
}

Daemon::~Daemon() {
  if (child < 0) return;
  int status = stop();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "refstored did not exit cleanly (status %d):\n%s\n", status, log().c_str());
    abort();
  }
}

std::string Daemon::log() const {
  std::ifstream in(logPath);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

Process spawn(const std::string& program, const std::vector<std::string>& args) {
  int pipeFds[2];
  if (pipe2(pipeFds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> argv = {program};
  argv.insert(argv.end(), args.begin(), args.end());
  Process process;
  process.pid = spawnWithRedirect(argv, pipeFds[1], -1);
  close(pipeFds[1]);
  process.stdoutFd = pipeFds[0];
  return process;
}

Process::~Process() {
  if (stdoutFd >= 0) close(stdoutFd);
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
}

std::string Process::readLine() {
  std::string line;
  char c;
  while (read(stdoutFd, &c, 1) == 1) {
    if (c == '\n') return line;
    line += c;
  }
  return line;
}

int Process::wait() {
  int status = 0;
  waitpid(pid, &status, 0);
  pid = -1;
  return status;
}

void Process::kill(int signal) { ::kill(pid, signal); }

std::vector<std::string> listDirectory(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (struct dirent* entry = readdir(d)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

int freeTcpPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in address;
  memset(&address, 0, sizeof(address));
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  close(fd);
  return ntohs(address.sin_port);
}

uint8_t patternByte(uint64_t seed, uint64_t index) {
  uint64_t x = (index + 1) * 0x9E3779B97F4A7C15ull ^ (seed * 0xBF58476D1CE4E5B9ull);
  x ^= x >> 29;
  return static_cast<uint8_t>(x ^ (x >> 11));
}

void fillPattern(uint8_t* data, size_t size, uint64_t seed) {
  for (size_t i = 0; i < size; i++) data[i] = patternByte(seed, i);
}

bool checkPattern(const uint8_t* data, size_t size, uint64_t seed) {
  for (size_t i = 0; i < size; i++) {
    if (data[i] != patternByte(seed, i)) return false;
  }
  return true;
}

}  // namespace refstore::testing
