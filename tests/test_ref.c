/* test_ref.c — forward values, loss and gradients of tiny models with fixed weights against
 * the independent PyTorch reference (tests/ref/reference.py, float64; fixtures committed):
 * every file of tests/ref/fixtures is compared, and every registered position method must have
 * a fixture.
 * Tolerance: our float32 forward/backward against float64 — max |ours - ref| must stay below
 * 2e-5 of the tensor's largest magnitude (float32 epsilon is 1.2e-7; two layers of sums over
 * at most 40 terms keep accumulated rounding well under that). */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../src/config/config.h"
#include "../src/io/safetensors.h"
#include "../src/model.h"
#include "../src/util/util.h"
#include "test.h"

#define REF_DIR "tests/ref/fixtures"

static void compare(const char *ckase, const char *what, const float *ours, const StTensor *ref) {
    if (!ref) {
        CHECK(0, "%s: fixture lacks %s", ckase, what);
        return;
    }
    const float *r = ref->data;
    size_t n = st_numel(ref);
    double maxabs = 0, maxdiff = 0;
    for (size_t i = 0; i < n; i++) {
        maxabs = fmax(maxabs, fabs(r[i]));
        maxdiff = fmax(maxdiff, fabs((double)ours[i] - r[i]));
    }
    CHECK(maxdiff <= 2e-5 * maxabs + 1e-7, "%s: %s max diff %.3g (max |ref| %.3g)", ckase, what,
          maxdiff, maxabs);
}

/* Compares one model fixture; returns the index of its position method in the registry, or -1
 * if the file could not be compared at all. */
static int check_case(const char *file) {
    char path[512], err[512];
    snprintf(path, sizeof path, REF_DIR "/%s", file);
    StFile *f = st_open(path, err, sizeof err);
    CHECK(f != NULL, "%s", err);
    if (!f) return -1;
    const char *config = st_meta(f, "config"), *vocab = st_meta(f, "vocab_size");
    const StTensor *in = st_get(f, "inputs"), *tg = st_get(f, "targets");
    Config cfg;
    int rc = -1;
    if (!config || !vocab || !in || !tg || in->ndim != 2)
        CHECK(0, "%s: lacks the config, vocab_size, inputs or targets", file);
    else if ((rc = config_from_text(&cfg, config, path, err, sizeof err)) != 0)
        CHECK(0, "%s", err);
    if (rc) {
        st_close(f);
        return -1;
    }
    int B = (int)in->shape[0], T = (int)in->shape[1], V = atoi(vocab);
    Model m;
    model_create(&m, &cfg, V, B, T, 1);
    for (int k = 0; k < m.spec.pt.n; k++) {
        const StTensor *t = st_get(f, m.spec.pt.t[k].name);
        CHECK(t && st_numel(t) == m.spec.pt.t[k].numel, "%s: tensor %s", file, m.spec.pt.t[k].name);
        if (t)
            memcpy(m.weights.params + m.spec.pt.t[k].offset, t->data,
                   m.spec.pt.t[k].numel * sizeof(float));
    }
    const Pass p = {.B = B, .T = T, .train = 1};
    model_forward(&m, &p, in->data);
    const float *final = model_hidden(&m, &p);
    size_t N = (size_t)B * T, NC = N * m.spec.C;
    compare(file, "embedding", m.state.a.res, st_get(f, "expect.embed"));
    int n_fixture = 0;
    for (int k = 0; k < st_count(f); k++)
        n_fixture += strncmp(st_at(f, k)->name, "expect.", 7) != 0;
    CHECK(n_fixture == m.spec.pt.n + 2, "%s: %d tensors besides inputs/targets, the model has %d",
          file, n_fixture - 2, m.spec.pt.n);
    for (int l = 0; l < m.spec.L; l++) {
        char name[64];
        snprintf(name, sizeof name, "expect.hidden.%d", l);
        compare(file, name, m.state.a.res + (size_t)(l + 1) * NC, st_get(f, name));
    }
    compare(file, "final hidden", final, st_get(f, "expect.final"));
    float *logits = xcalloc(N * V, sizeof(float));
    if (m.spec.ad.K) { /* adaptive: the normalized log-probabilities of every word */
        Adaptive w = adaptive_view(&m.spec, m.weights.params);
        float *scratch = xcalloc(adaptive_scratch_floats(&w), sizeof(float));
        adaptive_logprobs(NULL, logits, final, N, &w, scratch);
        free(scratch);
        compare(file, "log-probabilities", logits, st_get(f, "expect.logprobs"));
    } else {
        matmul_forward(NULL, logits, final, m.weights.params + m.spec.pt.t[m.spec.tok_emb].offset,
                       NULL, N, m.spec.C, V);
        compare(file, "logits", logits, st_get(f, "expect.logits"));
    }
    double loss = model_backward(&m, &p, in->data, tg->data, 1.0f / (float)N) / (double)N;
    CHECK_CLOSE(loss, *(const float *)st_get(f, "expect.loss")->data, 2e-6, file);
    for (int k = 0; k < m.spec.pt.n; k++) {
        char name[96];
        snprintf(name, sizeof name, "expect.grad.%s", m.spec.pt.t[k].name);
        compare(file, name, m.weights.grads + m.spec.pt.t[k].offset, st_get(f, name));
    }
    free(logits);
    model_free(&m);
    int method = -1;
    for (int k = 0; k < pos_count(); k++)
        if (!strcmp(pos_at(k)->name, cfg.model.position)) method = k;
    config_free(&cfg);
    st_close(f);
    return method;
}

