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
/* Flushes stdout and ends the program with status 0, or with a sys_error if anything written to
 * stdout was lost (a full disk under `./train --help-config > docs/config.md`). */
_Noreturn void exit_flushed(void);
/* fn runs once, after the message, when user_error or sys_error ends the program (NULL: none).
 * ./train uses it to remove a new run directory that holds no checkpoint yet. */
void on_fatal_error(void (*fn)(void));

/* Command-line values: an integer in [lo, hi], or a finite number; anything else is a user
 * error naming the flag ("--top-k: expected an integer from 0 to 16777216, got 'x'"). */
long flag_int(const char *flag, const char *v, long lo, long hi);
double flag_number(const char *flag, const char *v);

/* 64-byte aligned, zeroed, never NULL (out of memory is a sys_error). Free with free(). */
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
/* Touch every page now so the first training step does not pay the page faults. */
void prefault(void *p, size_t bytes);

double now_seconds(void); /* monotonic wall clock */
/* "1h02m", "3m05s", "42s" (an ETA: negative durations print as 0s) */
const char *format_duration(double seconds, char *buf, size_t n);
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
/* Write bytes to path atomically: temp file "<path>.tmp.<pid>" in the same directory, fsync,
 * rename, fsync of the directory. 0 on success, -1 on failure with errno set and no file left
 * behind (a process killed mid-write leaves its temp file: see remove_dead_temps). */
int write_file_atomic(const char *path, const void *data, size_t len);
/* Removes the temp files of write_file_atomic in dir whose process no longer runs; returns how
 * many, or -1 with errno set. */
int remove_dead_temps(const char *dir);
/* An exclusive lock on a directory for the life of the process (flock on the directory itself,
 * so no lock file is left behind). 0, or -1 with errno set (EWOULDBLOCK: another process holds
 * it). */
int lock_dir(const char *dir);
int fsync_path_dir(const char *path);
int file_exists(const char *path);
int mkdir_p(const char *path); /* 0 on success or if it exists */

#endif
