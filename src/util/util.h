/* util.h — errors, allocation, timing and a counter-based RNG shared by every module.
 *
 * Errors: a user's mistake (bad config, flag, data file, checkpoint) is reported with
 * user_error(): one line "error: ..." on stderr and exit status 2. An I/O failure of the
 * machine (disk full, permission) is sys_error(): exit status 1. A broken internal invariant
 * is an assert().
 *
 * Randomness: everything random (init, shuffles, dropout masks) derives from a 64-bit key with
 * a stateless hash, so results do not depend on the number of threads or the order in which
 * they run. */
#ifndef UTIL_H
#define UTIL_H

#include <stddef.h>
#include <stdint.h>

#define EXIT_USER 2 /* bad input from the user */
#define EXIT_SYS  1 /* the machine failed us (I/O, memory) */

_Noreturn void user_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void sys_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* 64-byte aligned, zeroed, never NULL (out of memory is a sys_error). Free with free(). */
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
/* Touch every page now so the first training step does not pay the page faults. */
void prefault(void *p, size_t bytes);

double now_seconds(void);       /* monotonic wall clock */
size_t peak_rss_bytes(void);    /* peak resident set of this process */
size_t current_rss_bytes(void); /* current resident set */
/* The CPU's model name from /proc/cpuinfo ("unknown" where the kernel gives none), into buf. */
void cpu_model(char *buf, size_t n);

/* Counter-based RNG: splitmix64 finalizer over (key, counter). */
uint64_t hash64(uint64_t x);
static inline uint64_t rng_key(uint64_t a, uint64_t b) {
    return hash64(a ^ hash64(b));
}
/* Uniform in [0, 1) from 24 random bits, so every value is exact in float. */
static inline float rng_uniform(uint64_t key, uint64_t i) {
    return (float)(hash64(key + 0x9E3779B97F4A7C15ull * (i + 1)) >> 40) * (1.0f / 16777216.0f);
}
float rng_normal(uint64_t key, uint64_t i); /* standard normal (Box-Muller) */

/* Read a whole file; NULL if it cannot be opened (errno set). *len receives the size. */
char *read_file(const char *path, size_t *len);
/* Write bytes to path atomically: temp file in the same directory, fsync, rename. 0 on success,
 * -1 on failure with errno set and no file left behind. */
int write_file_atomic(const char *path, const void *data, size_t len);
int fsync_path_dir(const char *path);
int file_exists(const char *path);
int mkdir_p(const char *path); /* 0 on success or if it exists */

#endif
