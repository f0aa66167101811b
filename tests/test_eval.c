/* test_eval.c — the evaluation sweep: the --lvalid syntax (every form and every malformed input),
 * the sliding-window token accounting (every token scored once, with the context evaluate.h
 * promises), sliding against an independent per-token reference, and ./eval's sweep features as
 * a user sees them: stride = L_valid is the nonoverlapping result bit for bit, --json rows,
 * --skip-done, --per-position.
 *
 * The CLI tests use the corpus of test_cli.c (tests/fixtures/cli; valid has 105 = 3*5*7 tokens,
 * so strides 1, 3, 7 divide it while L 8 and 13 do not). */
#include "test.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../src/evaluate.h"
#include "../src/config/config.h"
#include "../src/io/lengths.h"
#include "../src/model.h"
#include "../src/util/util.h"

#define FIXTURES     "tests/fixtures/cli"
#define VALID_TOKENS 105

/* ---- --lvalid ---- */

/* spec parses to exactly want[0..n) (train_len 512 for "paper"). */
static void expect_lengths(const char *spec, const int *want, int n) {
    int got[LENGTHS_MAX];
    char err[256] = "";
    int k = lengths_parse(spec, 512, got, err, sizeof err);
    CHECK(k == n, "'%s': %d lengths, expected %d (%s)", spec, k, n, err);
    for (int i = 0; i < k && i < n; i++)
        CHECK(got[i] == want[i], "'%s': length %d is %d, expected %d", spec, i, got[i], want[i]);
}

TEST(test_eval_lengths_syntax) {
    expect_lengths("128", (const int[]){128}, 1);
    expect_lengths("128,256,1024", (const int[]){128, 256, 1024}, 3);
    expect_lengths("512..16000", (const int[]){512, 1024, 2048, 4096, 8192, 16000}, 6);
    expect_lengths("4..20", (const int[]){4, 8, 16, 20}, 4);
    expect_lengths("4..16", (const int[]){4, 8, 16}, 3); /* B on the grid: once */
    expect_lengths("16..16", (const int[]){16}, 1);
    expect_lengths("100..350:100", (const int[]){100, 200, 300, 350}, 4); /* B off the grid */
    expect_lengths("100..300:100", (const int[]){100, 200, 300}, 3);
    expect_lengths("5..5:3", (const int[]){5}, 1);
    expect_lengths("1..4:1", (const int[]){1, 2, 3, 4}, 4);
    expect_lengths("7,2..8,10..12:2", (const int[]){7, 2, 4, 8, 10, 12}, 6); /* mixed items */
    /* the paper's rows for L = 512: 512, 513, 522 ... 612, 712 ... 1512, 2512 ... 15512 */
    int paper[64], n = 0;
    paper[n++] = 512, paper[n++] = 513;
    for (int d = 10; d <= 100; d += 10) paper[n++] = 512 + d;
    for (int d = 200; d <= 1000; d += 100) paper[n++] = 512 + d;
    for (int d = 2000; d <= 15000; d += 1000) paper[n++] = 512 + d;
    CHECK(n == 35 && paper[2] == 522 && paper[11] == 612 && paper[12] == 712 && paper[20] == 1512 &&
              paper[21] == 2512 && paper[34] == 15512,
          "the paper's list as written in the issue");
    expect_lengths("paper", paper, n);
    int got[LENGTHS_MAX];
    char err[256];
    CHECK(lengths_parse("paper", 64, got, err, sizeof err) == 35 && got[0] == 64 &&
              got[34] == 15064,
          "paper follows the training length");
}

TEST(test_eval_lengths_malformed) {
    static const char *bad[] = {
        "0",           "-3",          "",         "1,,2", "3,",     ",3",     "abc",
        "5..2",        "1..10:0",     "1..10:-1", "..5",  "4..",    "2.5",    "1..2..3",
        "1..10:",      "+5",          " 5",       "5 ",   "papers", "paper5", "1..9999999999",
        "99999999999", "1..100000:1", "1..300:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int got[LENGTHS_MAX];
        char err[256] = "";
        int k = lengths_parse(bad[i], 512, got, err, sizeof err);
        CHECK(k == -1 && err[0], "'%s' should be rejected, got %d lengths", bad[i], k);
    }
    /* exactly LENGTHS_MAX is fine, one more is not */
    int got[LENGTHS_MAX];
    char err[256];
    CHECK(lengths_parse("1..256:1", 512, got, err, sizeof err) == LENGTHS_MAX, "256 lengths");
    CHECK(lengths_parse("1..257:1", 512, got, err, sizeof err) == -1, "257 lengths: %s", err);
}

