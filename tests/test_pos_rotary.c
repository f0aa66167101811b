/* test_pos_rotary.c — the rotary family (src/position/rotary.c, xpos.c) by the properties that
 * define it: scores depend only on i - j; every scaling at factor 1 is plain RoPE; PI at
 * factor s is RoPE at position t/s; dynamic NTK is NTK with s = T/orig_len above orig_len and
 * nothing below; YaRN keeps the fastest pair and interpolates the slowest; dims past
 * rotary_dim (and v) are untouched; half pairing is interleaved pairing up to a permutation;
 * the backward is the transpose of the forward; with fewer key heads than query heads (GQA)
 * the hooks rotate each as the formula says. Then the check hook's errors, and ./eval's
 * --rope-* flags. Forward values and gradients against the PyTorch reference are in
 * test_ref.c (fixtures rotary_*, xpos_*), the whole-model gradient check in test_model.c. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../src/config/config.h"
#include "../src/position/position.h"
#include "../src/util/util.h"
#include "test.h"

#define C_ 16 /* model width of the unit tests: 2 heads of D = 8 */
#define H_ 2
#define T_ 24

/* A rotary-family Pos for `position` (the model.position JSON object) of width C, H query heads
 * and Hkv key heads, train.seq_len = seq_len, prepared for segments of length T. */
static Pos make_pos_shape(Config *cfg, const char *position, int seq_len, int T, int C, int H,
                          int Hkv) {
    char text[1024], err[512];
    snprintf(text, sizeof text,
             "{\"model\": {\"n_layers\": 1, \"d_model\": %d, \"n_heads\": %d, \"d_ff\": 8, "
             "\"position\": %s}, \"train\": {\"seq_len\": %d}}",
             C, H, position, seq_len);
    if (config_from_text(cfg, text, "test", err, sizeof err)) {
        fprintf(stderr, "test config %s: %s\n", position, err);
        abort();
    }
    Pos p = {.m = pos_find(cfg->model.position),
             .n_layers = 1,
             .C = C,
             .H = H,
             .Hkv = Hkv,
             .D = C / H,
             .max_T = T_};
    p.m->setup(&p, cfg);
    if (p.m->prepare) p.m->prepare(&p, T);
    return p;
}

/* The unit tests' Pos: width C_, H_ heads, multi-head. */
static Pos make_pos(Config *cfg, const char *position, int seq_len, int T) {
    return make_pos_shape(cfg, position, seq_len, T, C_, H_, H_);
}

static void free_pos(Pos *p, Config *cfg) {
    free(p->state);
    config_free(cfg);
}

/* qkv rows (B = 1, T rows of 3C): row t holds q, k, v; same_rows gives every row the same
 * vectors (so only the position differs). */
static void fill_qkv(float *qkv, int T, int same_rows, unsigned seed) {
    srand(seed);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < 3 * C_; c++)
            qkv[t * 3 * C_ + c] = same_rows && t ? qkv[c] : (float)rand() / RAND_MAX * 2 - 1;
}

static void rotate(const Pos *p, float *qkv, int T) {
    p->m->rotate_forward(p, qkv, qkv + C_, 3 * C_, 0, 1, T, 0);
}

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* q_i . k_j of head h after rotation. */
static double score(const float *qkv, int h, int i, int j) {
    double s = 0;
    for (int d = 0; d < C_ / H_; d++)
        s += (double)qkv[i * 3 * C_ + h * (C_ / H_) + d] * qkv[j * 3 * C_ + C_ + h * (C_ / H_) + d];
    return s;
}

static const char *const SHIFT_CASES[] = {
    "{\"type\": \"rotary\"}",
    "{\"type\": \"rotary\", \"rotary_pairing\": \"half\"}",
    "{\"type\": \"rotary\", \"rotary_dim\": 4}",
    "{\"type\": \"rotary\", \"base\": 50, \"rotary_pairing\": \"half\", \"rotary_dim\": 6}",
    "{\"type\": \"rotary\", \"scaling\": \"pi\", \"factor\": 2.5}",
    "{\"type\": \"rotary\", \"scaling\": \"ntk\", \"factor\": 3}",
    "{\"type\": \"rotary\", \"scaling\": \"dynamic-ntk\", \"orig_len\": 8}",
    "{\"type\": \"rotary\", \"scaling\": \"yarn\", \"factor\": 4, \"orig_len\": 64}",
    "{\"type\": \"xpos\"}",
    "{\"type\": \"xpos\", \"xpos_scale_base\": 8}",
};

