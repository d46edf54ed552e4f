/*
 * A slow disk, on purpose and on schedule, for bench/chat.py --wal-stall.
 *
 * Loaded into the Hejie server with LD_PRELOAD. After every fsync or fdatasync of a file whose
 * name ends in "-wal" (SQLite's write-ahead log) it may sleep, so that a sync takes longer the way
 * the benchmark machine's disk now and then did (40-1,000 ms). The schedule comes from the
 * environment:
 *
 *   HEJIE_WAL_STALL_MS     how much longer a stalled sync takes (milliseconds)
 *   HEJIE_WAL_STALL_EVERY  a slow spell starts this often (seconds)
 *   HEJIE_WAL_STALL_FOR    and lasts this long (seconds): every WAL sync in it is stalled;
 *                          0 stalls the spell's first sync alone
 *
 * The same schedule for every version under test, on a RAM disk (--data-dir /dev/shm) where
 * nothing else is slow: the difference between versions is how they bear a slow sync.
 * Built by bench/chat.py with the system's C compiler; nothing in the product uses it.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t spell_lock = PTHREAD_MUTEX_INITIALIZER;
static double spell_start = -1;

static double env_number(const char *name, double fallback) {
    const char *value = getenv(name);
    return value ? atof(value) : fallback;
}

static double monotonic(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int is_wal(int fd) {
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    return n >= 4 && memcmp(path + n - 4, "-wal", 4) == 0;
}

static void maybe_stall(int fd) {
    if (!is_wal(fd))
        return;
    double every = env_number("HEJIE_WAL_STALL_EVERY", 2.0);
    double spell = env_number("HEJIE_WAL_STALL_FOR", 0.0);
    double now = monotonic();
    int stall = 0;
    pthread_mutex_lock(&spell_lock);
    if (spell_start < 0)
        spell_start = now;  /* the first spell starts one period after the first sync */
    else if (now - spell_start >= every) {
        spell_start = now;
        stall = 1;
    } else if (now - spell_start < spell)
        stall = 1;
    pthread_mutex_unlock(&spell_lock);
    if (stall)
        usleep((useconds_t)(env_number("HEJIE_WAL_STALL_MS", 100.0) * 1000));
}

static int synced(const char *name, int (**real)(int), int fd) {
    if (!*real)
        *real = (int (*)(int))dlsym(RTLD_NEXT, name);
    int result = (*real)(fd);
    maybe_stall(fd);
    return result;
}

int fdatasync(int fd) {
    static int (*real)(int);
    return synced("fdatasync", &real, fd);
}

int fsync(int fd) {
    static int (*real)(int);
    return synced("fsync", &real, fd);
}
