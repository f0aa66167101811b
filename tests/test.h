/* test.h — the one tiny test framework: every CHECK is counted; a failure prints where and
 * by how much, and makes the runner's exit status non-zero. A test that cannot run its checks
 * here says so with SKIP; one that runs no check and does not skip fails, so nothing passes
 * untested. The runner's last line is "N passed, N failed, N skipped" (checks passed, checks
 * failed, tests skipped). */
#ifndef TEST_H
#define TEST_H

#include <math.h>
#include <stdio.h>

extern int g_pass, g_fail;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond)                                                                                  \
            g_pass++;                                                                              \
        else {                                                                                     \
            g_fail++;                                                                              \
            printf("  FAIL %s:%d: ", __FILE__, __LINE__);                                          \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
        }                                                                                          \
    } while (0)

/* |a-b| <= tol * max(1, |b|) */
#define CHECK_CLOSE(a, b, tol, what)                                                               \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        double s_ = fabs(b_) > 1.0 ? fabs(b_) : 1.0;                                               \
        CHECK(fabs(a_ - b_) <= (tol)*s_, "%s: got %.9g expected %.9g (diff %.3g, tol %.3g)", what, \
              a_, b_, fabs(a_ - b_), (double)(tol));                                               \
    } while (0)

/* TEST(name) { ... } defines and registers one test function; the runner calls them all
 * (or those whose name contains argv[1]). */
typedef void (*TestFn)(void);
void test_register(const char *name, TestFn fn);
#define TEST(name)                                                                                 \
    static void name(void);                                                                        \
    __attribute__((constructor)) static void register_##name(void) {                               \
        test_register(#name, name);                                                                \
    }                                                                                              \
    static void name(void)

/* SKIP(fmt, ...): the test cannot run its checks here; call it, then return. The runner prints
 * "SKIP <test>: <reason>" instead of "ok" and counts the test as skipped (a test that also
 * failed a check is a FAIL).
 * SKIP_NEED(need, fmt, ...): a skip because a resource is missing, named by need: "wikitext-2",
 * "wikitext-103", "root", "python3", "matplotlib". If the environment variable
 * TRAINSHORT_REQUIRE (comma-separated needs, set by .ci/run) lists need, the skip is a failure
 * instead: that machine is meant to have it. */
void test_skip(const char *file, int line, const char *need, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define SKIP(...)            test_skip(__FILE__, __LINE__, NULL, __VA_ARGS__)
#define SKIP_NEED(need, ...) test_skip(__FILE__, __LINE__, need, __VA_ARGS__)

/* With TRAINSHORT_BIN set (make test-asan), "./train", "./eval" and "./generate" in cmd name the
 * binaries in that directory instead; the command as it will run goes to out. run_cmd applies it.
 */
void locate_binaries(const char *cmd, char *out, size_t n);
/* The integer in environment variable name (decimal, or 0x hex), fallback if unset or empty. */
long test_env_long(const char *name, long fallback);
/* Run a shell command; returns its exit status and fills out (stdout+stderr, truncated). */
int run_cmd(const char *cmd, char *out, size_t outlen);
/* Scratch directory for files a test writes (tests/tmp/<name>), created empty. */
const char *test_tmpdir(const char *name);

/* Helpers of the tests that run ./train and ./eval. Command output buffers are OUT_LEN bytes. */
#define OUT_LEN 65536
/* run_cmd() of a printf-formatted command; out (OUT_LEN bytes) gets stdout and stderr. */
int sh(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int count_lines(const char *text);
int same_files(const char *p, const char *q); /* byte-identical (both readable) */
/* Fresh tests/tmp/<name> in dir, with the tiny corpus of tests/fixtures/cli in <dir>/data. */
void cli_scratch(const char *name, char *dir, size_t n);
/* <dir>/cfg.json: a tiny model (1 layer, d_model 16, 2 heads, d_ff 32, plus model_extra, e.g.
 * "\"position\": {\"type\": \"alibi\"}"), 12 steps of 2 x 16 tokens of <dir>/data. */
void cli_tiny_config(const char *dir, const char *model_extra);
/* A user's mistake: status 2, exactly one line "error: ..." containing want (and want2, if
 * given), and nothing created at absent (if given). */
void expect_user_error(int rc, const char *out, const char *want, const char *want2,
                       const char *absent, const char *what);
/* The value of key in the log.jsonl row of step in run_dir (NaN if none). */
double log_value(const char *run_dir, int step, const char *key);

#endif