TEST(test_pos_rotary_scores_depend_on_distance_only) {
    float qkv[T_ * 3 * C_];
    for (size_t c = 0; c < sizeof SHIFT_CASES / sizeof SHIFT_CASES[0]; c++) {
        Config cfg;
        Pos p = make_pos(&cfg, SHIFT_CASES[c], 16, T_);
        fill_qkv(qkv, T_, 1, 1 + (unsigned)c);
        rotate(&p, qkv, T_);
        double worst = 0;
        for (int h = 0; h < H_; h++)
            for (int i = 0; i < T_; i++)
                for (int j = 0; j <= i; j++)
                    for (int s = 1; i + s < T_; s += 5) {
                        double a = score(qkv, h, i, j), b = score(qkv, h, i + s, j + s);
                        worst = fmax(worst, fabs(a - b) / fmax(1.0, fabs(a)));
                    }
        CHECK(worst < 1e-5, "%s: q_i.k_j vs q_(i+s).k_(j+s) differ by %.3g", SHIFT_CASES[c], worst);
        free_pos(&p, &cfg);
    }
}

TEST(test_pos_rotary_scaling_at_factor_1_is_plain_rope) {
    float plain[T_ * 3 * C_], qkv[T_ * 3 * C_];
    Config c0;
    Pos p0 = make_pos(&c0, "{\"type\": \"rotary\"}", 16, T_);
    fill_qkv(plain, T_, 0, 7);
    rotate(&p0, plain, T_);
    const char *cases[] = {
        "{\"type\": \"rotary\", \"scaling\": \"pi\", \"factor\": 1}",
        "{\"type\": \"rotary\", \"scaling\": \"ntk\", \"factor\": 1}",
        "{\"type\": \"rotary\", \"scaling\": \"yarn\", \"factor\": 1}",
        "{\"type\": \"rotary\", \"scaling\": \"dynamic-ntk\", \"orig_len\": 24}", /* T <= L */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Config cfg;
        Pos p = make_pos(&cfg, cases[c], 16, T_);
        fill_qkv(qkv, T_, 0, 7);
        rotate(&p, qkv, T_);
        double d = max_diff(qkv, plain, sizeof qkv / sizeof qkv[0]);
        CHECK(d == 0, "%s: differs from plain RoPE by %.3g", cases[c], d);
        free_pos(&p, &cfg);
    }
    free_pos(&p0, &c0);
}

/* PI at factor 2: the row at position 2t is rotated as plain RoPE rotates position t. */
TEST(test_pos_rotary_pi_interpolates_positions) {
    float a[T_ * 3 * C_], b[T_ * 3 * C_];
    Config c0, c1;
    Pos plain = make_pos(&c0, "{\"type\": \"rotary\"}", 16, T_);
    Pos pi = make_pos(&c1, "{\"type\": \"rotary\", \"scaling\": \"pi\", \"factor\": 2}", 16, T_);
    fill_qkv(a, T_, 1, 3);
    fill_qkv(b, T_, 1, 3);
    rotate(&plain, a, T_);
    rotate(&pi, b, T_);
    double d = 0;
    for (int t = 0; 2 * t < T_; t++)
        d = fmax(d, max_diff(b + 2 * t * 3 * C_, a + t * 3 * C_, 2 * C_));
    CHECK(d < 1e-6, "pi factor 2 at position 2t vs plain at t: %.3g", d);
    free_pos(&plain, &c0);
    free_pos(&pi, &c1);
}

/* Dynamic NTK at T = 2 orig_len is NTK with factor 2; back at T <= orig_len it is plain again
 * (the tables are rebuilt both ways). */
