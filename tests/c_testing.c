#include "tests/c_testing.h"

#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

int c_testing_failures = 0;
int c_testing_checks = 0;

test_daemon start_daemon(const char* prefix) {
  test_daemon daemon;
  unsigned long long random_id = 0;
  if (getrandom(&random_id, sizeof(random_id), 0) != sizeof(random_id)) exit(2);
  snprintf(daemon.socket_path, sizeof(daemon.socket_path), "/tmp/%s-%016llx.sock", prefix,
           random_id);
  char* argv[] = {"server/refstored", "--socket", daemon.socket_path, "--memory", "64M",
                  "--segment-size", "8M", "--no-spill", NULL};
  if (posix_spawn(&daemon.pid, argv[0], NULL, NULL, argv, environ) != 0) {
    perror("posix_spawn");
    exit(2);
  }
  return daemon;
}

void stop_daemon(test_daemon* daemon) {
  kill(daemon->pid, SIGTERM);
  int status = 0;
  waitpid(daemon->pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

refstore_client* connect_with_retry(const char* socket_path, const char* name) {
  char err[256] = "";
  for (int attempt = 0; attempt < 2000; attempt++) {
    refstore_client* client = NULL;
    if (refstore_connect(socket_path, name, &client, err, sizeof(err)) == REFSTORE_OK) {
      return client;
    }
    usleep(10000);
  }
  fprintf(stderr, "could not connect: %s\n", err);
  exit(2);
}

int finish_checks(void) {
  printf("%d checks, %d failed\n", c_testing_checks, c_testing_failures);
  return c_testing_failures == 0 ? 0 : 1;
}
