/* util.c — see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void (*g_on_fatal)(void);

void on_fatal_error(void (*fn)(void)) {
    g_on_fatal = fn;
}

static _Noreturn void vdie(int status, const char *fmt, va_list ap) {
    fflush(stdout);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    void (*fn)(void) = g_on_fatal;
    g_on_fatal = NULL; /* an error inside the hook must not run it again */
    if (fn) fn();
    /* _exit: an error exit runs no cleanup, and leak checkers should not report the memory a
     * half-finished program still holds */
    fflush(NULL);
    _exit(status);
}

void user_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(EXIT_USER, fmt, ap);
}

void sys_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vdie(EXIT_SYS, fmt, ap);
}

void exit_flushed(void) {
    if (fflush(stdout) != 0 || ferror(stdout))
        sys_error("cannot write to standard output: %s", strerror(errno));
    exit(0);
}

void *xcalloc(size_t n, size_t size) {
    size_t bytes = n * size;
    if (size && bytes / size != n) sys_error("allocation of %zu x %zu bytes overflows", n, size);
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) sys_error("out of memory allocating %.1f MB", bytes / 1e6);
    memset(p, 0, rounded);
    return p;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = xcalloc(n, 1);
    memcpy(d, s, n);
    return d;
}

void prefault(void *p, size_t bytes) {
    volatile char *c = p;
    for (size_t i = 0; i < bytes; i += 4096) c[i] = c[i];
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *format_duration(double s, char *buf, size_t n) {
    long t = s < 0 ? 0 : (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
    return buf;
}

size_t peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (size_t)ru.ru_maxrss * 1024;
}

size_t current_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

void cpu_model(char *buf, size_t n) {
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *val = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !val) continue;
        val += 1 + strspn(val + 1, " \t");
        val[strcspn(val, "\n")] = '\0';
        if (*val) snprintf(buf, n, "%s", val);
        break;
    }
    fclose(f);
}

uint64_t hash64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

float rng_normal(uint64_t key, uint64_t i) {
    /* Box-Muller on two independent uniforms; u1 is kept away from 0 so log() is finite. */
    float u1 = rng_uniform(key, 2 * i) + 1.0f / 33554432.0f;
    float u2 = rng_uniform(key, 2 * i + 1);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    rewind(f);
    char *buf = xcalloc((size_t)(n < 0 ? 0 : n) + 1, 1);
    size_t got = n > 0 ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    if (n < 0 || got != (size_t)n) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    if (len) *len = got;
    return buf;
}

int fsync_path_dir(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0) goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        fd = -1;
        goto fail;
    }
    /* the rename is durable only once the directory is synced */
    return fsync_path_dir(path);
fail : {
    int saved = errno;
    if (fd >= 0) close(fd);
    unlink(tmp);
    errno = saved;
    return -1;
}
}

/* "<name>.tmp.<pid>" -> pid, or 0 if the name is not a temp file of write_file_atomic. */
static long temp_owner(const char *name) {
    const char *tag = strstr(name, ".tmp.");
    if (!tag || tag == name) return 0;
    char *end;
    long pid = strtol(tag + 5, &end, 10);
    return *end == 0 && pid > 0 ? pid : 0;
}

int remove_dead_temps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int removed = 0;
    char path[4200];
    for (struct dirent *e; (e = readdir(d));) {
        long pid = temp_owner(e->d_name);
        /* kill(pid, 0) fails with ESRCH only when no such process exists */
        if (!pid || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        removed += unlink(path) == 0;
    }
    closedir(d);
    return removed;
}

int lock_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0; /* fd stays open: the lock lives with it */
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

long flag_int(const char *flag, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end || errno || x < lo || x > hi)
        user_error("%s: expected an integer from %ld to %ld, got '%s'", flag, lo, hi, v);
    return x;
}

double flag_number(const char *flag, const char *v) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(x))
        user_error("%s: expected a number, got '%s'", flag, v);
    return x;
}