TEST(test_pos_rotary_dynamic_ntk_follows_segment_length) {
    float a[T_ * 3 * C_], b[T_ * 3 * C_];
    Config c0, c1;
    Pos dyn = make_pos(
        &c0, "{\"type\": \"rotary\", \"scaling\": \"dynamic-ntk\", \"orig_len\": 12}", 16, T_);
    Pos ntk = make_pos(&c1, "{\"type\": \"rotary\", \"scaling\": \"ntk\", \"factor\": 2}", 16, T_);
    fill_qkv(a, T_, 0, 5);
    memcpy(b, a, sizeof a);
    rotate(&dyn, a, T_);
    rotate(&ntk, b, T_);
    CHECK(max_diff(a, b, T_ * 3 * C_) == 0, "dynamic-ntk at T = 2L differs from ntk x2");
    Config c2;
    Pos plain = make_pos(&c2, "{\"type\": \"rotary\"}", 16, T_);
    dyn.m->prepare(&dyn, 12);
    fill_qkv(a, 12, 0, 6);
    memcpy(b, a, 12 * 3 * C_ * sizeof(float));
    dyn.m->rotate_forward(&dyn, a, a + C_, 3 * C_, 0, 1, 12, 0);
    plain.m->rotate_forward(&plain, b, b + C_, 3 * C_, 0, 1, 12, 0);
    CHECK(max_diff(a, b, 12 * 3 * C_) == 0, "dynamic-ntk at T = L differs from plain RoPE");
    free_pos(&dyn, &c0);
    free_pos(&ntk, &c1);
    free_pos(&plain, &c2);
}

/* YaRN with L = 256 and D = 8: pair 0 (theta 1, 40 turns over L > beta) keeps its frequency,
 * pair 3 (0.04 turns < alpha) is interpolated as PI; both carry sqrt(1/t) = 0.1 ln 4 + 1. */
TEST(test_pos_rotary_yarn_blends_pi_and_rope) {
    float y[T_ * 3 * C_], r[T_ * 3 * C_], pi[T_ * 3 * C_];
    Config c0, c1, c2;
    Pos py = make_pos(&c0,
                      "{\"type\": \"rotary\", \"scaling\": \"yarn\", \"factor\": 4, "
                      "\"orig_len\": 256}",
                      16, T_);
    Pos pr = make_pos(&c1, "{\"type\": \"rotary\"}", 16, T_);
    Pos pp = make_pos(&c2, "{\"type\": \"rotary\", \"scaling\": \"pi\", \"factor\": 4}", 16, T_);
    fill_qkv(y, T_, 0, 9);
    memcpy(r, y, sizeof y);
    memcpy(pi, y, sizeof y);
    rotate(&py, y, T_);
    rotate(&pr, r, T_);
    rotate(&pp, pi, T_);
    const double m = 0.1 * log(4.0) + 1.0;
    double d0 = 0, d3 = 0, mid = 0;
    for (int t = 0; t < T_; t++)
        for (int h = 0; h < 2 * H_; h++) { /* q heads and k heads */
            const size_t o = (size_t)t * 3 * C_ + h * 8;
            for (int e = 0; e < 2; e++) {
                d0 = fmax(d0, fabs(y[o + e] - m * r[o + e]));
                d3 = fmax(d3, fabs(y[o + 6 + e] - m * pi[o + 6 + e]));
                mid = fmax(mid, fabs(y[o + 2 + e] - m * r[o + 2 + e]));
            }
        }
    CHECK(d0 < 1e-6, "yarn pair 0 vs mscale * plain: %.3g", d0);
    CHECK(d3 < 1e-6, "yarn pair 3 vs mscale * pi: %.3g", d3);
    CHECK(mid > 1e-3, "yarn pair 1 (inside the ramp) equals plain RoPE");
    free_pos(&py, &c0);
    free_pos(&pr, &c1);
    free_pos(&pp, &c2);
}

TEST(test_pos_rotary_leaves_tail_dims_and_v_alone) {
    float in[T_ * 3 * C_], qkv[T_ * 3 * C_];
    Config cfg;
    Pos p = make_pos(&cfg, "{\"type\": \"rotary\", \"rotary_dim\": 4}", 16, T_);
    fill_qkv(in, T_, 0, 11);
    memcpy(qkv, in, sizeof in);
    rotate(&p, qkv, T_);
    int tail_same = 1, head_moved = 0;
    for (int t = 0; t < T_; t++)
        for (int c = 0; c < 3 * C_; c++) {
            size_t i = (size_t)t * 3 * C_ + c;
            if (c >= 2 * C_ || c % 8 >= 4)
                tail_same &= qkv[i] == in[i];
            else
                head_moved |= t > 0 && qkv[i] != in[i];
        }
    CHECK(tail_same, "rotary_dim 4: a dim >= 4 of q or k, or a dim of v, changed");
    CHECK(head_moved, "rotary_dim 4: the first 4 dims did not rotate");
    free_pos(&p, &cfg);
}

