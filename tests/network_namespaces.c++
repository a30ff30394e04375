#include "tests/network_namespaces.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "tests/daemon.h"

extern char** environ;

namespace refstore::testing {
namespace {

constexpr const char* NETNS_DIR = "/run/netns";
constexpr const char* PREFIX = "rst-";
constexpr size_t ID_LENGTH = 8;
constexpr const char* FAULT_TABLE = "rst_faults";

std::string randomId() {
  uint32_t random = 0;
  if (getrandom(&random, sizeof(random), 0) != sizeof(random)) abort();
  char text[ID_LENGTH + 1];
  snprintf(text, sizeof(text), "%08x", random);
  return text;
}

std::string lockPath(const std::string& id) { return "/tmp/rst-netns-" + id + ".lock"; }

// "<id>" of a namespace name "rst-<id>-<anything>", or "" if the name is not one of ours.
std::string idOf(const std::string& name) {
  if (name.compare(0, strlen(PREFIX), PREFIX) != 0) return "";
  std::string id = name.substr(strlen(PREFIX), ID_LENGTH);
  if (id.size() != ID_LENGTH || name.size() <= strlen(PREFIX) + ID_LENGTH ||
      name[strlen(PREFIX) + ID_LENGTH] != '-' ||
      id.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return "";
  }
  return id;
}

std::string namespacePath(const std::string& name) { return std::string(NETNS_DIR) + "/" + name; }

std::string describe(const std::vector<std::string>& argv) {
  std::string text;
  for (auto& word: argv) text += (text.empty() ? "" : " ") + word;
  return text;
}

std::string requireTool(const std::string& name) {
  std::string path = findTool(name);
  if (path.empty()) {
    throw std::runtime_error("the '" + name + "' tool is not installed: run tools/setup");
  }
  return path;
}

// Runs `argv` (with `input` on stdin); throws naming the command and its stderr if it fails.
std::string mustRun(const std::vector<std::string>& argv, const std::string& input = "") {
  CommandResult result = runCommand(argv, input);
  if (!result.ok()) {
    throw std::runtime_error("'" + describe(argv) + "' failed: " + result.errors);
  }
  return result.output;
}

std::string ipTool() {
  static const std::string path = requireTool("ip");
  return path;
}

// Kills every process in namespace `name` (what `ip netns pids` lists: processes whose network
// namespace is the one that name is bound to).
void killProcessesIn(const std::string& name) {
  struct stat space;
  if (stat(namespacePath(name).c_str(), &space) != 0) return;
  for (auto& entry: listDirectory("/proc")) {
    if (entry.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat own;
    if (stat(("/proc/" + entry + "/ns/net").c_str(), &own) == 0 && own.st_dev == space.st_dev &&
        own.st_ino == space.st_ino) {
      kill(std::stoi(entry), SIGKILL);
    }
  }
}

// Kills whatever runs in the namespaces, then deletes them (their veths go with them).
void deleteNamespaces(const std::vector<std::string>& names) {
  std::string script;
  for (auto& name: names) {
    killProcessesIn(name);
    script += "netns del " + name + "\n";
  }
  runCommand({ipTool(), "-force", "-batch", "-"}, script);  // -force: on past a missing one
}

// --- removing our namespaces' names when the test is killed by a signal ---
// A signal handler may only use async-signal-safe calls: it cannot run `ip netns del`, but
// deleting a namespace's name is umount2 + unlink, which is what `ip netns del` does. The
// namespace itself goes when its last process exits.

constexpr int MAX_REGISTERED = 256;
constexpr size_t PATH_BYTES = 64;
char registeredPaths[MAX_REGISTERED][PATH_BYTES];
std::atomic<bool> registeredInUse[MAX_REGISTERED];
std::mutex registryMutex;
constexpr int CLEANUP_SIGNALS[] = {SIGTERM, SIGINT, SIGHUP, SIGABRT};
struct sigaction previousActions[NSIG];

void removeNamesOnSignal(int signal) {
  for (int i = 0; i < MAX_REGISTERED; i++) {
    if (registeredInUse[i].load()) {
      umount2(registeredPaths[i], MNT_DETACH);  // fails harmlessly for the lock file
      unlink(registeredPaths[i]);
    }
  }
  sigaction(signal, &previousActions[signal], nullptr);
  raise(signal);
}

void installSignalCleanup() {
  // Installed again by every network: doctest restores its own handlers after each test case.
  for (int signal: CLEANUP_SIGNALS) {
    struct sigaction current;
    sigaction(signal, nullptr, &current);
    if (current.sa_handler == removeNamesOnSignal) continue;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = removeNamesOnSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    sigaction(signal, &action, &previousActions[signal]);
  }
}

// Registers files (namespace names, a lock file) for removal on a signal.
void registerPaths(const std::vector<std::string>& paths) {
  std::lock_guard<std::mutex> lock(registryMutex);
  for (auto& path: paths) {
    for (int i = 0; i < MAX_REGISTERED; i++) {
      if (!registeredInUse[i].load()) {
        snprintf(registeredPaths[i], PATH_BYTES, "%s", path.c_str());
        registeredInUse[i].store(true);
        break;
      }
    }
  }
}

void unregisterPaths(const std::vector<std::string>& paths) {
  std::lock_guard<std::mutex> lock(registryMutex);
  for (auto& path: paths) {
    for (int i = 0; i < MAX_REGISTERED; i++) {
      if (registeredInUse[i].load() && path == registeredPaths[i]) registeredInUse[i] = false;
    }
  }
}

// Holds the lock file that says a network (or probe) with `id` is alive.
int lockId(const std::string& id) {
  int fd = open(lockPath(id).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || flock(fd, LOCK_EX) != 0) {
    throw std::runtime_error("cannot lock " + lockPath(id) + ": " + strerror(errno));
  }
  return fd;
}

void unlockId(const std::string& id, int fd) {
  unlink(lockPath(id).c_str());
  close(fd);
}

}  // namespace

bool CommandResult::ok() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

CommandResult runCommand(const std::vector<std::string>& argv, const std::string& input) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error("pipe failed");
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  std::vector<char*> args;
  for (auto& arg: argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  CommandResult result{0, "", ""};
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    close(err[0]);
    throw std::runtime_error("cannot run " + argv[0] + ": " + strerror(rc));
  }
  // Scripts are small (a pipe holds 64 KiB): written whole before the output is read.
  if (!input.empty() && write(in[1], input.data(), input.size()) != ssize_t(input.size())) {
    result.errors = "could not write the command's input; ";
  }
  close(in[1]);
  struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.output, &result.errors};
  int openPipes = 2;
  while (openPipes > 0) {
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      ssize_t n = read(fds[i].fd, buffer, sizeof(buffer));
      if (n > 0) {
        sinks[i]->append(buffer, n);
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        openPipes--;
      }
    }
  }
  waitpid(pid, &result.status, 0);
  return result;
}

