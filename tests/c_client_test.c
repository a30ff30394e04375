/* The C API (client/c/refstore.h), exercised from plain C against a real refstored. */
/* -std=c11 hides POSIX: usleep() and kill() need the default (BSD + POSIX) declarations. */
#define _DEFAULT_SOURCE
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/c/refstore.h"

extern char** environ;

static int failures = 0;
static int checks = 0;
#define CHECK(cond)                                                   \
  do {                                                                \
    checks++;                                                         \
    if (!(cond)) {                                                    \
      failures++;                                                     \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                 \
  } while (0)

static pid_t start_daemon(const char* socket_path) {
  char* argv[] = {"server/refstored", "--socket", (char*)socket_path, "--memory", "64M",
                  "--segment-size", "8M", "--no-spill", NULL};
  pid_t pid;
  if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0) {
    perror("posix_spawn");
    exit(2);
  }
  return pid;
}

static refstore_client* connect_with_retry(const char* socket_path) {
  char err[256];
  for (int attempt = 0; attempt < 2000; attempt++) {
    refstore_client* client = NULL;
    if (refstore_connect(socket_path, "c-test", &client, err, sizeof(err)) == REFSTORE_OK) {
      return client;
    }
    usleep(10000);
  }
  fprintf(stderr, "could not connect: %s\n", err);
  exit(2);
}