/* half pairing = interleaved pairing after moving dim 2k to k and 2k+1 to k + d_rot/2. */
TEST(test_pos_rotary_half_is_permuted_interleaved) {
    const int dims[] = {8, 4};
    for (int c = 0; c < 2; c++) {
        int dr = dims[c], P = dr / 2;
        char a[128], b[128];
        snprintf(a, sizeof a, "{\"type\": \"rotary\", \"rotary_dim\": %d}", dr);
        snprintf(b, sizeof b,
                 "{\"type\": \"rotary\", \"rotary_dim\": %d, \"rotary_pairing\": \"half\"}", dr);
        Config ca, cb;
        Pos pi = make_pos(&ca, a, 16, T_), ph = make_pos(&cb, b, 16, T_);
        float x[T_ * 3 * C_], y[T_ * 3 * C_];
        fill_qkv(x, T_, 0, 13);
        memcpy(y, x, sizeof x);
        for (int t = 0; t < T_; t++) /* y = permuted x, in every q and k head */
            for (int h = 0; h < 2 * H_; h++)
                for (int k = 0; k < P; k++) {
                    size_t o = (size_t)t * 3 * C_ + h * 8;
                    y[o + k] = x[o + 2 * k];
                    y[o + P + k] = x[o + 2 * k + 1];
                }
        rotate(&pi, x, T_);
        rotate(&ph, y, T_);
        double d = 0;
        for (int t = 0; t < T_; t++)
            for (int h = 0; h < 2 * H_; h++)
                for (int k = 0; k < P; k++) {
                    size_t o = (size_t)t * 3 * C_ + h * 8;
                    d = fmax(d, fabs(y[o + k] - x[o + 2 * k]));
                    d = fmax(d, fabs(y[o + P + k] - x[o + 2 * k + 1]));
                }
        CHECK(d == 0, "rotary_dim %d: half vs permuted interleaved differ by %.3g", dr, d);
        free_pos(&pi, &ca);
        free_pos(&ph, &cb);
    }
}

/* The backward is the transpose: <R x, y> = <x, R^T y> for q and for k. */
TEST(test_pos_rotary_backward_is_transpose) {
    for (size_t c = 0; c < sizeof SHIFT_CASES / sizeof SHIFT_CASES[0]; c++) {
        Config cfg;
        Pos p = make_pos(&cfg, SHIFT_CASES[c], 16, T_);
        float x[T_ * 3 * C_], y[T_ * 3 * C_], rx[T_ * 3 * C_], ry[T_ * 3 * C_];
        fill_qkv(x, T_, 0, 17);
        fill_qkv(y, T_, 0, 19);
        memcpy(rx, x, sizeof x);
        memcpy(ry, y, sizeof y);
        rotate(&p, rx, T_);
        p.m->rotate_backward(&p, ry, ry + C_, 3 * C_, 0, 1, T_, 0);
        double a = 0, b = 0;
        for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) {
            a += (double)rx[i] * y[i];
            b += (double)x[i] * ry[i];
        }
        CHECK(fabs(a - b) < 1e-4 * fmax(1.0, fabs(a)), "%s: <Rx,y> %.9g vs <x,R^T y> %.9g",
              SHIFT_CASES[c], a, b);
        free_pos(&p, &cfg);
    }
}

/* One head x (width D) at position t, rotated by the definitions in double: RoFormer eq. 34
 * with theta_k = base^(-2k/d_rot), pairs (2k, 2k+1) or (k, k + d_rot/2); xPos (sec. 3.2)
 * also scales pair k by zeta_k^(sign (t - T/2) / 512), sign +1 for q and -1 for k. */