/* ---- window accounting ---- */

/* Every token is scored by exactly one window, window k starts at kS, and token t sits at the
 * window position evaluate.h promises: t if t < L, else L - S + (t - L) mod S. */
static void check_windows(size_t n, int L, int S) {
    size_t nw = eval_window_count(n, L, S), scored = 0, bad = 0, next = 0;
    for (size_t k = 0; k < nw; k++) {
        EvalWindow w = eval_window(n, L, S, k);
        bad += w.start != k * (size_t)S || w.end - w.start > (size_t)L || w.score != next;
        for (size_t t = w.score; t < w.end; t++) {
            size_t want = t < (size_t)L ? t : (size_t)(L - S) + (t - (size_t)L) % (size_t)S;
            bad += t - w.start != want;
        }
        scored += w.end - w.score;
        next = w.end;
    }
    CHECK(scored == n && next == n && bad == 0,
          "n %zu L %d S %d: %zu tokens scored in %zu windows, %zu violations", n, L, S, scored, nw,
          bad);
}

TEST(test_eval_window_accounting) {
    for (size_t n = 1; n <= 40; n++)
        for (int L = 1; L <= 13; L++)
            for (int S = 1; S <= L; S++) check_windows(n, L, S);
    check_windows(105, 8, 7);
    check_windows(100000, 4096, 1000);
    /* S = L: the nonoverlapping segments [kL, (k+1)L), the last one short */
    size_t nw = eval_window_count(105, 13, 13);
    EvalWindow last = eval_window(105, 13, 13, nw - 1);
    CHECK(nw == 9 && last.start == 104 && last.score == 104 && last.end == 105,
          "S = L = 13 over 105 tokens: %zu windows, last [%zu, %zu)", nw, last.start, last.end);
    /* the worked example of docs/evaluation.md: 10 tokens, L 4, S 2 */
    static const size_t want[][3] = {{0, 0, 4}, {2, 4, 6}, {4, 6, 8}, {6, 8, 10}};
    CHECK(eval_window_count(10, 4, 2) == 4, "10 tokens, L 4, S 2: 4 windows");
    for (size_t k = 0; k < 4; k++) {
        EvalWindow w = eval_window(10, 4, 2, k);
        CHECK(w.start == want[k][0] && w.score == want[k][1] && w.end == want[k][2],
              "docs example window %zu: [%zu, %zu) scoring from %zu", k, w.start, w.end, w.score);
    }
    CHECK(eval_tokens_read(10, 4, 2) == 16 && eval_tokens_read(105, 13, 13) == 105, "tokens read");
}

/* ---- sliding against a reference that scores one token per forward pass ---- */

