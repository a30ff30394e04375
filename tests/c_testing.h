/* Test support for the C API's tests (plain C): a CHECK macro that counts failures, and a real
 * refstored on a fresh short socket path. */
#ifndef REFSTORE_TESTS_C_TESTING_H_
#define REFSTORE_TESTS_C_TESTING_H_

#include <stdio.h>
#include <sys/types.h>

#include "client/c/refstore.h"

extern int c_testing_failures;
extern int c_testing_checks;

#define CHECK(cond)                                                              \
  do {                                                                           \
    c_testing_checks++;                                                          \
    if (!(cond)) {                                                               \
      c_testing_failures++;                                                      \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
    }                                                                            \
  } while (0)

typedef struct test_daemon {
  pid_t pid;
  char socket_path[64];
} test_daemon;

/* Starts server/refstored (from the runfiles) with 64M of memory in 8M segments, no spilling,
 * on "/tmp/<prefix>-<random>.sock" (random, not pid-based: Bazel sandboxes share /tmp but not
 * pid namespaces). */
test_daemon start_daemon(const char* prefix);
/* SIGTERM, then checks that it exited cleanly. */
void stop_daemon(test_daemon* daemon);
/* Connects, retrying while the daemon starts (exits the test after 20 s). */
refstore_client* connect_with_retry(const char* socket_path, const char* name);
/* Prints the tally; the process's exit status (0: every check passed). */
int finish_checks(void);

#endif /* REFSTORE_TESTS_C_TESTING_H_ */
