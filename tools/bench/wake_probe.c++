// wakeprobe: how long a plain Unix-socket ping-pong takes when the peer has just answered,
// against when it has been left alone for a few milliseconds, with either side spinning or
// sleeping while it waits. No refstore involved: it measures the machine.
//
//   bazel build -c opt //tools/bench:wakeprobe && bazel-bin/tools/bench/wakeprobe [ROUNDS]
//
// Why: refstore's requests that follow milliseconds of other work (a handoff's seal after the
// producer wrote the value; refprobe idle-wake) cost 0.2-1 ms more than back-to-back ones. On
// this 2-vCPU Firecracker VM the same happens to a bare socketpair whenever the side being woken
// was asleep: a vCPU left idle is descheduled by the host, and waking it costs far more than the
// round trip itself. refstored's busy polling (server/busy_poll.h) only covers the 100 us after
// each request.
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

double now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// Waits for one message: spinning on a non-blocking receive, or asleep in a blocking one.
// Returns false at end of stream.
bool receive(int fd, bool spin) {
  char byte[8];
  for (;;) {
    ssize_t n = recv(fd, byte, sizeof(byte), spin ? MSG_DONTWAIT : 0);
    if (n > 0) return true;
    if (n == 0) return false;
  }
}

void echoForever(int fd, bool spin) {
  char byte[8] = {};
  while (receive(fd, spin)) {
    if (send(fd, byte, sizeof(byte), 0) != ssize_t(sizeof(byte))) break;
  }
  _exit(0);
}

double roundTrip(int fd, bool spin) {
  char byte[8] = {};
  double start = now();
  if (send(fd, byte, sizeof(byte), 0) != ssize_t(sizeof(byte)) || !receive(fd, spin)) {
    perror("wakeprobe: echo peer gone");
    exit(1);
  }
  return now() - start;
}

double percentile(std::vector<double> samples, double p) {
  std::sort(samples.begin(), samples.end());
  return samples[size_t(p * double(samples.size() - 1))];
}

void run(bool peerSpins, bool selfSpins, int rounds) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
    perror("socketpair");
    exit(1);
  }
  pid_t peer = fork();
  if (peer == 0) {
    close(fds[0]);
    echoForever(fds[1], peerSpins);
  }
  close(fds[1]);
  std::vector<double> atOnce, afterIdle;
  for (int i = 0; i < rounds; i++) {
    atOnce.push_back(roundTrip(fds[0], selfSpins));  // the peer has just answered
    double start = now();
    while (now() - start < 0.005) {}                  // 5 ms of our own work, none for the peer
    afterIdle.push_back(roundTrip(fds[0], selfSpins));
  }
  close(fds[0]);
  waitpid(peer, nullptr, 0);
  printf("peer %-6s self %-6s  at once: median %6.1f us (p75 %6.1f)   after 5 ms: median %6.1f us "
         "(p75 %6.1f)\n",
         peerSpins ? "spins" : "sleeps", selfSpins ? "spins" : "sleeps",
         percentile(atOnce, 0.5) * 1e6, percentile(atOnce, 0.75) * 1e6,
         percentile(afterIdle, 0.5) * 1e6, percentile(afterIdle, 0.75) * 1e6);
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 1000;
  for (bool peerSpins: {true, false}) {
    for (bool selfSpins: {true, false}) run(peerSpins, selfSpins, rounds);
  }
  return 0;
}