std::string findTool(const std::string& name) {
  for (const char* dir: {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"}) {
    std::string path = dir + name;
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

std::string NamespaceNetwork::unavailable() {
  static const std::string why = probeNamespaces();  // once per process
  return why;
}

std::string NamespaceNetwork::probeNamespaces() {
  if (geteuid() != 0) {
    return "not running as root (network namespaces need CAP_SYS_ADMIN; CI runs as root)";
  }
  for (const char* tool: {"ip", "nsenter"}) {
    if (findTool(tool).empty()) {
      return std::string("the '") + tool + "' tool is not installed (run tools/setup)";
    }
  }
  std::string id = randomId();
  int lock = lockId(id);
  std::string probe = PREFIX + id + "-probe";
  CommandResult added = runCommand({ipTool(), "netns", "add", probe});
  std::string why;
  if (!added.ok()) {
    why = "'ip netns add' fails here (" + added.errors.substr(0, added.errors.find('\n')) +
          "); under Bazel, tag the test \"local\": its sandbox mounts /run/netns read-only";
  } else {
    runCommand({ipTool(), "netns", "del", probe});
  }
  unlockId(id, lock);
  return why;
}

size_t NamespaceNetwork::removeStale() {
  std::map<std::string, std::vector<std::string>> namesById;
  if (DIR* dir = opendir(NETNS_DIR)) {
    while (struct dirent* entry = readdir(dir)) {
      std::string id = idOf(entry->d_name);
      if (!id.empty()) namesById[id].push_back(entry->d_name);
    }
    closedir(dir);
  }
  size_t removed = 0;
  for (auto& [id, names]: namesById) {
    // Alive while its creator holds the lock. The lock file is created before any namespace
    // and removed after the last, so a missing one means a dead run as well.
    int fd = open(lockPath(id).c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      continue;
    }
    deleteNamespaces(names);
    removed += names.size();
    if (fd >= 0) unlockId(id, fd);
  }
  // Lock files of runs killed before they made a namespace (old enough not to be a run that is
  // between locking and creating).
  if (DIR* dir = opendir("/tmp")) {
    while (struct dirent* entry = readdir(dir)) {
      std::string name = entry->d_name;
      if (name.compare(0, 10, "rst-netns-") != 0) continue;
      std::string path = "/tmp/" + name;
      struct stat info;
      if (stat(path.c_str(), &info) != 0 || time(nullptr) - info.st_mtime < 60) continue;
      int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
      if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) unlink(path.c_str());
      if (fd >= 0) close(fd);
    }
    closedir(dir);
  }
  return removed;
}

NamespaceNetwork::NamespaceNetwork(size_t hosts)
    : networkId(randomId()), hostCount(hosts), dropping(hosts, false) {
  if (hosts > 250) throw std::invalid_argument("at most 250 hosts in a /24");
  removeStale();
  uint32_t random = 0;
  if (getrandom(&random, sizeof(random), 0) != sizeof(random)) abort();
  subnet[0] = 64 + random % 128;  // 10.64.0.0 - 10.191.255.255: clear of common VPN ranges
  subnet[1] = (random >> 8) & 0xFF;
  lockFd = lockId(networkId);
  installSignalCleanup();
  registerPaths(signalCleanupPaths());
  try {
    // Three kinds of `ip -batch` (one process each, not one per step): namespaces and veths
    // from here, the bridge inside the switch, addresses inside each host.
    std::string sw = switchName(), made = "netns add " + sw + "\n", wired, hostSetup;
    wired = "link add br0 type bridge\nlink set br0 up\n";
    for (size_t i = 0; i < hosts; i++) {
      std::string port = "h" + std::to_string(i);
      made += "netns add " + name(i) + "\n";
      made += "link add eth0 netns " + name(i) + " type veth peer name " + port + " netns " + sw +
              "\n";
      wired += "link set " + port + " master br0 up\n";
    }
    mustRun({ipTool(), "-batch", "-"}, made);
    mustRun({ipTool(), "-n", sw, "-batch", "-"}, wired);
    for (size_t i = 0; i < hosts; i++) {
      mustRun({ipTool(), "-n", name(i), "-batch", "-"},
              "addr add " + ip(i) + "/24 dev eth0\nlink set eth0 up\nlink set lo up\n");
    }
  } catch (...) {
    deleteNamespaces(allNames());
    unregisterPaths(signalCleanupPaths());
    unlockId(networkId, lockFd);
    throw;
  }
}

NamespaceNetwork::~NamespaceNetwork() {
  deleteNamespaces(allNames());
  unregisterPaths(signalCleanupPaths());
  unlockId(networkId, lockFd);
}

std::vector<std::string> NamespaceNetwork::allNames() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < hostCount; i++) names.push_back(name(i));
  names.push_back(switchName());
  return names;
}

