/* lrc's own fork/join team: the six OpenMP entry points that lrc's threaded code calls
 * (MLIR's convert-scf-to-openmp + convert-openmp-to-llvm emit __kmpc_* calls), on pthreads.
 *
 * Why: Android has no libomp without the NDK, and a phone is where threads matter. This file needs
 * no libc headers (there is no bionic sysroot here), only the compiler's freestanding ones (build
 * with -ffreestanding); it calls pthread_create / _self / _join, sched_yield, syscall (futex),
 * write and abort, which bionic and glibc both export. It is compiled into model.so with hidden
 * symbols, so it never interposes on a libomp the app loads. lrc's regions are flat (no nesting),
 * statically scheduled, and each is one layer.
 *
 * Team: workers are started at the first fork that wants them and stay; between regions they spin
 * a short while (the next layer usually forks within microseconds), yield (so that with more
 * threads than free cores a descheduled teammate gets to run), and then sleep on a futex; only
 * a region's own workers are released into it. A fork from a second app thread while a region runs,
 * or from inside a region, runs serially on the calling thread rather than waiting or sharing the
 * team. Anything outside what lrc emits (other schedules, more arguments than LRC_TEAM_MAX_ARGS)
 * stops the process with a message: never a silently wrong result. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

#define HIDDEN __attribute__((visibility("hidden")))
#define LRC_TEAM_MAX 64
#define LRC_TEAM_MAX_ARGS 32
#define SPINS 200  /* pause-spins before yielding: a region's workers arrive within microseconds */
#define YIELDS 200 /* sched_yield spins before sleeping: lets a descheduled teammate run (more threads than cores) */
#define SERIAL_GTID 0x40000000 /* gtid of a thread running a region alone */

#if defined(__aarch64__)
#define SYS_FUTEX 98
#define CPU_RELAX() __asm__ volatile("yield")
#elif defined(__x86_64__)
#define SYS_FUTEX 202
#define CPU_RELAX() __builtin_ia32_pause()
#else
#error "omp_team.c: unsupported architecture"
#endif
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

typedef unsigned long lrc_pthread_t; /* pthread_t is an 8-byte integer on 64-bit glibc and bionic */
extern int pthread_create(lrc_pthread_t *, const void *, void *(*)(void *), void *);
extern lrc_pthread_t pthread_self(void);
extern int pthread_join(lrc_pthread_t, void **);
extern long syscall(long, ...);
extern int sched_yield(void);
extern long write(int, const void *, unsigned long);
extern void abort(void);

typedef void (*lrc_microtask)(int32_t *, int32_t *, ...);

/* One cache line per worker: its release word and whether it sleeps on it. */
typedef struct {
  _Atomic uint32_t go;
  _Atomic int32_t sleepers;
  char pad[56];
} lrc_worker_slot;

static struct {
  _Atomic int busy;                /* a region is running (or being set up) */
  _Atomic int32_t requested;       /* __kmpc_push_num_threads for the next fork */
  _Atomic int started;             /* workers running; worker i has gtid i (master 0) */
  _Atomic int quitting;            /* model.so is being unloaded (or the process exits) */
  lrc_pthread_t thread[LRC_TEAM_MAX];
  lrc_worker_slot slot[LRC_TEAM_MAX]; /* only the workers of a region are released into it */
  _Atomic uint32_t remaining;      /* workers still inside the region */
  _Atomic int32_t master_sleepers;
  _Atomic int32_t bar_count;
  _Atomic uint32_t bar_generation;
  _Atomic int32_t bar_sleepers;
  int32_t size;                    /* threads in the current region, master included */
  lrc_microtask fn;
  void *args[LRC_TEAM_MAX_ARGS];
} team;

static void die(const char *msg) {
  const char *p = msg;
  while (*p) p++;
  write(2, "lrc omp_team: ", 14);
  write(2, msg, (unsigned long)(p - msg));
  write(2, "\n", 1);
  abort();
}

static void futex_wait(_Atomic uint32_t *word, uint32_t value) {
  syscall(SYS_FUTEX, word, FUTEX_WAIT_PRIVATE, value, (void *)0, (void *)0, 0);
}