/* fixtures/alibi_slopes.json, {"n": [slopes of n heads], ...}, against alibi_slopes(). */
static void check_slopes(const char *file) {
    extern void alibi_slopes(int n, float *m);
    char path[512];
    snprintf(path, sizeof path, REF_DIR "/%s", file);
    size_t len;
    char *text = read_file(path, &len);
    cJSON *json = text ? cJSON_Parse(text) : NULL;
    CHECK(cJSON_IsObject(json) && cJSON_GetArraySize(json) > 0, "%s: not a JSON object", path);
    const cJSON *list;
    cJSON_ArrayForEach(list, json) {
        int n = atoi(list->string);
        float m[64];
        CHECK(n >= 1 && n <= 64 && cJSON_GetArraySize(list) == n, "%s: \"%s\" is not %d slopes",
              path, list->string, n);
        if (n < 1 || n > 64) continue;
        alibi_slopes(n, m);
        for (int h = 0; h < n && h < cJSON_GetArraySize(list); h++) {
            char what[320];
            snprintf(what, sizeof what, "%s n=%d h=%d", file, n, h);
            CHECK_CLOSE(m[h], cJSON_GetArrayItem(list, h)->valuedouble, 1e-7, what);
        }
    }
    cJSON_Delete(json);
    free(text);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Every file in fixtures/ is compared (a file this test cannot compare is a failure, not
 * ignored), and every registered position method has at least one model fixture. */
TEST(test_ref_pytorch_fixtures) {
    DIR *d = opendir(REF_DIR);
    CHECK(d != NULL, "cannot open %s", REF_DIR);
    if (!d) return;
    int cases = 0, covered[64] = {0};
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (ends_with(e->d_name, ".safetensors")) {
            int k = check_case(e->d_name);
            if (k >= 0 && k < 64) covered[k]++;
            cases++;
        } else if (!strcmp(e->d_name, "alibi_slopes.json"))
            check_slopes(e->d_name);
        else if (!strcmp(e->d_name, "generate.json"))
            continue; /* greedy generation: test_generation.c compares it */
        else
            CHECK(0, "%s/%s: not a fixture this test knows how to compare", REF_DIR, e->d_name);
    }
    closedir(d);
    CHECK(cases > 0, "no model fixture in %s", REF_DIR);
    for (int k = 0; k < pos_count() && k < 64; k++)
        CHECK(covered[k],
              "position method %s has no fixture in %s (tests/ref/README.md says how "
              "to generate one)",
              pos_at(k)->name, REF_DIR);
}

TEST(test_ref_alibi_slopes) {
    /* the official get_slopes rule, values from ../shared/reference/alibi-paper-facts.md §4.1 */
    extern void alibi_slopes(int n, float *m);
    float m[16];
    const struct {
        int n;
        int exps[16]; /* -2 log2 of each slope */
    } cases[] = {
        {1, {16}},
        {4, {4, 8, 12, 16}},
        {6, {4, 8, 12, 16, 2, 6}},
        {8, {2, 4, 6, 8, 10, 12, 14, 16}},
        {12, {2, 4, 6, 8, 10, 12, 14, 16, 1, 3, 5, 7}},
        {16, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        alibi_slopes(cases[c].n, m);
        for (int h = 0; h < cases[c].n; h++) {
            char what[64];
            snprintf(what, sizeof what, "alibi slope n=%d h=%d", cases[c].n, h);
            CHECK_CLOSE(m[h], pow(2.0, -cases[c].exps[h] / 2.0), 1e-7, what);
        }
    }
}
