/* test_pos_reference.c — every registered position method's forward hooks against its own slow
 * reference (PosMethod.bias_reference, .embed_reference: the paper's formula evaluated per
 * pair or per position, no table). The gradient checks pass a formula that is wrong in forward
 * and backward alike; this test does not. The bias is compared tile by tile, with tiles that
 * start away from 0 and cross the 64-row blocks, and the embedding over segments that start at
 * pos0 > 0. A method whose hooks have no reference is named in the output, not skipped
 * silently; the display label and colour of every method are checked here too. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../src/config/config.h"
#include "../src/model.h"
#include "../src/util/util.h"
#include "gradcheck.h"
#include "test.h"

/* T = 150: past T5's default max_distance 128, so its shared last bucket is read, and past
 * FIRE's threshold |L_mult| * 512 in a layer whose L_mult the randomization puts below 0.29. */
enum { T = 150, H = 3, V = 11, B = 2 };
#define TOL 2e-5 /* relative to max(1, |reference|): float tables against double formulas */

static int ref_model(Model *m, Config *cfg, const char *position) {
    char text[512], err[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 2, \"d_model\": %d, \"n_heads\": %d, \"d_ff\": 16, "
             "\"dropout\": 0, \"position\": %s}, \"train\": {\"seq_len\": %d}}",
             4 * H, H, position, T);
    if (config_from_text(cfg, text, "test", err, sizeof err)) {
        CHECK(0, "%s: %s", position, err);
        return 0;
    }
    model_create(m, cfg, V, B, T, 0);
    model_init(m, 5);
    const ParamTable *pt = &m->spec.pt;
    for (int k = 0; k < pt->n; k++) /* away from the init, so every term of a formula shows */
        if (pt->t[k].init.kind == INIT_POS)
            fill_random(m->weights.params + pt->t[k].offset, pt->t[k].numel, 0.3f, 11 + k);
    Pos *p = &m->state.pos;
    if (p->m->prepare) p->m->prepare(p, T);
    return 1;
}

/* Keeps the worst relative error; a NaN is kept too (fmax would drop it). */
static void worse(double *worst, double got, double want) {
    double err = fabs(got - want) / fmax(1.0, fabs(want));
    if (!(err <= *worst)) *worst = err;
}

/* The worst error of bias_forward over tiles with uneven edges, every layer and head. */
static double bias_error(const Model *m) {
    static const int cuts[] = {0, 7, 64, 65, 100, 131, T};
    enum { N_CUTS = sizeof cuts / sizeof cuts[0] };
    static float tile[T * T];
    const Pos *p = &m->state.pos;
    double worst = 0.0;
    for (int l = 0; l < m->spec.L; l++)
        for (int h = 0; h < H; h++)
            for (int a = 0; a + 1 < N_CUTS; a++)
                for (int b = 0; b + 1 < N_CUTS && cuts[b] < cuts[a + 1]; b++) {
                    const int i0 = cuts[a], ni = cuts[a + 1] - i0;
                    const int j0 = cuts[b], nj = cuts[b + 1] - j0;
                    memset(tile, 0, sizeof(float) * ni * nj);
                    p->m->bias_forward(p, tile, (size_t)nj, l, h, i0, ni, j0, nj);
                    for (int r = 0; r < ni; r++)
                        for (int c = 0; c < nj && j0 + c <= i0 + r; c++)
                            worse(&worst, tile[r * nj + c],
                                  p->m->bias_reference(p, l, h, i0 + r, j0 + c));
                }
    return worst;
}

/* The worst error of embed_forward over segments from pos0 = 0 and from positions past 0. */
static double embed_error(const Model *m) {
    static const int seg[][2] = {{0, T}, {37, 20}, {T - 20, 20}}; /* pos0, length */
    const Pos *p = &m->state.pos;
    const size_t C = (size_t)m->spec.C;
    float *x = xcalloc((size_t)B * T * C, sizeof *x), *want = xcalloc(C, sizeof *want);
    double worst = 0.0;
    for (size_t s = 0; s < sizeof seg / sizeof seg[0]; s++) {
        const int pos0 = seg[s][0], n = seg[s][1];
        memset(x, 0, sizeof *x * B * T * C);
        p->m->embed_forward(p, x, B, n, pos0);
        for (int t = 0; t < n; t++) {
            p->m->embed_reference(p, pos0 + t, want);
            for (int b = 0; b < B; b++)
                for (size_t k = 0; k < C; k++)
                    worse(&worst, x[((size_t)b * n + t) * C + k], want[k]);
        }
    }
    free(x), free(want);
    return worst;
}