TEST(test_eval_sliding_reference) {
    const int V = 23, max_T = 13;
    const size_t n = 60;
    Config cfg;
    char err[512];
    CHECK(
        !config_from_text(&cfg,
                          "{\"model\": {\"n_layers\": 2, \"d_model\": 16, \"n_heads\": 2, "
                          "\"d_ff\": 24, \"init_std\": 0.3, \"position\": {\"type\": \"alibi\"}}}",
                          "test", err, sizeof err),
        "config: %s", err);
    Model m;
    model_create(&m, &cfg, V, 4, max_T, 0);
    model_init(&m, 11);
    int32_t ids[60], in[13], tg[13];
    float losses[13 * 4];
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(hash64(i + 7) % V);
    const int eos = 0;
    static const int cases[][2] = {{8, 1}, {8, 3}, {8, 8}, {13, 7}, {13, 5}, {5, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int L = cases[c][0], S = cases[c][1];
        /* token t read alone after its promised window position: a forward over [t - p, t] */
        double ref = 0.0;
        for (size_t t = 0; t < n; t++) {
            size_t ctx = t < (size_t)L ? t : (size_t)(L - S) + (t - (size_t)L) % (size_t)S;
            size_t s = t - ctx;
            int len = (int)ctx + 1;
            for (int j = 0; j < len; j++)
                in[j] = s + j == 0 ? eos : ids[s + j - 1], tg[j] = ids[s + j];
            const Pass p = {.B = 1, .T = len};
            model_forward(&m, &p, in);
            model_loss(&m, &p, tg, losses);
            ref += losses[len - 1];
        }
        double pnll[13] = {0};
        size_t pcount[13] = {0};
        EvalPositions pos = {pnll, pcount, NULL};
        EvalResult r = eval_sliding(&m, ids, n, L, S, eos, &pos, NULL, NULL);
        size_t counted = 0;
        double pos_sum = 0.0;
        for (int p = 0; p < L; p++) counted += pcount[p], pos_sum += pnll[p];
        char what[64];
        snprintf(what, sizeof what, "L %d S %d: sliding NLL vs per-token reference", L, S);
        CHECK_CLOSE(r.nll, ref, 1e-5, what);
        CHECK(r.tokens == n && counted == n, "L %d S %d: %zu tokens, %zu in the positions", L, S,
              r.tokens, counted);
        CHECK_CLOSE(pos_sum, r.nll, 1e-9, "per-position sums add up to the NLL");
    }
    EvalResult a = eval_sliding(&m, ids, n, 13, 13, eos, NULL, NULL, NULL);
    EvalResult b = eval_nonoverlap(&m, ids, n, 13, eos, NULL, NULL);
    CHECK(a.nll == b.nll && a.segments == 5, "S = L is nonoverlapping: %.17g vs %.17g", a.nll,
          b.nll);
    model_free(&m);
    config_free(&cfg);
}

/* ---- ./eval's sweep ---- */

/* A tiny trained run in tests/tmp/<name>/run (2 steps: the numbers only need to be real). */
static int trained_run(const char *name, char *dir, size_t n) {
    char out[OUT_LEN];
    snprintf(dir, n, "%s", test_tmpdir(name));
    int rc = sh(out,
                "mkdir -p %s/data && cp " FIXTURES "/wiki.*.tokens %s/data/ && printf '%%s' "
                "'{\"model\": {\"n_layers\": 1, \"d_model\": 16, \"n_heads\": 2, \"d_ff\": 32, "
                "\"position\": {\"type\": \"alibi\"}}, \"train\": {\"seq_len\": 8, \"batch\": 2, "
                "\"steps\": 2, \"warmup\": 1, \"threads\": 1}, \"data\": {\"dir\": \"%s/data\"}}' "
                "> %s/cfg.json && ./train --config %s/cfg.json --out %s/run",
                dir, dir, dir, dir, dir, dir);
    CHECK(rc == 0, "training %s failed (status %d): %s", dir, rc, out);
    return rc == 0;
}

/* The JSON lines of a file, parsed; returns how many (at most max). */
static int json_lines(const char *path, cJSON **rows, int max) {
    size_t len;
    char *text = read_file(path, &len);
    int n = 0;
    for (char *line = text ? strtok(text, "\n") : NULL; line && n < max; line = strtok(NULL, "\n"))
        rows[n++] = cJSON_Parse(line);
    free(text);
    return n;
}

static double num(const cJSON *o, const char *key) {
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static const char *str(const cJSON *o, const char *key) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "";
}

static void free_rows(cJSON **rows, int n) {
    for (int i = 0; i < n; i++) cJSON_Delete(rows[i]);
}

TEST(test_eval_cli_sliding) {
    char dir[256], out[OUT_LEN], path[600];
    if (!trained_run("eval_sliding", dir, sizeof dir)) return;
    snprintf(path, sizeof path, "%s/rows.jsonl", dir);
    /* stride = L_valid is the nonoverlapping evaluation, to the last bit of the total NLL */
    int rc = sh(out, "./eval --ckpt %s/run --lvalid 8,13 --json %s", dir, path);
    CHECK(rc == 0, "nonoverlapping: status %d: %s", rc, out);
    rc = sh(out, "./eval --ckpt %s/run --lvalid 8 --mode sliding --stride 8 --json %s", dir, path);
    CHECK(rc == 0, "sliding S 8: status %d: %s", rc, out);
    rc =
        sh(out, "./eval --ckpt %s/run --lvalid 13 --mode sliding --stride 13 --json %s", dir, path);
    CHECK(rc == 0, "sliding S 13: status %d: %s", rc, out);
    /* every token once for strides that divide neither L */
    static const int strides[] = {1, 3, 7};
    for (int i = 0; i < 3; i++) {
        rc = sh(out, "./eval --ckpt %s/run --lvalid 8,13 --mode sliding --stride %d --json %s", dir,
                strides[i], path);
        CHECK(rc == 0, "sliding S %d: status %d: %s", strides[i], rc, out);
    }
    cJSON *rows[16];
    int n = json_lines(path, rows, 16);
    CHECK(n == 10, "%s: %d rows, expected 10", path, n);
    if (n == 10) {
        for (int i = 0; i < 2; i++) {
            const cJSON *a = rows[i], *b = rows[2 + i];
            CHECK(!strcmp(str(a, "mode"), "nonoverlapping") && !strcmp(str(b, "mode"), "sliding") &&
                      num(a, "stride") == num(a, "lvalid") && num(b, "stride") == num(b, "lvalid"),
                  "rows %d and %d: modes and strides", i, 2 + i);
            CHECK(num(a, "nll") == num(b, "nll") && num(a, "segments") == num(b, "segments"),
                  "L_valid %g: sliding at stride L gives NLL %.17g, nonoverlapping %.17g",
                  num(a, "lvalid"), num(b, "nll"), num(a, "nll"));
        }
        for (int i = 4; i < 10; i++) {
            int L = (int)num(rows[i], "lvalid"), S = (int)num(rows[i], "stride");
            size_t want = eval_window_count(VALID_TOKENS, L, S);
            CHECK(num(rows[i], "tokens") == VALID_TOKENS && num(rows[i], "segments") == want,
                  "L %d S %d: %g tokens in %g windows, expected %d in %zu", L, S,
                  num(rows[i], "tokens"), num(rows[i], "segments"), VALID_TOKENS, want);
        }
        /* outside a git checkout (a release tarball) the build's revision is "unknown" */
        char git[OUT_LEN];
        int in_git = sh(git, "git rev-parse --git-dir") == 0;
        for (int i = 0; i < n; i++)
            CHECK(cJSON_IsObject(rows[i]) && strlen(str(rows[i], "rev")) > 0 &&
                      (!in_git || strcmp(str(rows[i], "rev"), "unknown")) &&
                      strstr(str(rows[i], "ckpt"), "model.safetensors") &&
                      !strcmp(str(rows[i], "split"), "valid"),
                  "row %d lacks rev/ckpt/split", i);
    }
    free_rows(rows, n);
    /* the table says windows in sliding mode */
    rc = sh(out, "./eval --ckpt %s/run --lvalid 8 --mode sliding --stride 3", dir);
    CHECK(rc == 0 && strstr(out, "windows") && strstr(out, "       8        34        105"),
          "sliding table: %s", out);
}

TEST(test_eval_cli_skip_done) {
    char dir[256], out[OUT_LEN], path[600];
    if (!trained_run("eval_skip", dir, sizeof dir)) return;
    snprintf(path, sizeof path, "%s/rows.jsonl", dir);
    int rc =
        sh(out, "./eval --ckpt %s/run --lvalid 4,8 --mode sliding --stride 2 --json %s", dir, path);
    CHECK(rc == 0, "first sweep: status %d: %s", rc, out);
    /* 4 and 8 are done at stride 2; 16 is new; stride 3 or nonoverlapping are other rows */
    rc = sh(out,
            "./eval --ckpt %s/run --lvalid 4,8,16 --mode sliding --stride 2 --json %s --skip-done",
            dir, path);
    CHECK(rc == 0 && strstr(out, "L_valid 4: already in") && strstr(out, "L_valid 8: already in") &&
              !strstr(out, "L_valid 16: already"),
          "resumed sweep: status %d: %s", rc, out);
    rc = sh(out, "./eval --ckpt %s/run --lvalid 4 --mode sliding --stride 3 --json %s --skip-done",
            dir, path);
    CHECK(rc == 0 && !strstr(out, "already in"), "another stride is not skipped: %s", out);
    rc = sh(out, "./eval --ckpt %s/run --lvalid 4 --json %s --skip-done", dir, path);
    CHECK(rc == 0 && !strstr(out, "already in"), "another mode is not skipped: %s", out);
    rc = sh(out, "./eval --ckpt %s/run --lvalid 4 --split test --json %s --skip-done", dir, path);
    CHECK(rc == 0 && !strstr(out, "already in"), "another split is not skipped: %s", out);
    size_t len;
    char *text = read_file(path, &len);
    CHECK(text && count_lines(text) == 6, "%s: 2 + 1 + 1 + 1 + 1 rows expected:\n%s", path,
          text ? text : "(missing)");
    free(text);
    /* a row with a duplicate key is not strict JSON: it does not count as done */
    snprintf(path, sizeof path, "%s/dup.jsonl", dir);
    rc = sh(out, "./eval --ckpt %s/run --lvalid 4 --json %s && sed -i 's/^{/{\"lvalid\":4,/' %s",
            dir, path, path);
    CHECK(rc == 0, "writing a row with a duplicate key: %s", out);
    rc = sh(out, "./eval --ckpt %s/run --lvalid 4 --json %s --skip-done", dir, path);
    CHECK(rc == 0 && !strstr(out, "already in"), "a row with a duplicate key was taken: %s", out);
}

/* Checks one --per-position row: edges from 0 to L, increasing; one loss and count per bucket;
 * counts summing to the tokens scored. */
static void check_per_position_row(const cJSON *o, int L, int max_buckets, const char *mode) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "edges"),
                *l = cJSON_GetObjectItemCaseSensitive(o, "loss"),
                *c = cJSON_GetObjectItemCaseSensitive(o, "count");
    int nb = cJSON_GetArraySize(c);
    CHECK(num(o, "lvalid") == L && !strcmp(str(o, "mode"), mode) && *str(o, "ckpt") &&
              !strcmp(str(o, "split"), "valid"),
          "per-position row for L %d: fields", L);
    CHECK(nb >= 1 && nb <= max_buckets && cJSON_GetArraySize(l) == nb &&
              cJSON_GetArraySize(e) == nb + 1,
          "L %d: %d buckets, %d losses, %d edges", L, nb, cJSON_GetArraySize(l),
          cJSON_GetArraySize(e));
    double total = 0, prev = -1;
    int ok = 1;
    for (int b = 0; b <= nb; b++) {
        double x = cJSON_GetNumberValue(cJSON_GetArrayItem(e, b));
        ok &= x > prev && (b > 0 || x == 0) && (b < nb || x == L);
        prev = x;
    }
    for (int b = 0; b < nb; b++) {
        double k = cJSON_GetNumberValue(cJSON_GetArrayItem(c, b));
        const cJSON *loss = cJSON_GetArrayItem(l, b);
        ok &= k > 0 ? cJSON_IsNumber(loss) && loss->valuedouble > 0 : cJSON_IsNull(loss);
        total += k;
    }
    CHECK(ok, "L %d: edges not increasing from 0 to L, or a loss does not fit its count", L);
    CHECK(total == VALID_TOKENS, "L %d: counts sum to %g, expected %d", L, total, VALID_TOKENS);
}