static void rotate_ref(double *y, const float *x, int t, int D, int d_rot, int half, int xpos,
                       int sign, int T) {
    for (int d = 0; d < D; d++) y[d] = x[d];
    for (int k = 0; k < d_rot / 2; k++) {
        const int i0 = half ? k : 2 * k, i1 = half ? k + d_rot / 2 : 2 * k + 1;
        double a = t * pow(10000.0, -2.0 * k / d_rot), z = 1.0;
        if (xpos) z = pow((2.0 * k / D + 0.4) / 1.4, sign * (double)(t - T / 2) / 512.0);
        y[i0] = z * (x[i0] * cos(a) - x[i1] * sin(a));
        y[i1] = z * (x[i0] * sin(a) + x[i1] * cos(a));
    }
}

/* Grouped-query rows: q holds H = 4 heads and k only Hkv, so a row is (H + 2 Hkv) D floats.
 * The hooks rotate the 4 query heads and the Hkv key heads of every row (B = 2) as the
 * formula says, leave v untouched, and their backward is still the transpose. */
TEST(test_pos_rotary_grouped_kv_heads) {
    enum { H = 4, D = 8, C = H * D, B = 2 };
    const struct {
        const char *position;
        int d_rot, half, xpos;
    } cases[] = {
        {"{\"type\": \"rotary\"}", D, 0, 0},
        {"{\"type\": \"rotary\", \"rotary_dim\": 4, \"rotary_pairing\": \"half\"}", 4, 1, 0},
        {"{\"type\": \"xpos\"}", D, 0, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int Hkv = 1; Hkv <= 2; Hkv++) {
            Config cfg;
            Pos p = make_pos_shape(&cfg, cases[c].position, 16, T_, C, H, Hkv);
            const size_t ld = (size_t)(H + 2 * Hkv) * D, n = B * T_ * ld;
            float *x = xcalloc(n, 4), *rx = xcalloc(n, 4), *y = xcalloc(n, 4), *ry = xcalloc(n, 4);
            for (size_t i = 0; i < n; i++) x[i] = (float)sin(1.0 + 0.37 * i), y[i] = cosf(0.5f * i);
            memcpy(rx, x, n * 4), memcpy(ry, y, n * 4);
            p.m->rotate_forward(&p, rx, rx + C, ld, 0, B, T_, 0);
            p.m->rotate_backward(&p, ry, ry + C, ld, 0, B, T_, 0);
            double worst = 0, v_moved = 0, a = 0, b = 0;
            for (int r = 0; r < B * T_; r++) {
                for (int h = 0; h < H + Hkv; h++) { /* q heads, then k heads */
                    double ref[D];
                    const size_t o = (size_t)r * ld + (size_t)h * D;
                    rotate_ref(ref, x + o, r % T_, D, cases[c].d_rot, cases[c].half, cases[c].xpos,
                               h < H ? 1 : -1, T_);
                    for (int d = 0; d < D; d++)
                        worst = fmax(worst, fabs(rx[o + d] - ref[d]) / fmax(1.0, fabs(ref[d])));
                }
                for (size_t e = (size_t)(H + Hkv) * D; e < ld; e++)
                    v_moved = fmax(v_moved, fabs(rx[r * ld + e] - x[r * ld + e]) +
                                                fabs(ry[r * ld + e] - y[r * ld + e]));
            }
            for (size_t i = 0; i < n; i++) a += (double)rx[i] * y[i], b += (double)x[i] * ry[i];
            CHECK(worst < 1e-5, "%s, Hkv %d: rotated q, k vs the formula: max error %.3g",
                  cases[c].position, Hkv, worst);
            CHECK(v_moved == 0, "%s, Hkv %d: v changed by %.3g", cases[c].position, Hkv, v_moved);
            CHECK(fabs(a - b) < 1e-4 * fmax(1.0, fabs(a)),
                  "%s, Hkv %d: <Rx,y> %.9g vs <x,R^T y> %.9g", cases[c].position, Hkv, a, b);
            free(x), free(rx), free(y), free(ry);
            free_pos(&p, &cfg);
        }
}

TEST(test_pos_rotary_check_errors) {
    const struct {
        int C, H;
        const char *position, *want;
    } cases[] = {
        {16, 2, "{\"type\": \"rotary\", \"rotary_dim\": 3}", "model.position.rotary_dim"},
        {16, 2, "{\"type\": \"rotary\", \"rotary_dim\": 10}", "model.position.rotary_dim"},
        {18, 2, "{\"type\": \"rotary\"}", "model.position.rotary_dim"},
        {16, 2, "{\"type\": \"rotary\", \"base\": 1}", "model.position.base"},
        {16, 2, "{\"type\": \"rotary\", \"factor\": 2}", "model.position.factor"},
        {16, 2, "{\"type\": \"rotary\", \"scaling\": \"dynamic-ntk\", \"factor\": 2}",
         "model.position.factor"},
        {16, 2, "{\"type\": \"rotary\", \"scaling\": \"pi\", \"factor\": 0.5}", "factor"},
        {16, 2, "{\"type\": \"rotary\", \"scaling\": \"rope\"}", "model.position.scaling"},
        {16, 2, "{\"type\": \"rotary\", \"scaling\": \"yarn\", \"yarn_beta\": 1}", "yarn_beta"},
        {18, 2, "{\"type\": \"xpos\"}", "xpos"},
        {16, 2, "{\"type\": \"xpos\", \"xpos_gamma\": 0}", "model.position.xpos_gamma"},
        /* at the default train.seq_len 256: 128 |ln(0.4/1.4)| / 64 = 2.506 */
        {16, 2, "{\"type\": \"xpos\", \"xpos_scale_base\": 2.5}", "at least 2.506"},
        {16, 2, "{\"type\": \"xpos\", \"xpos_scale_base\": 1e-6}",
         "model.position.xpos_scale_base"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512], err[512] = "";
        snprintf(text, sizeof text,
                 "{\"model\": {\"d_model\": %d, \"n_heads\": %d, \"position\": %s}}", cases[i].C,
                 cases[i].H, cases[i].position);
        Config cfg;
        int rc = config_from_text(&cfg, text, "test", err, sizeof err);
        CHECK(rc == -1, "%s: accepted", cases[i].position);
        CHECK(strstr(err, cases[i].want) && !strchr(err, '\n'),
              "%s: message lacks '%s' or is not one line: %s", cases[i].position, cases[i].want,
              err);
        if (rc == 0) config_free(&cfg);
    }
}

/* ---- ./eval --rope-* (tiny runs on tests/fixtures/cli, as test_cli.c) ---- */

/* Trains <dir>/run in a fresh scratch directory (dir, n bytes): cli_tiny_config's model (1 layer,
 * d_model 16) with `position`, 6 steps of 2 x 16 tokens. */
static int train_tiny(const char *name, char *dir, size_t n, const char *position, char *out) {
    char extra[256];
    cli_scratch(name, dir, n);
    snprintf(extra, sizeof extra, "\"position\": %s", position);
    cli_tiny_config(dir, extra);
    int rc = sh(out, "./train --config %s/cfg.json --out %s/run --set train.steps=6", dir, dir);
    CHECK(rc == 0, "training %s failed (status %d): %s", position, rc, out);
    return rc == 0;
}

/* The first --json row of ./eval ... --json <dir>/<name> (parsed; NULL if absent). */
static cJSON *json_row(const char *dir, const char *name) {
    char path[600];
    size_t len;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = read_file(path, &len);
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    free(text);
    return o;
}

static double num(const cJSON *o, const char *key) {
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

TEST(test_pos_rotary_eval_flags) {
    char dir[256], out[OUT_LEN];
    if (train_tiny("pos_rotary_alibi", dir, sizeof dir, "{\"type\": \"alibi\"}", out)) {
        int rc = sh(out, "./eval --ckpt %s/run --rope-scaling pi 2>&1", dir);
        CHECK(rc == 2 && !strncmp(out, "error: --rope-scaling applies to rotary models only", 51) &&
                  strstr(out, "'alibi'") && strchr(out, '\n') == out + strlen(out) - 1,
              "--rope-scaling on alibi: status %d: %s", rc, out);
        rc = sh(out, "./eval --ckpt %s/run --rope-factor 2 2>&1", dir);
        CHECK(rc == 2 && strstr(out, "--rope-factor applies to rotary models only"),
              "--rope-factor on alibi: status %d: %s", rc, out);
    }

    if (!train_tiny("pos_rotary_rope", dir, sizeof dir, "{\"type\": \"rotary\"}", out)) return;
    int rc = sh(out, "./eval --ckpt %s/run --lvalid 32 --json %s/plain.jsonl", dir, dir);
    CHECK(rc == 0, "eval: status %d: %s", rc, out);
    rc = sh(out,
            "./eval --ckpt %s/run --lvalid 32 --rope-scaling pi --rope-factor 1 --json %s/pi.jsonl",
            dir, dir);
    CHECK(rc == 0, "eval pi x1: status %d: %s", rc, out);
    rc = sh(
        out,
        "./eval --ckpt %s/run --lvalid 32 --rope-scaling yarn --rope-factor 2 --json %s/yarn.jsonl",
        dir, dir);
    CHECK(rc == 0, "eval yarn x2: status %d: %s", rc, out);
    cJSON *plain = json_row(dir, "plain.jsonl"), *pi = json_row(dir, "pi.jsonl"),
          *yarn = json_row(dir, "yarn.jsonl");
    CHECK(num(plain, "loss") == num(pi, "loss"), "pi at factor 1 changes the loss: %.9g vs %.9g",
          num(plain, "loss"), num(pi, "loss"));
    CHECK(num(plain, "loss") != num(yarn, "loss"), "yarn x2 does not change the loss");
    const char *sc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(yarn, "rope_scaling"));
    CHECK(sc && !strcmp(sc, "yarn") && num(yarn, "rope_factor") == 2 &&
              num(yarn, "rope_orig_len") == 16,
          "the --json row does not record yarn, factor 2, orig_len 16");
    sc = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(plain, "rope_scaling"));
    CHECK(sc && !strcmp(sc, "none") && num(plain, "rope_factor") == 1,
          "the --json row of a plain run does not record scaling none, factor 1");
    cJSON_Delete(plain);
    cJSON_Delete(pi);
    cJSON_Delete(yarn);
    rc = sh(out, "./eval --ckpt %s/run --rope-scaling rope 2>&1", dir);
    CHECK(rc == 2 && !strncmp(out, "error: --rope-scaling", 21) && strstr(out, "none|pi|ntk"),
          "--rope-scaling rope: status %d: %s", rc, out);
    rc = sh(out, "./eval --ckpt %s/run --rope-scaling dynamic-ntk --lvalid 32", dir);
    CHECK(rc == 0, "dynamic-ntk: status %d: %s", rc, out);
}

