/* test_cli_generate.c — ./generate end to end on the tiny corpus: the output and --json agree
 * with the cache off, the same seed repeats, samples and NBCE run, and every error path is one
 * line with status 2. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../src/util/util.h"
#include "cli_util.h"
#include "test.h"

#define PROMPT "The Harbour Lighthouse is a stone tower on the northern cliff"

/* The "ids" of sample k of a --json file, into ids; returns how many (-1: unreadable). */
static int json_ids(const char *path, int k, int *ids, int max) {
    size_t len;
    char *text = read_file(path, &len);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    const cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "samples"), k);
    int n = s ? 0 : -1;
    for (const cJSON *x = s ? cJSON_GetObjectItem(s, "ids")->child : NULL; x && n < max;
         x = x->next)
        ids[n++] = x->valueint;
    cJSON_Delete(o);
    free(text);
    return n;
}

static int same_ids(const char *p, const char *q) {
    int a[256], b[256];
    const int na = json_ids(p, 0, a, 256), nb = json_ids(q, 0, b, 256);
    return na > 0 && na == nb && !memcmp(a, b, sizeof(int) * (size_t)na);
}

TEST(test_cli_generate_cached_equals_uncached_and_repeats) {
    char dir[256], out[OUT_LEN], j[4][600];
    if (!trained_scratch("cli_generate", dir, sizeof dir, out, NULL)) return;
    for (int i = 0; i < 4; i++) snprintf(j[i], sizeof j[i], "%s/g%d.json", dir, i);
    int rc = sh(out,
                "./generate --ckpt %s/run --prompt '" PROMPT " zzqq' --max-new 24 --greedy "
                "--json %s",
                dir, j[0]);
    CHECK(rc == 0 && strstr(out, "prompt 12 tokens (1 unknown -> <unk>), generated 24"),
          "greedy: status %d: %s", rc, out);
    rc = sh(out,
            "./generate --ckpt %s/run --prompt '" PROMPT " zzqq' --max-new 24 --greedy "
            "--no-cache --json %s",
            dir, j[1]);
    CHECK(rc == 0 && same_ids(j[0], j[1]), "greedy with and without the cache differ: %s", out);
    for (int i = 2; i < 4; i++) {
        rc = sh(out,
                "./generate --ckpt %s/run --prompt '" PROMPT "' --max-new 40 --seed 5 "
                "--temperature 0.8 --top-k 20 --top-p 0.95 --quiet --json %s",
                dir, j[i]);
        CHECK(rc == 0, "sampling: status %d: %s", rc, out);
    }
    CHECK(same_ids(j[2], j[3]), "the same seed and flags gave different ids");
    /* a bf16 cache moves log-probabilities far less than the gap between the two best words */
    rc = sh(out,
            "./generate --ckpt %s/run --prompt '" PROMPT " zzqq' --max-new 24 --greedy "
            "--kv-dtype bf16 --json %s",
            dir, j[1]);
    size_t len;
    char *text = read_file(j[1], &len);
    CHECK(rc == 0 && same_ids(j[0], j[1]) && text && strstr(text, "\"kv_dtype\":\t\"bf16\"") &&
              strstr(text, "\"dtype\":\t\"bf16\""),
          "greedy with a bf16 cache: status %d: %s", rc, out);
    free(text);
    /* bf16 weights too: the first token's log-probability moves by rounding only */
    rc = sh(out,
            "./generate --ckpt %s/run --prompt '" PROMPT " zzqq' --max-new 4 --greedy "
            "--kv-dtype bf16 --weights-dtype bf16 --json %s",
            dir, j[1]);
    text = read_file(j[1], &len);
    char *ref = read_file(j[0], &len);
    const char *lp1 = text ? strstr(text, "\"logprobs\"") : NULL;
    const char *lp0 = ref ? strstr(ref, "\"logprobs\"") : NULL;
    const double a = lp1 ? strtod(strchr(lp1, '[') + 1, NULL) : 1.0;
    const double b = lp0 ? strtod(strchr(lp0, '[') + 1, NULL) : 1.0;
    CHECK(rc == 0 && text && strstr(text, "\"weights_dtype\":\t\"bf16\"") && a < 0 &&
              fabs(a - b) < 0.05 && a != b,
          "bf16 weights: status %d, first log-probability %g against %g in float32: %s", rc, a, b,
          out);
    free(text), free(ref);
    /* NBCE with one chunk holding the whole prompt and beta 0 is plain generation */
    rc = sh(out,
            "./generate --ckpt %s/run --prompt '" PROMPT " zzqq' --max-new 24 --greedy "
            "--nbce-chunk-len 100 --nbce-beta 0 --json %s",
            dir, j[1]);
    CHECK(rc == 0 && same_ids(j[0], j[1]), "NBCE, one chunk, beta 0 differs from plain: %s", out);
    int ids[64];
    CHECK(json_ids(j[2], 0, ids, 64) == 40, "--max-new 40: %d ids", json_ids(j[2], 0, ids, 64));
}

