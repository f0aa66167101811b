/* main.c — the test runner: runs every TEST() registered by the tests/test_*.c files (or those
 * whose name contains argv[1]), prints one row per test (ok, FAIL or SKIP), and ends with the
 * line "N passed, N failed, N skipped": checks passed and failed, tests skipped. The exit status
 * is 1 if anything failed, including a test that ran no check without calling SKIP, a skip of
 * a resource TRAINSHORT_REQUIRE lists, and a filter that matches no test. */
#include "test.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "../src/util/util.h"

int g_pass, g_fail;

typedef struct {
    const char *name;
    TestFn fn;
} TestEntry;
/* Grown by the registering constructors, which run before main: no cap, so no test can be
 * dropped unseen. */
static TestEntry *tests;
static int n_tests, cap_tests;

void test_register(const char *name, TestFn fn) {
    if (n_tests == cap_tests) {
        cap_tests = cap_tests ? 2 * cap_tests : 256;
        tests = realloc(tests, (size_t)cap_tests * sizeof *tests);
        if (!tests) {
            fprintf(stderr, "run_tests: out of memory registering test %s\n", name);
            exit(1);
        }
    }
    tests[n_tests++] = (TestEntry){name, fn};
}

/* Whether the running test called SKIP, and the first reason it gave. */
static int skipping;
static char skip_reason[512];

/* Whether the comma-separated list TRAINSHORT_REQUIRE names need. */
static int required(const char *need) {
    const char *p = getenv("TRAINSHORT_REQUIRE");
    size_t n = strlen(need);
    while (p && *p) {
        p += strspn(p, ", ");
        size_t len = strcspn(p, ", ");
        if (len == n && !strncmp(p, need, n)) return 1;
        p += len;
    }
    return 0;
}

void test_skip(const char *file, int line, const char *need, const char *fmt, ...) {
    char why[sizeof skip_reason];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    why[strcspn(why, "\n")] = 0; /* reasons are often a command's output: keep the row one line */
    if (need && required(need)) {
        /* this machine is meant to have need (CI sets TRAINSHORT_REQUIRE): its absence is a
         * defect of the set-up, not a reason to pass */
        g_fail++;
        printf("  FAIL %s:%d: %s is missing, but CI requires it (TRAINSHORT_REQUIRE=%s): %s\n",
               file, line, need, getenv("TRAINSHORT_REQUIRE"), why);
        return;
    }
    if (!skipping) memcpy(skip_reason, why, sizeof why);
    skipping = 1;
}

void locate_binaries(const char *cmd, char *out, size_t n) {
    const char *bin = getenv("TRAINSHORT_BIN");
    size_t k = 0;
    for (const char *p = cmd; *p && k + 1 < n;) {
        int is_bin = bin && (!strncmp(p, "./train", 7) || !strncmp(p, "./eval", 6) ||
                             !strncmp(p, "./generate", 10));
        if (is_bin) {
            k += (size_t)snprintf(out + k, n - k, "%s/", bin);
            p += 2;
        } else
            out[k++] = *p++;
        if (k >= n) k = n - 1;
    }
    out[k] = 0;
}

long test_env_long(const char *name, long fallback) {
    const char *s = getenv(name);
    return s && *s ? strtol(s, NULL, 0) : fallback;
}

int run_cmd(const char *cmd, char *out, size_t outlen) {
    char full[8192], located[8000];
    locate_binaries(cmd, located, sizeof located);
    snprintf(full, sizeof full, "%s 2>&1", located);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t got = 0;
    if (out && outlen) out[0] = 0;
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, p)) > 0) {
        if (out && got + 1 < outlen) {
            size_t c = k < outlen - 1 - got ? k : outlen - 1 - got;
            memcpy(out + got, buf, c);
            got += c;
            out[got] = 0;
        }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *test_tmpdir(const char *name) {
    static char dir[512];
    snprintf(dir, sizeof dir, "tests/tmp/%s", name);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) sys_error("cannot clear %s", dir);
    if (mkdir_p(dir) != 0) sys_error("cannot create %s", dir);
    return dir;
}