TEST(test_eval_cli_per_position) {
    char dir[256], out[OUT_LEN], path[600];
    if (!trained_run("eval_per_position", dir, sizeof dir)) return;
    snprintf(path, sizeof path, "%s/pp.jsonl", dir);
    int rc = sh(out, "./eval --ckpt %s/run --lvalid 8,13,200 --per-position %s", dir, path);
    CHECK(rc == 0, "status %d: %s", rc, out);
    rc = sh(out,
            "./eval --ckpt %s/run --lvalid 13 --mode sliding --stride 3 --per-position %s "
            "--per-position-buckets 5 --per-position-scale log",
            dir, path);
    CHECK(rc == 0, "status %d: %s", rc, out);
    cJSON *rows[8];
    int n = json_lines(path, rows, 8);
    CHECK(n == 4, "%s: %d rows, expected 4", path, n);
    if (n == 4) {
        check_per_position_row(rows[0], 8, 8, "nonoverlapping"); /* L < 64: a bucket per position */
        check_per_position_row(rows[1], 13, 13, "nonoverlapping");
        check_per_position_row(rows[2], 200, 64, "nonoverlapping"); /* positions >= 105 empty */
        check_per_position_row(rows[3], 13, 5, "sliding");
        CHECK(!strcmp(str(rows[3], "scale"), "log") && !strcmp(str(rows[0], "scale"), "linear"),
              "scale field");
    }
    free_rows(rows, n);
}