int main(void) {
  /* Random, not pid-based: Bazel sandboxes share /tmp but not pid namespaces. */
  char socket_path[64];
  unsigned long long random_id = 0;
  if (getrandom(&random_id, sizeof(random_id), 0) != sizeof(random_id)) return 2;
  snprintf(socket_path, sizeof(socket_path), "/tmp/rst-c-%016llx.sock", random_id);

  /* Connecting to nothing fails with a code and a message, and leaves *out NULL. */
  refstore_client* none = (refstore_client*)1;
  char err[256] = "";
  CHECK(refstore_connect("/tmp/rst-no-such-socket.sock", NULL, &none, err, sizeof(err)) ==
        REFSTORE_E_DISCONNECTED);
  CHECK(none == NULL);
  CHECK(strstr(err, "cannot connect") != NULL);

  pid_t daemon = start_daemon(socket_path);
  refstore_client* client = connect_with_retry(socket_path);
  CHECK(strcmp(refstore_version(), "0.1.0") == 0);
  CHECK(strcmp(refstore_errstr(REFSTORE_E_NOT_FOUND), "NOT_FOUND") == 0);
  CHECK(refstore_errcode(client) == REFSTORE_OK);

  /* put -> info -> read */
  refstore_ref* ref = NULL;
  CHECK(refstore_put(client, "hello from C", 12, &ref) == REFSTORE_OK);
  refstore_object_info info;
  CHECK(refstore_ref_info(ref, &info) == REFSTORE_OK);
  CHECK(info.size == 12);
  CHECK(strcmp(info.state, "sealed") == 0);
  char out[32] = {0};
  size_t n = 0;
  CHECK(refstore_ref_read(ref, 6, out, sizeof(out), &n) == REFSTORE_OK);
  CHECK(n == 6 && memcmp(out, "from C", 6) == 0);

  /* create -> write in place -> seal -> view */
  refstore_buffer* buffer = NULL;
  CHECK(refstore_create(client, 100000, &buffer) == REFSTORE_OK);
  CHECK(refstore_buffer_size(buffer) == 100000);
  uint8_t* data = refstore_buffer_data(buffer);
  CHECK(data != NULL);
  for (int i = 0; i < 100000; i++) data[i] = (uint8_t)(i * 7);
  refstore_ref* big = NULL;
  CHECK(refstore_buffer_seal(buffer, &big) == REFSTORE_OK);
  refstore_ref* again = NULL;
  CHECK(refstore_buffer_seal(buffer, &again) == REFSTORE_E_FAILED_PRECONDITION);
  CHECK(again == NULL);
  CHECK(strstr(refstore_errmsg(client), "sealed") != NULL);
  refstore_buffer_destroy(buffer);
  refstore_view* view = NULL;
  CHECK(refstore_ref_view(big, &view) == REFSTORE_OK);
  CHECK(refstore_view_size(view) == 100000);
  CHECK(refstore_view_data(view)[99999] == (uint8_t)(99999 * 7));

  /* share -> restore; errors carry codes and messages */
  char* token = NULL;
  CHECK(refstore_ref_share(big, 60, 0, &token) == REFSTORE_OK);
  refstore_ref* restored = NULL;
  CHECK(refstore_restore(client, token, &restored) == REFSTORE_OK);
  refstore_ref* bad = NULL;
  CHECK(refstore_restore(client, "not-a-token", &bad) == REFSTORE_E_MALFORMED);
  CHECK(bad == NULL);
  CHECK(refstore_errcode(client) == REFSTORE_E_MALFORMED);
  CHECK(strstr(refstore_errmsg(client), "refstore.MALFORMED") != NULL);
  CHECK(refstore_create(client, 0, &buffer) == REFSTORE_E_INVALID_ARGUMENT);
  CHECK(refstore_ref_read(ref, 13, out, 1, &n) == REFSTORE_E_OUT_OF_RANGE);
  CHECK(refstore_put(NULL, "x", 1, &ref) == REFSTORE_E_MISUSE);

  /* handoff in one round trip each: seal_and_share -> restore_view */
  refstore_buffer* handed = NULL;
  CHECK(refstore_create(client, 70000, &handed) == REFSTORE_OK);
  for (int i = 0; i < 70000; i++) refstore_buffer_data(handed)[i] = (uint8_t)(i * 3);
  char* handoff_token = NULL;
  CHECK(refstore_buffer_seal_and_share(handed, 60, 1, NULL, &handoff_token) == REFSTORE_OK);
  CHECK(handoff_token != NULL);
  CHECK(refstore_buffer_seal_and_share(handed, 60, 1, NULL, &handoff_token) ==
        REFSTORE_E_FAILED_PRECONDITION);
  refstore_buffer_destroy(handed);
  refstore_view* handed_view = NULL;
  CHECK(refstore_restore_view(client, handoff_token, &handed_view) == REFSTORE_OK);
  CHECK(refstore_view_size(handed_view) == 70000);
  CHECK(refstore_view_data(handed_view)[69999] == (uint8_t)(69999 * 3));
  refstore_view* spent = NULL;
  CHECK(refstore_restore_view(client, handoff_token, &spent) == REFSTORE_E_NOT_FOUND);
  CHECK(spent == NULL);
  refstore_view_destroy(handed_view); /* the last hold: the value is freed */
  refstore_string_free(handoff_token);
  CHECK(refstore_create(client, 10, &handed) == REFSTORE_OK);
  refstore_ref* kept = NULL;
  CHECK(refstore_buffer_seal_and_share(handed, 0, 1, &kept, &handoff_token) ==
        REFSTORE_E_INVALID_ARGUMENT); /* ttl 0: the share fails, the sealed value is dropped */
  CHECK(kept == NULL);
  refstore_buffer_destroy(handed);

  /* put_many -> read_many, all or nothing */
  const char* words[3] = {"alpha", "be", "gamma!"};
  size_t lengths[3] = {5, 2, 6};
  refstore_ref* batch[3] = {NULL, NULL, NULL};
  CHECK(refstore_put_many(client, (const void* const*)words, lengths, 3, batch) == REFSTORE_OK);
  CHECK(batch[0] != NULL && batch[1] != NULL && batch[2] != NULL);
  refstore_ref* backwards[3] = {batch[2], batch[1], batch[0]};
  uint8_t* bytes = NULL;
  size_t sizes[3] = {0, 0, 0};
  CHECK(refstore_read_many(client, backwards, 3, &bytes, sizes) == REFSTORE_OK);
  CHECK(sizes[0] == 6 && sizes[1] == 2 && sizes[2] == 5);
  CHECK(bytes != NULL && memcmp(bytes, "gamma!bealpha", 13) == 0);
  refstore_bytes_free(bytes);
  size_t with_empty[3] = {5, 0, 6};
  refstore_ref* untouched[3] = {NULL, NULL, NULL};
  CHECK(refstore_put_many(client, (const void* const*)words, with_empty, 3, untouched) ==
        REFSTORE_E_INVALID_ARGUMENT);
  CHECK(untouched[0] == NULL && untouched[2] == NULL);
  CHECK(strstr(refstore_errmsg(client), "value 1") != NULL);
  CHECK(refstore_read_many(client, NULL, 1, &bytes, sizes) == REFSTORE_E_MISUSE);
  for (int i = 0; i < 3; i++) refstore_ref_destroy(batch[i]);

  refstore_stats stats;
  CHECK(refstore_stats_get(client, &stats) == REFSTORE_OK);
  CHECK(stats.objects == 2);
  CHECK(stats.tokens == 1);

  /* destroy(NULL) is a no-op; handles may outlive the client handle. */
  refstore_ref_destroy(NULL);
  refstore_view_destroy(NULL);
  refstore_buffer_destroy(NULL);
  refstore_client_destroy(NULL);
  refstore_string_free(NULL);
  refstore_string_free(token);
  refstore_view_destroy(view);
  refstore_ref_destroy(big);
  refstore_ref_destroy(restored);
  refstore_ref_destroy(ref);

  refstore_client* observer = connect_with_retry(socket_path);
  CHECK(refstore_stats_get(observer, &stats) == REFSTORE_OK);
  CHECK(stats.holders == 0);
  CHECK(stats.objects == 1); /* kept only by its share token */
  refstore_client_destroy(observer);
  refstore_client_destroy(client);

  kill(daemon, SIGTERM);
  int status = 0;
  waitpid(daemon, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