TEST(test_cli_generate_samples_window_and_nbce) {
    char dir[256], out[OUT_LEN], path[600];
    if (!trained_scratch("cli_generate_more", dir, sizeof dir, out, NULL)) return;
    snprintf(path, sizeof path, "%s/s.json", dir);
    int rc = sh(out,
                "./generate --ckpt %s/run --prompt '" PROMPT "' --max-new 30 --num-samples 3 "
                "--seed 2 --max-context 8 --json %s",
                dir, path);
    int ids[64];
    CHECK(rc == 0 && strstr(out, "--- sample 3 ---") && json_ids(path, 2, ids, 64) == 30,
          "3 samples with a window of 8: status %d: %s", rc, out);
    size_t len;
    char *text = read_file(path, &len);
    /* 3 sequences of 1 + 11 + 30 = 42 positions: one block each */
    CHECK(text && strstr(text, "\"peak_blocks_used\":\t3") && strstr(text, "\"kv_heads\":\t2"),
          "pool use in --json: %s", text ? text : "(unreadable)");
    free(text);
    snprintf(path, sizeof path, "%s/n.json", dir);
    rc = sh(out,
            "./generate --ckpt %s/run --prompt '" PROMPT "' --max-new 6 --greedy "
            "--nbce-chunk-len 4 --nbce-question 2 --json %s",
            dir, path);
    text = read_file(path, &len);
    /* 11 prompt tokens - 2 of question = 9 of context: chunks of 4, 4, 1 */
    CHECK(rc == 0 && text && strstr(text, "\"nbce_chunk\"") && json_ids(path, 0, ids, 64) == 6,
          "NBCE: status %d: %s", rc, out);
    free(text);
}

