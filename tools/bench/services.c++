#include "tools/bench/services.h"

#include <ftw.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <stdexcept>

#include "client/cpp/refstore_client.h"
#include "tools/bench/timing.h"

namespace refbench {
namespace {

bool exists(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

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

// Whether `binary --help` mentions `option` (refstored gains options while refbench is in use;
// only pass the ones it has).
bool hasOption(const std::string& binary, const std::string& option) {
  FILE* help = popen(("'" + binary + "' --help 2>&1").c_str(), "r");
  if (help == nullptr) return false;
  std::string text;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), help)) > 0) text.append(buffer, n);
  pclose(help);
  return text.find(option) != std::string::npos;
}

}  // namespace

TempDir::TempDir() {
  char pattern[] = "/tmp/refbench-XXXXXX";
  if (mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
  dir = pattern;
}

TempDir::~TempDir() {
  nftw(dir.c_str(),
       [](const char* path, const struct stat*, int, struct FTW*) { return remove(path); }, 16,
       FTW_DEPTH | FTW_PHYS);
}

std::string findRefstored(const std::string& flag) {
  if (!flag.empty()) {
    if (!exists(flag)) throw std::runtime_error("--refstored " + flag + " is not executable");
    return flag;
  }
  std::string self = selfPath();
  std::vector<std::string> candidates = {
      self + ".runfiles/refstore/server/refstored",
      self.substr(0, self.rfind("/tools/bench/")) + "/server/refstored",
      "bazel-bin/server/refstored",
  };
  for (auto& candidate: candidates) {
    if (exists(candidate)) return candidate;
  }
  throw std::runtime_error("cannot find refstored (build //server:refstored or pass --refstored)");
}

// The last lines of a daemon's log, for error messages (its temporary directory is removed).
std::string logTail(const std::string& logPath) {
  FILE* file = fopen(logPath.c_str(), "r");
  if (file == nullptr) return "";
  std::string text;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), file)) > 0) text.append(buffer, n);
  fclose(file);
  if (text.size() > 2000) text = text.substr(text.size() - 2000);
  return text.empty() ? "" : "\n--- " + logPath + " ---\n" + text;
}

void waitForSocket(const std::string& path, double seconds, Child& owner,
                   const std::string& logPath) {
  double deadline = now() + seconds;
  while (!canConnect(path)) {
    if (!owner.running()) {
      throw std::runtime_error("daemon exited before listening on " + path + logTail(logPath));
    }
    if (now() > deadline) {
      throw std::runtime_error("daemon did not listen on " + path + logTail(logPath));
    }
    usleep(2000);
  }
}

Refstored::Refstored(const std::string& binary, const TempDir& dir, const std::string& name,
                     const std::string& memory, const std::vector<std::string>& extraArgs)
    : socketPath(dir.path() + "/" + name + ".sock"), log(dir.path() + "/" + name + ".log") {
  std::vector<std::string> argv = {binary, "--socket", socketPath, "--memory", memory};
  // A spill directory of its own: the default one is per user and locked by whichever daemon
  // got there first (another engineer's, or refbench's other daemon).
  if (hasOption(binary, "--spill-dir")) {
    argv.push_back("--spill-dir=" + dir.path() + "/" + name + ".spill");
  }
  argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
  process = Child::start(argv, /*pipes=*/false, log);
  waitForSocket(socketPath, 20, process, log);
  // The daemon pre-faults a spare segment on its libuv threadpool at start: give it up to half a
  // second, so the first measurement does not compete with it for one of the two cores. (Not
  // longer: at the time of writing the spare is built and then dropped, see BENCHMARKS.md, so
  // Stats.segments can stay 0 until the first allocation.)
  refstore::Client client = refstore::Client::connect(socketPath);
  double deadline = now() + 0.5;
  while (client.stats().segments == 0 && now() < deadline) usleep(5000);
}

Refstored::~Refstored() {
  process.signal(SIGTERM);
  process.wait();
}

Redis::Redis(const std::string& binary, const TempDir& dir) {
  start(binary, dir, "redis", {"--port", "0"});
}

Redis::Redis(const std::string& binary, const TempDir& dir, const std::string& name,
             const std::string& ip) {
  // A free port on `ip`: bound and released, then given to redis-server (nothing else on this
  // address asks for one meanwhile).
  int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  inet_pton(AF_INET, ip.c_str(), &address.sin_addr);
  socklen_t length = sizeof(address);
  if (probe < 0 || bind(probe, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      getsockname(probe, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw std::runtime_error("Redis: no free TCP port on " + ip);
  }
  int port = ntohs(address.sin_port);
  close(probe);
  start(binary, dir, name,
        {"--bind", ip, "--port", std::to_string(port), "--protected-mode", "no"});
  tcp = "tcp:" + ip + ":" + std::to_string(port);
}

void Redis::start(const std::string& binary, const TempDir& dir, const std::string& name,
                  std::vector<std::string> extraArgs) {
  socketPath = dir.path() + "/" + name + ".sock";
  std::vector<std::string> argv = {binary,
                                   "--unixsocket", socketPath,
                                   "--unixsocketperm", "700",
                                   "--save", "",
                                   "--appendonly", "no",
                                   "--dir", dir.path(),
                                   "--dbfilename", name + ".rdb",
                                   "--logfile", dir.path() + "/" + name + ".log",
                                   "--proto-max-bulk-len", "2gb",
                                   "--client-query-buffer-limit", "2gb",
                                   "--daemonize", "no"};
  argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
  process = Child::start(argv, /*pipes=*/false, dir.path() + "/" + name + ".stderr");
  waitForSocket(socketPath, 20, process, dir.path() + "/" + name + ".log");
}

Redis::~Redis() {
  process.signal(SIGTERM);
  process.wait();
}

}  // namespace refbench
