/* The C API across fork() and threads, with real processes and threads: a forked child can use
 * nothing it inherited and, dropping it, releases nothing of the parent's; another thread's
 * calls are refused with MISUSE (and described on that thread), its destroys are carried out by
 * the owner; both can connect clients of their own. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/c_testing.h"

static refstore_stats stats_of(refstore_client* client) {
  refstore_stats stats;
  memset(&stats, 0, sizeof(stats));
  CHECK(refstore_stats_get(client, &stats) == REFSTORE_OK);
  return stats;
}

/* Polls until the daemon counts `objects` objects and `holders` holders (1), or 5 s pass (0). */
static int stats_settle_at(refstore_client* client, uint64_t objects, uint64_t holders) {
  for (int attempt = 0; attempt < 500; attempt++) {
    refstore_stats stats = stats_of(client);
    if (stats.objects == objects && stats.holders == holders) return 1;
    usleep(10000);
  }
  return 0;
}

/* A client of one's own: put, read back. Returns 1 if that worked. */
static int own_client_works(const char* socket_path, const char* name) {
  refstore_client* own = connect_with_retry(socket_path, name);
  refstore_ref* ref = NULL;
  char back[8] = {0};
  size_t n = 0;
  int ok = refstore_put(own, "mine", 4, &ref) == REFSTORE_OK &&
           refstore_ref_read(ref, 0, back, 4, &n) == REFSTORE_OK && n == 4 &&
           memcmp(back, "mine", 4) == 0;
  refstore_ref_destroy(ref);
  refstore_client_destroy(own);
  return ok;
}