TEST(test_cli_generate_errors) {
    char dir[256], out[OUT_LEN], run[600];
    if (!trained_scratch("cli_generate_err", dir, sizeof dir, out, NULL)) return;
    snprintf(run, sizeof run, "./generate --ckpt %s/run", dir);
    const struct {
        const char *args, *want;
    } cases[] = {
        {"--prompt a --bogus 1", "unknown argument '--bogus'"},
        {"--prompt a --greedy --bogus", "'--bogus'"},
        {"", "exactly one of --prompt"},
        {"--prompt a --prompt-file /dev/null", "exactly one of --prompt"},
        {"--prompt ' \t '", "the prompt is empty"},
        {"--prompt-file /nonexistent/p.txt", "--prompt-file: cannot read '/nonexistent/p.txt'"},
        {"--prompt a --top-p 0", "--top-p: expected a number in (0, 1]"},
        {"--prompt a --top-p 1.5", "--top-p: expected a number in (0, 1]"},
        {"--prompt a --temperature 0", "--temperature: expected a number > 0 (or --greedy)"},
        {"--prompt a --temperature -1", "--temperature"},
        {"--prompt a --top-k -3", "--top-k: expected an integer from 0"},
        {"--prompt a --max-new 0", "--max-new: expected an integer from 1"},
        {"--prompt a --num-samples 0", "--num-samples"},
        {"--prompt a --temperature x", "--temperature: expected a number, got 'x'"},
        {"--prompt 'a b' --nbce-chunk-len 4 --nbce-question 2", "leaves no context"},
        {"--prompt 'a b' --nbce-question 1", "need --nbce-chunk-len"},
        {"--prompt a --nbce-chunk-len 4 --num-samples 2", "--num-samples applies to plain"},
        {"--prompt a --no-cache --max-context 4", "--no-cache is plain generation"},
        {"--prompt a --no-cache --kv-dtype bf16", "--no-cache is plain generation"},
        {"--prompt a --kv-dtype fp16", "--kv-dtype: expected f32 or bf16, got 'fp16'"},
        {"--prompt a --weights-dtype f16", "--weights-dtype: expected f32 or bf16, got 'f16'"},
        {"--prompt a --no-cache --weights-dtype bf16", "--no-cache is plain generation"},
        {"--prompt a --nbce-chunk-len 4 --nbce-beta -1", "--nbce-beta: expected a number >= 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = sh(out, "%s %s", run, cases[i].args);
        expect_user_error(rc, out, cases[i].want, NULL, NULL, cases[i].args);
    }
    int rc = sh(out, "./generate --ckpt %s/nope --prompt a", dir);
    expect_user_error(rc, out, "--ckpt: cannot open", "nope", NULL, "a missing run");
    /* the tiny model's learned table holds train.seq_len = 16 positions */
    const char *learned[] = {"model.position.type=learned", NULL};
    if (!trained_scratch("cli_generate_learned", dir, sizeof dir, out, learned)) return;
    rc = sh(out, "./generate --ckpt %s/run --prompt '" PROMPT "' --max-new 5", dir);
    expect_user_error(rc, out, "need 17 positions", "model.position.max_positions", NULL,
                      "a prompt past the learned table");
    const char *xpos[] = {"model.position.type=xpos", NULL};
    if (!trained_scratch("cli_generate_xpos", dir, sizeof dir, out, xpos)) return;
    rc = sh(out, "./generate --ckpt %s/run --prompt a --max-new 3", dir);
    expect_user_error(rc, out, "model.position xpos: xpos centres", "--no-cache", NULL,
                      "xpos with the cache");
    rc = sh(out, "./generate --ckpt %s/run --prompt a --max-new 3 --no-cache", dir);
    CHECK(rc == 0, "xpos without the cache: status %d: %s", rc, out);
    const char *ntk[] = {"model.position.type=rotary", "model.position.scaling=dynamic-ntk", NULL};
    if (!trained_scratch("cli_generate_ntk", dir, sizeof dir, out, ntk)) return;
    rc = sh(out, "./generate --ckpt %s/run --prompt a --max-new 3", dir);
    expect_user_error(rc, out, "model.position rotary: rotary with scaling dynamic-ntk", NULL, NULL,
                      "dynamic NTK with the cache");
}

/* ./eval --mode nbce: a row per length with the NBCE settings in its identity (--skip-done),
 * and its error paths. */
TEST(test_cli_eval_nbce) {
    char dir[256], out[OUT_LEN], run[600];
    if (!trained_scratch("cli_eval_nbce", dir, sizeof dir, out, NULL)) return;
    snprintf(run, sizeof run, "./eval --ckpt %s/run", dir);
    int rc =
        sh(out, "%s --mode nbce --lvalid 32,64 --stride 8 --nbce-chunk-len 16 --json %s/e.jsonl",
           run, dir);
    CHECK(rc == 0 && strstr(out, "NBCE windows, stride 8, chunks of 16"), "nbce: %d: %s", rc, out);
    rc = sh(out,
            "%s --mode nbce --lvalid 32,64 --stride 8 --nbce-chunk-len 16 --json %s/e.jsonl "
            "--skip-done",
            run, dir);
    CHECK(rc == 0 && strstr(out, "L_valid 64: already in"), "--skip-done: %s", out);
    rc = sh(out,
            "%s --mode nbce --lvalid 32 --stride 8 --nbce-chunk-len 16 --nbce-beta 0.5 "
            "--json %s/e.jsonl --skip-done",
            run, dir);
    CHECK(rc == 0 && !strstr(out, "already in"), "another beta is another row: %s", out);
    const struct {
        const char *args, *want;
    } cases[] = {
        {"--mode nbce --lvalid 32 --stride 8", "--mode nbce needs --stride S and --nbce-chunk-len"},
        {"--mode nbce --lvalid 32 --stride 32 --nbce-chunk-len 8", "leaves no context"},
        {"--lvalid 32 --nbce-chunk-len 8", "apply to --mode nbce only"},
        {"--mode nbce --lvalid 32 --stride 8 --nbce-chunk-len 8 --nbce-beta -1", "--nbce-beta"},
        {"--mode nbce --lvalid 32 --stride 8 --nbce-chunk-len 8 --per-position x",
         "--per-position"},
        {"--mode bogus", "expected nonoverlapping, sliding or nbce"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc = sh(out, "%s %s", run, cases[i].args);
        expect_user_error(rc, out, cases[i].want, NULL, NULL, cases[i].args);
    }
}