std::vector<std::string> NamespaceNetwork::signalCleanupPaths() const {
  std::vector<std::string> paths = {lockPath(networkId)};
  for (auto& name: allNames()) paths.push_back(namespacePath(name));
  return paths;
}

std::string NamespaceNetwork::name(size_t host) const {
  return PREFIX + networkId + "-h" + std::to_string(host);
}

std::string NamespaceNetwork::path(size_t host) const { return namespacePath(name(host)); }

std::string NamespaceNetwork::switchName() const { return PREFIX + networkId + "-sw"; }

std::string NamespaceNetwork::ip(size_t host) const {
  return "10." + std::to_string(subnet[0]) + "." + std::to_string(subnet[1]) + "." +
         std::to_string(host + 1);
}

std::vector<std::string> NamespaceNetwork::commandPrefix(size_t host) const {
  return {requireTool("nsenter"), "--net=" + path(host), "--"};
}

void NamespaceNetwork::enter(size_t host) const {
  int fd = open(path(host).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path(host) + ": " + strerror(errno));
  int result = setns(fd, CLONE_NEWNET);
  int error = errno;
  close(fd);
  if (result != 0) {
    throw std::runtime_error("cannot enter " + path(host) + ": " + strerror(error));
  }
}

std::string NamespaceNetwork::runIn(size_t host, const std::string& tool,
                                    const std::vector<std::string>& args) const {
  std::vector<std::string> argv = commandPrefix(host);
  argv.push_back(requireTool(tool));
  argv.insert(argv.end(), args.begin(), args.end());
  return mustRun(argv);
}