/* xPos at the documented minimum of xpos_scale_base trains (finite losses at train.seq_len 16),
 * and evaluation past the longest length that scale_base allows is one error line instead of
 * NaN perplexities: the q and k scales reach e^((T/2) |ln zeta_0| / scale_base), at most e^64,
 * so at scale_base 1 (gamma 0.4) the longest length is 103. */
TEST(test_pos_rotary_xpos_scale_base_limits) {
    const PosMethod *xpos = pos_find("xpos");
    double min = 0;
    for (int i = 0; i < xpos->n_keys; i++)
        if (!strcmp(xpos->keys[i].name, "xpos_scale_base")) min = xpos->keys[i].min;
    const int longest = 2 * (int)(64 * min / -log(0.4 / 1.4)) + 1;
    char position[128], dir[256], run[300], out[OUT_LEN];
    snprintf(position, sizeof position, "{\"type\": \"xpos\", \"xpos_scale_base\": %g}", min);
    if (!train_tiny("pos_rotary_xpos_min", dir, sizeof dir, position, out)) return;
    snprintf(run, sizeof run, "%s/run", dir);
    double loss = log_value(run, 6, "loss");
    CHECK(isfinite(loss) && loss > 0, "xpos_scale_base %g: loss at step 6 is %g", min, loss);
    int rc = sh(out, "./eval --ckpt %s --lvalid 16,%d", run, longest);
    CHECK(rc == 0 && !strstr(out, "nan"), "eval at L_valid %d: status %d: %s", longest, rc, out);
    char want[64];
    snprintf(want, sizeof want, "stops at length %d", longest);
    rc = sh(out, "./eval --ckpt %s --lvalid 16,%d", run, longest + 1);
    expect_user_error(rc, out, "xpos_scale_base", want, NULL, "eval past xpos' longest length");
}
