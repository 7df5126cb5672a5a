/* test_outbox: the webhook journal keeps pending, dead and delivered keys across a
 * reopen; a torn or corrupt tail is cut at the last whole record; a full outbox refuses;
 * compaction keeps the state and forgets delivered keys after remember_us. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "outbox.h"
#include "tmpdir.h"

#define T0 1795376225000000LL

static outbox_t *open_dir(const char *dir, uint64_t max_bytes) {
  char err[256] = "";
  outbox_opts_t o = {max_bytes, 3600LL * 1000000, 0};
  outbox_t *ob = outbox_open(dir, &o, err, sizeof err);
  if (!ob) printf("  outbox_open: %s\n", err);
  return ob;
}

static int add(outbox_t *ob, const char *key, const char *body) {
  return outbox_add(ob, key, "crm", body, strlen(body), T0, NULL);
}

static int state_of(outbox_t *ob, const char *key) {
  outbox_entry_t *e = outbox_find(ob, key);
  return e ? (int)e->state : 0;
}

static off_t file_size(const char *dir) {
  char p[600];
  snprintf(p, sizeof p, "%s/outbox", dir);
  struct stat st;
  return stat(p, &st) == 0 ? st.st_size : -1;
}

TEST(states_survive_reopen) {
  const char *d = test_dir("reopen");
  outbox_t *ob = open_dir(d, 0);
  REQUIRE(ob);
  CHECK_INT(add(ob, "k1", "{\"a\":1}"), 0);
  CHECK_INT(add(ob, "k2", "{\"a\":2}"), 0);
  CHECK_INT(add(ob, "k3", "{\"a\":3}"), 0);
  CHECK_INT(add(ob, "k1", "{\"other\":1}"), -EEXIST);
  CHECK_INT(outbox_done(ob, outbox_find(ob, "k1"), T0 + 1), 0);
  CHECK_INT(outbox_dead(ob, outbox_find(ob, "k2"), T0 + 2), 0);
  CHECK_INT(outbox_sync(ob), 0);
  outbox_close(ob);

  ob = open_dir(d, 0);
  REQUIRE(ob);
  CHECK_INT(state_of(ob, "k1"), OUTBOX_DONE);
  CHECK_INT(state_of(ob, "k2"), OUTBOX_DEAD);
  CHECK_INT(state_of(ob, "k3"), OUTBOX_PENDING);
  CHECK_STR(outbox_find(ob, "k3")->body, "{\"a\":3}");
  CHECK_STR(outbox_find(ob, "k3")->endpoint, "crm");
  CHECK(outbox_find(ob, "k1")->body == NULL);
  /* Delivered keys are still known: a replayed decision is refused. */
  CHECK_INT(add(ob, "k1", "{\"a\":1}"), -EEXIST);
  /* Requeue the dead letter, then it is pending after another reopen. */
  CHECK_INT(outbox_requeue(ob, "nope", NULL, NULL), 0);
  CHECK_INT(outbox_requeue(ob, NULL, NULL, NULL), 1);
  outbox_stats_t st;
  outbox_stats(ob, &st);
  CHECK_INT(st.pending, 2);
  CHECK_INT(st.dead, 0);
  CHECK_INT(st.done, 1);
  CHECK_INT(st.bytes, 14);
  outbox_close(ob);
  ob = open_dir(d, 0);
  REQUIRE(ob);
  CHECK_INT(state_of(ob, "k2"), OUTBOX_PENDING);
  outbox_close(ob);
}

TEST(torn_tail_is_cut) {
  const char *d = test_dir("torn");
  outbox_t *ob = open_dir(d, 0);
  REQUIRE(ob);
  CHECK_INT(add(ob, "k1", "{\"a\":1}"), 0);
  off_t whole = file_size(d);
  CHECK_INT(add(ob, "k2", "{\"a\":2,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}"), 0);
  outbox_close(ob);
  /* A crash in the middle of the second record: every cut point keeps k1 only. */
  off_t full = file_size(d);
  char p[600];
  snprintf(p, sizeof p, "%s/outbox", d);
  for (off_t cut = full - 1; cut > whole; cut -= 7) {
    REQUIRE(truncate(p, cut) == 0);
    ob = open_dir(d, 0);
    REQUIRE(ob);
    outbox_stats_t st;
    outbox_stats(ob, &st);
    if (st.pending != 1 || !outbox_find(ob, "k1") || outbox_find(ob, "k2") ||
        st.dropped_tail_bytes != (uint64_t)(cut - whole))
      FAILF("cut at %lld: pending %llu dropped %llu", (long long)cut,
            (unsigned long long)st.pending, (unsigned long long)st.dropped_tail_bytes);
    /* The cut file takes new records that survive. */
    CHECK_INT(add(ob, "k9", "{}"), 0);
    outbox_close(ob);
    ob = open_dir(d, 0);
    REQUIRE(ob);
    CHECK_INT(state_of(ob, "k9"), OUTBOX_PENDING);
    outbox_close(ob);
    REQUIRE(truncate(p, whole) == 0);
  }
}

