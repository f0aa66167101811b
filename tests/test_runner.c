/* test_runner.c — the runner itself (tests/main.c) does not pass what it did not test: a skip is
 * reported as SKIP and counted, a skip of a resource TRAINSHORT_REQUIRE lists fails, a test that
 * ran no check fails, a filter that matches nothing fails, and no registered test is dropped.
 *
 * The runner is checked from outside: this binary is run again with TRAINSHORT_RUNNER_DEMO set,
 * which registers the demo tests below (and, with "many", 600 more) and nothing else is run
 * (the filter "demo_"), so its rows and its closing line can be read. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

static void demo_pass(void) {
    CHECK(1, "passes");
}
static void demo_skip(void) {
    SKIP("nothing to test here");
}
static void demo_need(void) {
    SKIP_NEED("demo-resource", "demo-resource not found");
}
static void demo_no_check(void) {}
static void demo_many(void) {
    CHECK(1, "one of many");
}

__attribute__((constructor)) static void register_demos(void) {
    const char *demo = getenv("TRAINSHORT_RUNNER_DEMO");
    if (!demo) return;
    test_register("demo_pass", demo_pass);
    test_register("demo_skip", demo_skip);
    test_register("demo_need", demo_need);
    test_register("demo_no_check", demo_no_check);
    static char names[600][24];
    for (int i = 0; !strcmp(demo, "many") && i < 600; i++) {
        snprintf(names[i], sizeof names[i], "demo_many_%d", i);
        test_register(names[i], demo_many);
    }
}

/* Runs this binary on the demo tests; out gets its output, the result is its exit status. */
static int run_demo(char *out, const char *env, const char *filter) {
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return -1;
    self[n] = 0;
    return sh(out, "env -u TRAINSHORT_REQUIRE %s '%s' %s", env, self, filter);
}

/* Whether out has a line starting with prefix. */
static int has_row(const char *out, const char *prefix) {
    for (const char *p = out; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix))) return 1;
    return 0;
}

TEST(test_runner_reports_skips_and_empty_tests) {
    char out[OUT_LEN];
    int rc = run_demo(out, "TRAINSHORT_RUNNER_DEMO=1", "demo_");
    CHECK(rc == 1, "a run with a test that ran no check must fail: status %d:\n%s", rc, out);
    CHECK(has_row(out, "ok   demo_pass "), "no ok row for demo_pass:\n%s", out);
    CHECK(has_row(out, "SKIP demo_skip: nothing to test here\n"), "no SKIP row for demo_skip:\n%s",
          out);
    CHECK(has_row(out, "SKIP demo_need: demo-resource not found\n"),
          "without TRAINSHORT_REQUIRE, a missing resource is a skip:\n%s", out);
    CHECK(has_row(out, "FAIL demo_no_check ") && strstr(out, "demo_no_check ran no check"),
          "a test without checks or SKIP must fail:\n%s", out);
    CHECK(strstr(out, "\n1 passed, 1 failed, 2 skipped\n") != NULL,
          "closing line: expected 1 passed, 1 failed, 2 skipped:\n%s", out);
}

TEST(test_runner_required_resource_fails) {
    char out[OUT_LEN];
    int rc = run_demo(out, "TRAINSHORT_RUNNER_DEMO=1 TRAINSHORT_REQUIRE=wikitext-2,demo-resource",
                      "demo_need");
    CHECK(rc == 1, "a skip of a required resource must fail: status %d:\n%s", rc, out);
    CHECK(has_row(out, "FAIL demo_need ") && strstr(out, "CI requires it"),
          "the failure should say CI requires demo-resource:\n%s", out);
    CHECK(strstr(out, "\n0 passed, 1 failed, 0 skipped\n") != NULL, "closing line:\n%s", out);
    rc = run_demo(out, "TRAINSHORT_RUNNER_DEMO=1 TRAINSHORT_REQUIRE=demo-resourcefork,demo",
                  "demo_need");
    CHECK(rc == 0 && has_row(out, "SKIP demo_need: "),
          "only a whole name in TRAINSHORT_REQUIRE makes a skip fail: status %d:\n%s", rc, out);
}

TEST(test_runner_keeps_every_test) {
    char out[OUT_LEN];
    int rc = run_demo(out, "TRAINSHORT_RUNNER_DEMO=many", "demo_many_");
    CHECK(rc == 0 && strstr(out, "\n600 passed, 0 failed, 0 skipped\n") &&
              has_row(out, "ok   demo_many_599 "),
          "600 registered tests, all run: status %d:\n%.2000s", rc, out);
    rc = run_demo(out, "TRAINSHORT_RUNNER_DEMO=1", "no_such_test");
    CHECK(rc == 1 && strstr(out, "no test name contains 'no_such_test'"),
          "a filter that matches no test must fail: status %d:\n%s", rc, out);
}