void NamespaceNetwork::setLink(size_t host, bool up) {
  mustRun({ipTool(), "-n", switchName(), "link", "set", "h" + std::to_string(host),
           up ? "up" : "down"});
}

void NamespaceNetwork::shape(size_t host, uint64_t bitsPerSecond) {
  std::string tc = requireTool("tc");
  std::string port = "h" + std::to_string(host);
  std::vector<std::pair<std::string, std::string>> ends = {{name(host), "eth0"},
                                                           {switchName(), port}};
  for (auto& [space, device]: ends) {
    std::vector<std::string> prefix = {requireTool("nsenter"), "--net=" + namespacePath(space),
                                       "--", tc, "qdisc"};
    if (bitsPerSecond == 0) {
      std::vector<std::string> argv = prefix;
      argv.insert(argv.end(), {"del", "dev", device, "root"});
      runCommand(argv);  // fails harmlessly when there was no cap
      continue;
    }
    // tbf needs a bucket of at least one timer tick's worth of bytes; 20 ms is plenty.
    uint64_t burst = std::max<uint64_t>(32 << 10, bitsPerSecond / 8 / 50);
    std::vector<std::string> argv = prefix;
    argv.insert(argv.end(), {"replace", "dev", device, "root", "tbf", "rate",
                             std::to_string(bitsPerSecond) + "bit", "burst",
                             std::to_string(burst), "latency", "200ms"});
    mustRun(argv);
  }
}

void NamespaceNetwork::dropTraffic(size_t host, std::optional<size_t> peer) {
  std::string input = peer ? "ip saddr " + ip(*peer) : "iifname \"eth0\"";
  std::string output = peer ? "ip daddr " + ip(*peer) : "oifname \"eth0\"";
  std::string table = std::string("inet ") + FAULT_TABLE;
  // One nft invocation: the rules take effect together.
  std::string script =
      "add table " + table + "\n" +
      "add chain " + table + " input { type filter hook input priority 0; policy accept; }\n" +
      "add chain " + table + " output { type filter hook output priority 0; policy accept; }\n" +
      "add rule " + table + " input " + input + " drop\n" +
      "add rule " + table + " output " + output + " drop\n";
  std::vector<std::string> argv = commandPrefix(host);
  argv.insert(argv.end(), {requireTool("nft"), "-f", "-"});
  mustRun(argv, script);
  dropping[host] = true;
}

void NamespaceNetwork::allowTraffic(size_t host) {
  if (!dropping[host]) return;
  runIn(host, "nft", {"delete", "table", "inet", FAULT_TABLE});
  dropping[host] = false;
}

}  // namespace refstore::testing