TEST(corrupt_record_ends_replay) {
  const char *d = test_dir("corrupt");
  outbox_t *ob = open_dir(d, 0);
  REQUIRE(ob);
  CHECK_INT(add(ob, "k1", "{\"a\":1}"), 0);
  off_t first = file_size(d);
  CHECK_INT(add(ob, "k2", "{\"a\":2}"), 0);
  CHECK_INT(add(ob, "k3", "{\"a\":3}"), 0);
  outbox_close(ob);
  char p[600];
  snprintf(p, sizeof p, "%s/outbox", d);
  int fd = open(p, O_WRONLY);
  REQUIRE(fd >= 0);
  REQUIRE(pwrite(fd, "Z", 1, first + 12) == 1); /* inside k2's key */
  close(fd);
  ob = open_dir(d, 0);
  REQUIRE(ob);
  CHECK_INT(state_of(ob, "k1"), OUTBOX_PENDING);
  CHECK_INT(state_of(ob, "k2"), 0);
  CHECK_INT(state_of(ob, "k3"), 0);
  CHECK_INT(file_size(d), first);
  outbox_close(ob);
}

TEST(full_outbox_refuses) {
  const char *d = test_dir("full");
  outbox_t *ob = open_dir(d, 20);
  REQUIRE(ob);
  CHECK_INT(add(ob, "k1", "0123456789"), 0);
  CHECK_INT(add(ob, "k2", "0123456789"), 0);
  CHECK_INT(add(ob, "k3", "0"), -ENOSPC);
  CHECK_INT(state_of(ob, "k3"), 0);
  /* Delivering frees room; dead letters keep theirs. */
  CHECK_INT(outbox_done(ob, outbox_find(ob, "k1"), T0), 0);
  CHECK_INT(add(ob, "k3", "0"), 0);
  CHECK_INT(outbox_add(ob, "", "crm", "{}", 2, T0, NULL), -EINVAL);
  CHECK_INT(outbox_add(ob, "k4", "", "{}", 2, T0, NULL), -EINVAL);
  outbox_close(ob);
}

TEST(compaction_keeps_state_and_forgets_old_keys) {
  const char *d = test_dir("compact");
  outbox_t *ob = open_dir(d, 0);
  REQUIRE(ob);
  char key[32], body[2048];
  memset(body, 'x', sizeof body - 1);
  body[0] = '"';
  body[sizeof body - 2] = '"';
  body[sizeof body - 1] = 0;
  for (int i = 0; i < 2000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    REQUIRE(add(ob, key, body) == 0);
    if (i % 10) REQUIRE(outbox_done(ob, outbox_find(ob, key), T0 + i) == 0);
  }
  CHECK_INT(outbox_dead(ob, outbox_find(ob, "k10"), T0), 0);
  off_t before = file_size(d);
  CHECK_INT(outbox_compact(ob, T0 + 2000), 0);
  off_t after = file_size(d);
  CHECK(after < before / 4);
  CHECK_INT(add(ob, "k5000", "{}"), 0); /* appends after the rewrite */
  outbox_close(ob);
  ob = open_dir(d, 0);
  REQUIRE(ob);
  outbox_stats_t st;
  outbox_stats(ob, &st);
  CHECK_INT(st.pending, 200);
  CHECK_INT(st.dead, 1);
  CHECK_INT(st.done, 1800);
  CHECK_INT(state_of(ob, "k1"), OUTBOX_DONE);
  CHECK_INT(state_of(ob, "k10"), OUTBOX_DEAD);
  CHECK_INT(outbox_find(ob, "k20")->body_len, strlen(body));
  /* An hour later the delivered keys are forgotten; the others stay. */
  CHECK_INT(outbox_compact(ob, T0 + 3600LL * 1000000 + 5000), 0);
  outbox_stats(ob, &st);
  CHECK_INT(st.done, 0);
  CHECK_INT(st.pending, 200);
  CHECK_INT(add(ob, "k1", "{}"), 0);
  outbox_close(ob);
}

TEST(delivered_keys_bounded_by_count) {
  const char *d = test_dir("bounded");
  char err[256];
  outbox_opts_t o = {0, 3600LL * 1000000, 3};
  outbox_t *ob = outbox_open(d, &o, err, sizeof err);
  REQUIRE(ob);
  char key[16];
  for (int i = 0; i < 5; i++) {
    snprintf(key, sizeof key, "k%d", i);
    REQUIRE(add(ob, key, "{}") == 0);
    REQUIRE(outbox_done(ob, outbox_find(ob, key), T0 + i) == 0);
  }
  outbox_stats_t st;
  outbox_stats(ob, &st);
  CHECK_INT(st.done, 3);
  CHECK_INT(state_of(ob, "k1"), 0); /* the oldest went first */
  CHECK_INT(state_of(ob, "k2"), OUTBOX_DONE);
  outbox_close(ob);
  o.remember_max = 2; /* a smaller bound at the next start applies at once */
  ob = outbox_open(d, &o, err, sizeof err);
  REQUIRE(ob);
  outbox_stats(ob, &st);
  CHECK_INT(st.done, 2);
  CHECK_INT(state_of(ob, "k2"), 0);
  CHECK_INT(state_of(ob, "k4"), OUTBOX_DONE);
  outbox_close(ob);
}

int main(void) {
  if (tmpdir_init("outbox") != 0) return 1;
  RUN(states_survive_reopen);
  RUN(torn_tail_is_cut);
  RUN(corrupt_record_ends_replay);
  RUN(full_outbox_refuses);
  RUN(compaction_keeps_state_and_forgets_old_keys);
  RUN(delivered_keys_bounded_by_count);
  tmpdir_finish();
  return TEST_REPORT("test_outbox");
}