int sh(char *out, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return run_cmd(cmd, out, OUT_LEN);
}

int count_lines(const char *text) {
    int n = 0;
    for (const char *p = text; *p; p++) n += *p == '\n';
    return n;
}

int same_files(const char *p, const char *q) {
    size_t np = 0, nq = 0;
    char *a = read_file(p, &np), *b = read_file(q, &nq);
    int same = a && b && np == nq && !memcmp(a, b, np);
    free(a);
    free(b);
    return same;
}

void cli_scratch(const char *name, char *dir, size_t n) {
    snprintf(dir, n, "%s", test_tmpdir(name));
    char out[OUT_LEN];
    if (sh(out, "mkdir -p %s/data && cp tests/fixtures/cli/wiki.*.tokens %s/data/", dir, dir))
        sys_error("cannot copy the fixtures: %s", out);
}

void cli_tiny_config(const char *dir, const char *model_extra) {
    char path[600], text[2048];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 1, \"d_model\": 16, \"n_heads\": 2, \"d_ff\": 32, %s},"
             "\"train\": {\"seq_len\": 16, \"batch\": 2, \"steps\": 12, \"warmup\": 2, "
             "\"log_every\": 1, \"eval_every\": 0, \"threads\": 1},"
             "\"data\": {\"dir\": \"%s/data\"}}",
             model_extra, dir);
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    if (write_file_atomic(path, text, strlen(text))) sys_error("cannot write %s", path);
}

void expect_user_error(int rc, const char *out, const char *want, const char *want2,
                       const char *absent, const char *what) {
    CHECK(rc == 2, "%s: status %d, expected 2; output: %s", what, rc, out);
    CHECK(!strncmp(out, "error: ", 7), "%s: output does not start with 'error: ': %s", what, out);
    CHECK(count_lines(out) == 1 && out[strlen(out) - 1] == '\n',
          "%s: expected exactly one line, got: %s", what, out);
    CHECK(strstr(out, want) != NULL, "%s: message lacks '%s': %s", what, want, out);
    if (want2) CHECK(strstr(out, want2) != NULL, "%s: message lacks '%s': %s", what, want2, out);
    if (absent) CHECK(!file_exists(absent), "%s: %s was created", what, absent);
}

double log_value(const char *run_dir, int step, const char *key) {
    char path[1024];
    snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
    size_t len;
    char *text = read_file(path, &len);
    double v = NAN;
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step");
        cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
        if (cJSON_IsNumber(s) && s->valueint == step && cJSON_IsNumber(x)) v = x->valuedouble;
        cJSON_Delete(o);
    }
    free(text);
    return v;
}

/* Runs one test and prints its row; returns 1 if it skipped. */
static int run_test(const TestEntry *t) {
    int p0 = g_pass, f0 = g_fail;
    skipping = 0;
    double t0 = now_seconds();
    t->fn();
    double s = now_seconds() - t0;
    int checks = g_pass - p0 + g_fail - f0, skipped = g_fail == f0 && skipping;
    if (!checks && g_fail == f0 && !skipped) {
        g_fail++;
        printf("  FAIL %s ran no check (a test that cannot run its checks calls SKIP)\n", t->name);
    }
    if (skipped)
        printf("SKIP %s: %s\n", t->name, skip_reason);
    else
        printf("%-4s %-64s %4d checks  %6.2fs\n", g_fail > f0 ? "FAIL" : "ok", t->name, checks, s);
    fflush(stdout);
    return skipped;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int ran = 0, skipped = 0;
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter)) continue;
        skipped += run_test(&tests[i]);
        ran++;
    }
    if (!ran) {
        g_fail++;
        printf("  FAIL no test name contains '%s'\n", filter ? filter : "");
    }
    printf("%d passed, %d failed, %d skipped\n", g_pass, g_fail, skipped);
    free(tests);
    return g_fail ? 1 : 0;
}
