#include "tools/soak/worker_process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>

extern char** environ;

namespace refstore::soak {

WorkerProcess::WorkerProcess(const std::vector<std::string>& command, const std::string& logPath)
    : log(logPath) {
  int toChild[2], fromChild[2];
  if (pipe2(toChild, O_CLOEXEC) != 0 || pipe2(fromChild, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe: ") + strerror(errno));
  }
  int logFd = open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, toChild[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fromChild[1], STDOUT_FILENO);
  if (logFd >= 0) posix_spawn_file_actions_adddup2(&actions, logFd, STDERR_FILENO);
  std::vector<char*> argv;
  for (auto& word: command) argv.push_back(const_cast<char*>(word.c_str()));
  argv.push_back(nullptr);
  int rc = posix_spawn(&child, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(toChild[0]);
  close(fromChild[1]);
  if (logFd >= 0) close(logFd);
  if (rc != 0) {
    close(toChild[1]);
    close(fromChild[0]);
    throw std::runtime_error("cannot start " + command[0] + ": " + strerror(rc));
  }
  input = toChild[1];
  output = fromChild[0];
  fcntl(output, F_SETFL, fcntl(output, F_GETFL) | O_NONBLOCK);
}

WorkerProcess::~WorkerProcess() {
  kill();
  if (input >= 0) close(input);
  if (output >= 0) close(output);
}

bool WorkerProcess::send(const std::string& line) {
  std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(input, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // EPIPE: it is gone (SIGPIPE is ignored by the coordinator)
    done += size_t(n);
  }
  return true;
}

bool WorkerProcess::readLine(std::string* line) {
  for (;;) {
    auto newline = buffered.find('\n');
    if (newline != std::string::npos) {
      *line = buffered.substr(0, newline);
      buffered.erase(0, newline + 1);
      return true;
    }
    if (eof) return false;
    char chunk[4096];
    ssize_t n = read(output, chunk, sizeof(chunk));
    if (n > 0) {
      buffered.append(chunk, size_t(n));
    } else if (n == 0) {
      eof = true;
    } else if (errno != EINTR) {
      if (errno != EAGAIN) eof = true;
      return false;
    }
  }
}

void WorkerProcess::kill() {
  if (child <= 0) return;
  ::kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  child = -1;
}

int WorkerProcess::wait() {
  if (child <= 0) return -1;
  int status = 0;
  waitpid(child, &status, 0);
  child = -1;
  return status;
}

}  // namespace refstore::soak