/* In the child: a failed expectation is printed and counted into the exit status. */
static int child_failures = 0;
#define CHILD_CHECK(cond)                                                         \
  do {                                                                            \
    if (!(cond)) {                                                                \
      child_failures++;                                                           \
      fprintf(stderr, "%s:%d: (child) CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                             \
  } while (0)

static void forked_child_leaves_the_parent_alone(const char* socket_path) {
  refstore_client* client = connect_with_retry(socket_path, "c-parent");
  refstore_ref* ref = NULL;
  CHECK(refstore_put(client, "parent's value", 14, &ref) == REFSTORE_OK);
  refstore_view* view = NULL;
  CHECK(refstore_ref_view(ref, &view) == REFSTORE_OK);
  refstore_buffer* buffer = NULL;
  CHECK(refstore_create(client, 1000, &buffer) == REFSTORE_OK);
  memset(refstore_buffer_data(buffer), 'p', 1000);
  refstore_ref* promised = NULL;
  refstore_fulfiller* fulfiller = NULL;
  CHECK(refstore_promise(client, &promised, &fulfiller) == REFSTORE_OK);
  refstore_stats before = stats_of(client);

  pid_t child = fork();
  if (child == 0) {
    /* Every call on what the child inherited is refused, and says why. */
    refstore_ref* stray = NULL;
    CHILD_CHECK(refstore_put(client, "x", 1, &stray) == REFSTORE_E_MISUSE);
    CHILD_CHECK(stray == NULL);
    CHILD_CHECK(refstore_errcode(client) == REFSTORE_E_MISUSE);
    CHILD_CHECK(strstr(refstore_errmsg(client), "a forked child cannot use it") != NULL);
    refstore_object_info info;
    CHILD_CHECK(refstore_ref_info(ref, &info) == REFSTORE_E_MISUSE);
    CHILD_CHECK(refstore_buffer_write(buffer, 0, "c", 1) == REFSTORE_E_MISUSE);
    char* token = NULL;
    CHILD_CHECK(refstore_buffer_seal_and_share(buffer, 60, 1, NULL, &token) ==
                REFSTORE_E_MISUSE);
    CHILD_CHECK(refstore_fulfill(fulfiller, "c", 1, NULL, 0) == REFSTORE_E_MISUSE);
    refstore_stats stats;
    CHILD_CHECK(refstore_stats_get(client, &stats) == REFSTORE_E_MISUSE);
    /* Dropping all of it releases nothing of the parent's (nor aborts, nor breaks). */
    refstore_view_destroy(view);
    refstore_ref_destroy(ref);
    refstore_buffer_destroy(buffer);
    refstore_fulfiller_destroy(fulfiller);
    refstore_ref_destroy(promised);
    refstore_client_destroy(client);
    /* A client of its own works, on a loop of its own. */
    CHILD_CHECK(own_client_works(socket_path, "c-child"));
    exit(child_failures); /* exit, not _exit: static destructors run too */
  }
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  /* The parent's session survived with everything in it. (The child's own client may take a
   * moment to be gone: wait for the counts to settle back to where they were.) */
  CHECK(stats_settle_at(client, before.objects, before.holders));
  CHECK(memcmp(refstore_view_data(view), "parent's value", 14) == 0);
  refstore_object_info info;
  CHECK(refstore_ref_info(ref, &info) == REFSTORE_OK && info.size == 14);
  refstore_ref* sealed = NULL;
  CHECK(refstore_buffer_seal(buffer, &sealed) == REFSTORE_OK); /* not aborted by the child */
  CHECK(refstore_fulfill(fulfiller, "kept", 4, NULL, 0) == REFSTORE_OK); /* not broken */
  CHECK(refstore_ref_when_ready(promised, 5, &info) == REFSTORE_OK && info.size == 4);
  refstore_ref_destroy(sealed);
  refstore_buffer_destroy(buffer);
  refstore_fulfiller_destroy(fulfiller);
  refstore_ref_destroy(promised);
  refstore_view_destroy(view);
  refstore_ref_destroy(ref);
  CHECK(stats_of(client).objects == 0);
  refstore_client_destroy(client);
}

struct other_thread {
  refstore_client* client; /* the main thread's */
  refstore_ref* dropped;   /* the main thread's, destroyed by this thread */
  const char* socket_path;
  int put_result, errcode_after;
  char errmsg[512];
  int own_client_ok;
};

static void* use_from_other_thread(void* argument) {
  struct other_thread* t = argument;
  refstore_ref* ref = NULL;
  t->put_result = refstore_put(t->client, "x", 1, &ref);
  t->errcode_after = refstore_errcode(t->client);
  snprintf(t->errmsg, sizeof(t->errmsg), "%s", refstore_errmsg(t->client));
  refstore_ref_destroy(t->dropped);
  t->own_client_ok = own_client_works(t->socket_path, "c-thread");
  return NULL;
}

static void other_threads_are_refused(const char* socket_path) {
  refstore_client* client = connect_with_retry(socket_path, "c-owner");
  refstore_ref* kept = NULL;
  refstore_ref* dropped = NULL;
  CHECK(refstore_put(client, "kept", 4, &kept) == REFSTORE_OK);
  CHECK(refstore_put(client, "dropped", 7, &dropped) == REFSTORE_OK);
  CHECK(stats_of(client).objects == 2);

  struct other_thread t;
  memset(&t, 0, sizeof(t));
  t.client = client;
  t.dropped = dropped;
  t.socket_path = socket_path;
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, use_from_other_thread, &t) == 0);
  CHECK(pthread_join(thread, NULL) == 0);
  CHECK(t.put_result == REFSTORE_E_MISUSE);
  CHECK(t.errcode_after == REFSTORE_E_MISUSE);
  CHECK(strstr(t.errmsg, "refstore.MISUSE: a client and its handles belong to the thread") != NULL);
  CHECK(refstore_errcode(client) == REFSTORE_OK); /* the owner's own record is untouched */
  CHECK(t.own_client_ok);

  /* The other thread's destroy is carried out by the owner's next call. */
  CHECK(stats_settle_at(client, 1, 1));
  char back[8] = {0};
  size_t n = 0;
  CHECK(refstore_ref_read(kept, 0, back, 4, &n) == REFSTORE_OK && memcmp(back, "kept", 4) == 0);
  refstore_ref_destroy(kept);
  CHECK(stats_of(client).objects == 0);
  refstore_client_destroy(client);
}

int main(void) {
  test_daemon daemon = start_daemon("rst-cp");
  forked_child_leaves_the_parent_alone(daemon.socket_path);
  other_threads_are_refused(daemon.socket_path);
  stop_daemon(&daemon);
  return finish_checks();
}
