/* Drives lib/omp_team.c through the same __kmpc_* calls lrc's threaded code makes, natively and on
 * aarch64 under qemu (test_omp_team.py builds and runs it). Prints "ok" and exits 0, or names the
 * first check that failed and exits 1. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int32_t __kmpc_global_thread_num(void *);
void __kmpc_push_num_threads(void *, int32_t, int32_t);
void __kmpc_fork_call(void *, int32_t, void (*)(int32_t *, int32_t *, ...), ...);
void __kmpc_for_static_init_8u(void *, int32_t, int32_t, int32_t *, uint64_t *, uint64_t *, int64_t *, int64_t,
                               int64_t);
void __kmpc_for_static_fini(void *, int32_t);
void __kmpc_barrier(void *, int32_t);

#define CHECK(c, ...)                                     \
  do {                                                    \
    if (!(c)) {                                           \
      printf("FAILED line %d: ", __LINE__);               \
      printf(__VA_ARGS__);                                \
      printf("\n");                                       \
      exit(1);                                            \
    }                                                     \
  } while (0)

typedef void (*task_t)(int32_t *, int32_t *, ...);

/* --- a statically scheduled loop over n items: every item exactly once ------------------------ */
static void loop_body(int32_t *gtid, int32_t *btid, int *hits, uint64_t *n, int *lasts, pthread_t *who) {
  (void)btid;
  if (*n == 0) return;
  int32_t last = 0;
  uint64_t lo = 0, hi = *n - 1;
  int64_t stride = 1;
  __kmpc_for_static_init_8u(0, *gtid, 34, &last, &lo, &hi, &stride, 1, 0);
  for (uint64_t i = lo; i <= hi && hi - lo < *n; i++) __atomic_fetch_add(&hits[i], 1, __ATOMIC_RELAXED);
  if (last) __atomic_fetch_add(lasts, 1, __ATOMIC_RELAXED);
  __kmpc_for_static_fini(0, *gtid);
  int me = __kmpc_global_thread_num(0);
  CHECK(me == *gtid || *gtid == 0x40000000, "global_thread_num %d in a region where gtid is %d", me, *gtid);
  who[*gtid == 0x40000000 ? 0 : *gtid] = pthread_self();
  __kmpc_barrier(0, *gtid);
}

static void run_loop(int team, uint64_t n) {
  int hits[1000] = {0}, lasts = 0;
  pthread_t who[64];
  memset(who, 0, sizeof who);
  __kmpc_push_num_threads(0, __kmpc_global_thread_num(0), team);
  __kmpc_fork_call(0, 4, (task_t)loop_body, hits, &n, &lasts, who);
  for (uint64_t i = 0; i < n; i++) CHECK(hits[i] == 1, "team %d, n %llu: item %llu ran %d times", team,
                                          (unsigned long long)n, (unsigned long long)i, hits[i]);
  CHECK(n == 0 || lasts == 1, "team %d, n %llu: %d threads saw the last iteration", team, (unsigned long long)n, lasts);
  for (int i = 0; i < team; i++)
    for (int j = 0; j < i; j++)
      CHECK(!who[i] || !who[j] || !pthread_equal(who[i], who[j]), "team %d: threads %d and %d are the same pthread",
            team, i, j); /* unset: the region ran serially (another caller held the team) */
}

/* --- barriers inside a region: nobody passes before everyone arrives -------------------------- */
static void barrier_body(int32_t *gtid, int32_t *btid, int *arrived, int *rounds, int *team) {
  (void)btid;
  for (int r = 0; r < *rounds; r++) {
    __atomic_fetch_add(arrived, 1, __ATOMIC_SEQ_CST);
    __kmpc_barrier(0, *gtid);
    int seen = __atomic_load_n(arrived, __ATOMIC_SEQ_CST);
    CHECK(seen >= (r + 1) * *team, "barrier round %d: %d arrivals seen, want >= %d", r, seen, (r + 1) * *team);
    __kmpc_barrier(0, *gtid);
  }
}

/* --- many arguments come through in order -------------------------------------------------------- */
static void args_body(int32_t *gtid, int32_t *btid, long *a0, long *a1, long *a2, long *a3, long *a4, long *a5,
                      long *a6, long *a7, long *a8, long *a9, long *a10, long *a11) {
  (void)btid, (void)gtid;
  long *a[] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11};
  for (int i = 0; i < 12; i++) CHECK(*a[i] == 100 + i, "argument %d is %ld", i, *a[i]);
}

/* --- a fork inside a region runs serially on that thread -------------------------------------- */
static void inner_body(int32_t *gtid, int32_t *btid, int *count) {
  (void)btid;
  CHECK(*gtid == 0x40000000, "a nested region got gtid %d, not the serial one", *gtid);
  int32_t last = 0;
  uint64_t lo = 0, hi = 9;
  int64_t stride = 1;
  __kmpc_for_static_init_8u(0, *gtid, 34, &last, &lo, &hi, &stride, 1, 0);
  CHECK(lo == 0 && hi == 9 && last, "a serial region got [%llu, %llu]", (unsigned long long)lo, (unsigned long long)hi);
  __kmpc_barrier(0, *gtid);
  __atomic_fetch_add(count, 1, __ATOMIC_RELAXED);
}

static void outer_body(int32_t *gtid, int32_t *btid, int *count) {
  (void)btid;
  __kmpc_push_num_threads(0, *gtid, 4);
  __kmpc_fork_call(0, 1, (task_t)inner_body, count);
}

/* --- two app threads calling at once ------------------------------------------------------------ */
static void *caller(void *arg) {
  (void)arg;
  for (int i = 0; i < 300; i++) run_loop(3, 97);
  return 0;
}

int main(void) {
  for (int team = 1; team <= 5; team++)
    for (uint64_t n = 0; n <= 13; n++) run_loop(team, n);
  run_loop(4, 1000);
  for (int i = 0; i < 2000; i++) run_loop(2 + i % 3, 50 + i % 7); /* team sizes change between regions */
  struct timespec nap = {0, 50 * 1000 * 1000};
  nanosleep(&nap, 0); /* the workers go to sleep on their futex ... */
  run_loop(4, 999);   /* ... and must wake for the next region */
  int arrived = 0, rounds = 200, team = 4;
  __kmpc_push_num_threads(0, 0, team);
  __kmpc_fork_call(0, 3, (task_t)barrier_body, &arrived, &rounds, &team);
  CHECK(arrived == rounds * team, "%d arrivals, want %d", arrived, rounds * team);
  long v[12];
  for (int i = 0; i < 12; i++) v[i] = 100 + i;
  __kmpc_push_num_threads(0, 0, 3);
  __kmpc_fork_call(0, 12, (task_t)args_body, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9],
                   &v[10], &v[11]);
  int count = 0;
  __kmpc_push_num_threads(0, 0, 3);
  __kmpc_fork_call(0, 1, (task_t)outer_body, &count);
  CHECK(count == 3, "nested regions ran %d times, want 3", count);
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], 0, caller, 0);
  for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
  count = 0;
  __kmpc_fork_call(0, 1, (task_t)inner_body, &count); /* no push_num_threads: one thread, serially */
  CHECK(count == 1, "an unpushed region ran %d times", count);
  printf("ok\n");
  return 0;
}