static void futex_wake(_Atomic uint32_t *word) {
  syscall(SYS_FUTEX, word, FUTEX_WAKE_PRIVATE, 0x7fffffff, (void *)0, (void *)0, 0);
}

/* Spin, then sleep, until *word differs from `value`. `sleepers` tells the writer whether a wake
 * syscall is needed; both sides use sequentially consistent atomics, so either the writer sees the
 * sleeper or the sleeper sees the new value before it sleeps. */
static uint32_t wait_change(_Atomic uint32_t *word, uint32_t value, _Atomic int32_t *sleepers) {
  uint32_t now;
  for (int i = 0; i < SPINS + YIELDS; i++) {
    if ((now = atomic_load_explicit(word, memory_order_acquire)) != value) return now;
    if (i < SPINS)
      CPU_RELAX();
    else
      sched_yield();
  }
  for (;;) {
    atomic_fetch_add(sleepers, 1);
    if ((now = atomic_load(word)) == value) futex_wait(word, value);
    atomic_fetch_sub(sleepers, 1);
    if ((now = atomic_load(word)) != value) return now;
  }
}

static void wake_if_sleeping(_Atomic uint32_t *word, _Atomic int32_t *sleepers) {
  if (atomic_load(sleepers)) futex_wake(word);
}

static void invoke(lrc_microtask fn, int32_t gtid, void **a) {
  int32_t g = gtid, b = gtid;
  /* Every argument is a pointer, and the callee takes argc of them: passing all slots is what a
   * variadic call would do on AAPCS64 and SysV, and the callee never reads past its own. */
  fn(&g, &b, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14],
     a[15], a[16], a[17], a[18], a[19], a[20], a[21], a[22], a[23], a[24], a[25], a[26], a[27], a[28], a[29],
     a[30], a[31]);
}

static void *worker(void *arg) {
  int32_t id = (int32_t)(intptr_t)arg;
  lrc_worker_slot *me = &team.slot[id];
  uint32_t seen = 0;
  for (;;) {
    seen = wait_change(&me->go, seen, &me->sleepers);
    if (atomic_load(&team.quitting)) return 0;
    invoke(team.fn, id, team.args);
    if (atomic_fetch_sub(&team.remaining, 1) == 1) wake_if_sleeping(&team.remaining, &team.master_sleepers);
  }
  return 0;
}

/* The workers run code inside model.so: before dlclose unmaps it (or the process exits), they are
 * released for the last time and joined, or they would crash spinning in unmapped text. */
__attribute__((destructor)) static void stop_team(void) {
  int n = atomic_load(&team.started);
  atomic_store(&team.quitting, 1);
  for (int i = 1; i <= n; i++) {
    atomic_fetch_add(&team.slot[i].go, 1);
    futex_wake(&team.slot[i].go);
  }
  for (int i = 1; i <= n; i++) pthread_join(team.thread[i], (void **)0);
  atomic_store(&team.started, 0);
}

/* Threads this fork gets: the request, capped by the workers that could be started. */
static int32_t grow(int32_t want) {
  if (want > LRC_TEAM_MAX) want = LRC_TEAM_MAX;
  int have = atomic_load(&team.started);
  while (have + 1 < want) {
    if (pthread_create(&team.thread[have + 1], (void *)0, worker, (void *)(intptr_t)(have + 1)) != 0) break;
    atomic_store(&team.started, ++have);
  }
  return have + 1 < want ? have + 1 : want;
}

HIDDEN int32_t __kmpc_global_thread_num(void *loc) {
  (void)loc;
  lrc_pthread_t self = pthread_self();
  int n = atomic_load(&team.started);
  for (int i = 1; i <= n; i++)
    if (team.thread[i] == self) return i;
  return 0;
}

HIDDEN void __kmpc_push_num_threads(void *loc, int32_t gtid, int32_t n) {
  (void)loc, (void)gtid;
  atomic_store(&team.requested, n);
}