/* Why the method's hooks are not all compared with a reference, or NULL if they are. */
static const char *unreferenced(const PosMethod *pm) {
    if (pm->rotate_forward) return "rotate has no reference hook";
    if (pm->bias_forward && !pm->bias_reference) return "bias_forward without bias_reference";
    if (pm->embed_forward && !pm->embed_reference) return "embed_forward without embed_reference";
    if (!pm->bias_forward && !pm->embed_forward) return "no hooks";
    return NULL;
}

/* Checks one position object. With lists (n > 0), appends the method's name to checked, or to
 * unchecked with the reason. */
static void check_position(const char *position, char *checked, char *unchecked, size_t n) {
    Model m;
    Config cfg;
    if (!ref_model(&m, &cfg, position)) return;
    const PosMethod *pm = m.state.pos.m;
    CHECK(!pm->bias_reference || pm->bias_forward, "%s: bias_reference without bias_forward",
          pm->name);
    CHECK(!pm->embed_reference || pm->embed_forward, "%s: embed_reference without embed_forward",
          pm->name);
    if (pm->bias_forward && pm->bias_reference) {
        double err = bias_error(&m);
        CHECK(err <= TOL, "%s: bias_forward differs from bias_reference by %g (relative; tol %g)",
              position, err, TOL);
    }
    if (pm->embed_forward && pm->embed_reference) {
        double err = embed_error(&m);
        CHECK(err <= TOL, "%s: embed_forward differs from embed_reference by %g (relative; tol %g)",
              position, err, TOL);
    }
    if (n) {
        const char *why = unreferenced(pm);
        char *list = why ? unchecked : checked;
        size_t used = strlen(list);
        snprintf(list + used, n - used, "%s%s%s%s%s", used ? ", " : "", pm->name, why ? " (" : "",
                 why ? why : "", why ? ")" : "");
    }
    model_free(&m);
    config_free(&cfg);
}

TEST(test_pos_reference_hooks_follow_the_formulas) {
    /* every method at its defaults (3 heads: ALiBi's slopes for a head count that is not a power
     * of two), then settings that take other paths */
    static const char *special[] = {
        "{\"type\": \"alibi\", \"trainable_slopes\": true, \"alibi_heads\": 2}",
        "{\"type\": \"alibi\", \"slopes\": [0.5, 3, 0.125]}",
        "{\"type\": \"t5\", \"per_layer\": true, \"num_buckets\": 8, \"max_distance\": 40}",
        "{\"type\": \"fire\", \"init_L\": 20, \"mlp_width\": 5}", /* thr <= 6: rows per pair */
        "{\"type\": \"sinusoidal\", \"offset\": 0}",
    };
    char checked[1024] = "", unchecked[1024] = "";
    for (int k = 0; k < pos_count(); k++) {
        char position[128];
        snprintf(position, sizeof position, "{\"type\": \"%s\"}", pos_at(k)->name);
        check_position(position, checked, unchecked, sizeof checked);
    }
    for (size_t k = 0; k < sizeof special / sizeof special[0]; k++)
        check_position(special[k], NULL, NULL, 0);
    printf("  checked against their references: %s\n  without a reference: %s\n",
           *checked ? checked : "(none)", *unchecked ? unchecked : "(none)");
}

static int is_hex_color(const char *s) {
    if (!s || strlen(s) != 7 || s[0] != '#') return 0;
    for (int i = 1; i < 7; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i])) return 0;
    return 1;
}

/* Tables and figures tell the methods apart by these: each is given, and none is shared. */
TEST(test_pos_reference_labels_and_colors) {
    for (int i = 0; i < pos_count(); i++) {
        const PosMethod *a = pos_at(i);
        CHECK(a->label && *a->label, "%s: no label", a->name);
        CHECK(is_hex_color(a->color), "%s: color '%s' is not #rrggbb", a->name,
              a->color ? a->color : "(NULL)");
        CHECK(a->summary && *a->summary, "%s: no summary", a->name);
        for (int j = 0; j < i && a->label && a->color; j++) {
            const PosMethod *b = pos_at(j);
            CHECK(!b->label || strcmp(a->label, b->label), "%s and %s share the label '%s'",
                  b->name, a->name, a->label);
            CHECK(!b->color || strcasecmp(a->color, b->color), "%s and %s share the color %s",
                  b->name, a->name, a->color);
        }
    }
}
