/* dlclose of a model.so whose team is alive: built twice by test_omp_team.py, with -DMODEL as a
 * shared object holding lib/omp_team.c (like model.so), and without as the program that opens it,
 * runs a 3-thread region, closes it while the workers still spin, and carries on. Without the
 * team's destructor the workers run on in unmapped code and the process dies. */
#include <stdint.h>

#ifdef MODEL
void __kmpc_push_num_threads(void *, int32_t, int32_t);
void __kmpc_fork_call(void *, int32_t, void (*)(int32_t *, int32_t *, ...), ...);

static void body(int32_t *gtid, int32_t *btid, int *count) {
  (void)gtid, (void)btid;
  __atomic_fetch_add(count, 1, __ATOMIC_RELAXED);
}

int run_region(void) {
  int count = 0;
  __kmpc_push_num_threads(0, 0, 3);
  __kmpc_fork_call(0, 1, (void (*)(int32_t *, int32_t *, ...))body, &count);
  return count;
}
#else
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  for (int round = 0; round < 5; round++) {
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      printf("dlopen: %s\n", dlerror());
      return 1;
    }
    int (*run)(void) = (int (*)(void))dlsym(lib, "run_region");
    int n = run ? run() : -1;
    if (n != 3) {
      printf("round %d: the region ran on %d threads, want 3\n", round, n);
      return 1;
    }
    dlclose(lib);
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, 0); /* a worker left spinning in the unmapped .so would fault here */
  }
  printf("ok\n");
  return 0;
}
#endif