HIDDEN void __kmpc_fork_call(void *loc, int32_t argc, lrc_microtask fn, ...) {
  (void)loc;
  void *args[LRC_TEAM_MAX_ARGS] = {0};
  if (argc < 0 || argc > LRC_TEAM_MAX_ARGS) die("a parallel region with more than 32 arguments");
  va_list ap;
  va_start(ap, fn);
  for (int i = 0; i < argc; i++) args[i] = va_arg(ap, void *);
  va_end(ap);
  int32_t want = atomic_exchange(&team.requested, 0);
  int expected = 0;
  if (want <= 1 || !atomic_compare_exchange_strong(&team.busy, &expected, 1)) {
    invoke(fn, SERIAL_GTID, args); /* one thread asked, or the team is in use (nested / another caller) */
    return;
  }
  int32_t size = grow(want);
  team.size = size;
  team.fn = fn;
  for (int i = 0; i < LRC_TEAM_MAX_ARGS; i++) team.args[i] = args[i];
  atomic_store(&team.remaining, (uint32_t)(size - 1));
  for (int i = 1; i < size; i++) {
    atomic_fetch_add(&team.slot[i].go, 1);
    wake_if_sleeping(&team.slot[i].go, &team.slot[i].sleepers);
  }
  invoke(fn, 0, args);
  uint32_t left;
  while ((left = atomic_load(&team.remaining)) != 0) wait_change(&team.remaining, left, &team.master_sleepers);
  atomic_store_explicit(&team.busy, 0, memory_order_release);
}

static int32_t region_size(int32_t gtid) { return gtid == SERIAL_GTID ? 1 : team.size; }
static int32_t region_rank(int32_t gtid) { return gtid == SERIAL_GTID ? 0 : gtid; }

/* The static schedule (kmp_sch_static, 34: what an omp.wsloop without a schedule clause becomes)
 * over [*lower, *upper] (inclusive) step incr > 0: one balanced contiguous range per thread. An
 * empty share comes back as lower = upper + incr, which the caller's trip count reads as zero. */
HIDDEN void __kmpc_for_static_init_8u(void *loc, int32_t gtid, int32_t sched, int32_t *last, uint64_t *lower,
                                      uint64_t *upper, int64_t *stride, int64_t incr, int64_t chunk) {
  (void)loc;
  if (incr <= 0) die("__kmpc_for_static_init_8u: a loop with a non-positive step");
  uint64_t lo = *lower, hi = *upper, step = (uint64_t)incr;
  int32_t n = region_size(gtid), r = region_rank(gtid);
  if (hi < lo) {
    *last = 0;
    *stride = incr;
    return;
  }
  (void)chunk;
  if (sched != 34) die("__kmpc_for_static_init_8u: a schedule other than static unchunked (34)");
  uint64_t trips = (hi - lo) / step + 1;
  uint64_t small = trips / (uint64_t)n, extra = trips % (uint64_t)n;
  uint64_t first = (uint64_t)r * small + ((uint64_t)r < extra ? (uint64_t)r : extra);
  uint64_t mine = small + ((uint64_t)r < extra ? 1 : 0);
  *lower = lo + first * step;
  *upper = mine ? *lower + (mine - 1) * step : *lower - step;
  *last = mine && first + mine == trips;
  *stride = (int64_t)(trips * step);
}

HIDDEN void __kmpc_for_static_fini(void *loc, int32_t gtid) { (void)loc, (void)gtid; }

HIDDEN void __kmpc_barrier(void *loc, int32_t gtid) {
  (void)loc;
  int32_t n = region_size(gtid);
  if (n <= 1) return;
  uint32_t gen = atomic_load_explicit(&team.bar_generation, memory_order_acquire);
  if (atomic_fetch_add(&team.bar_count, 1) == n - 1) {
    atomic_store(&team.bar_count, 0);
    atomic_fetch_add(&team.bar_generation, 1);
    wake_if_sleeping(&team.bar_generation, &team.bar_sleepers);
  } else {
    wait_change(&team.bar_generation, gen, &team.bar_sleepers);
  }
}