/* --skip-done with --per-position: a length whose --json row exists but not its profile is
 * evaluated for the profile only (no second row); once both exist nothing runs; another
 * bucket count is another profile. */
TEST(test_eval_cli_skip_done_per_position) {
    char dir[256], out[OUT_LEN], rows[600], pp[600];
    if (!trained_run("eval_skip_pp", dir, sizeof dir)) return;
    snprintf(rows, sizeof rows, "%s/rows.jsonl", dir);
    snprintf(pp, sizeof pp, "%s/pp.jsonl", dir);
    const char *steps[] = {"--lvalid 8,13 --json %s", "--lvalid 8,13 --json %s --per-position %s",
                           "--lvalid 8,13 --json %s --per-position %s --per-position-buckets 4"};
    const int want_pp[] = {0, 2, 4};
    for (int k = 0; k < 3; k++) {
        char args[256];
        snprintf(args, sizeof args, steps[k], rows, pp);
        for (int again = 0; again < 2; again++) { /* the second time: everything is done */
            int rc = sh(out, "./eval --ckpt %s/run --skip-done %s", dir, args);
            const char *said = again ? "skipped (--skip-done)" : k ? "per-position profile" : "";
            CHECK(rc == 0 && strstr(out, said) && (again || !strstr(out, "skipped")),
                  "step %d, run %d: status %d, no '%s': %s", k, again, rc, said, out);
            cJSON *r[8], *p[8];
            int nr = json_lines(rows, r, 8), np = json_lines(pp, p, 8);
            free_rows(r, nr);
            free_rows(p, np);
            CHECK(nr == 2 && np == want_pp[k],
                  "step %d, run %d: %d rows and %d profiles, expected 2 and %d", k, again, nr, np,
                  want_pp[k]);
        }
    }
}

TEST(test_eval_cli_errors) {
    char dir[256], out[OUT_LEN];
    if (!trained_run("eval_errors", dir, sizeof dir)) return;
    static const struct {
        const char *args, *want;
    } bad[] = {
        {"--lvalid 8 --mode sliding --stride 0", "--stride"},
        {"--lvalid 8 --mode sliding --stride -2", "--stride"},
        {"--lvalid 4,8 --mode sliding --stride 5", "--stride"},
        {"--lvalid 8 --mode sliding", "--stride"},
        {"--lvalid 8 --stride 4", "--stride"},
        {"--lvalid 8 --mode overlapping", "--mode"},
        {"--lvalid 8 --skip-done", "--skip-done"},
        {"--per-position x --per-position-buckets 0", "--per-position-buckets"},
        {"--per-position x --per-position-scale cubic", "--per-position-scale"},
        {"--lvalid 1..10:0", "--lvalid"},
        {"--lvalid 3,", "--lvalid"},
        {"--lvalid 1..1000:1", "--lvalid"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = sh(out, "./eval --ckpt %s/run %s", dir, bad[i].args);
        CHECK(rc == 2 && !strncmp(out, "error: ", 7) && count_lines(out) == 1 &&
                  strstr(out, bad[i].want),
              "'%s': status %d, expected 2 and one line naming %s: %s", bad[i].args, rc,
              bad[i].want, out);
    }
    int rc = sh(out, "./eval --help");
    CHECK(rc == 0 && strstr(out, "--mode") && strstr(out, "--stride") && strstr(out, "paper") &&
              strstr(out, "A..B:S") && strstr(out, "--per-position") && strstr(out, "--skip-done"),
          "--help documents the sweep flags: %s", out);
}
