/* fuzz_common.h — what the seeded fuzzers of tests/test_fuzz.c and the libFuzzer targets of
 * fuzz/ share: the checkpoint-like seed, and what a clean outcome is (a refusal is a non-empty
 * one-line message; an acceptance is a result that is valid in every way we can check from
 * outside). Inline functions, so each program that includes this has its own copy and nothing
 * else to link. */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/config/config.h"
#include "../src/io/json_check.h"
#include "../src/io/safetensors.h"

static inline int one_line(const char *err) {
    return err[0] && !strchr(err, '\n') && !strchr(err, '\r');
}

/* Where st_sound puts the bytes it reads, so the reads stay in the program. */
static volatile uint64_t fuzz_sink;

static inline int within(const void *p, size_t bytes, const unsigned char *lo,
                         const unsigned char *hi) {
    uintptr_t a = (uintptr_t)p;
    return a >= (uintptr_t)lo && a + bytes <= (uintptr_t)hi;
}

/* A file st_open_buffer loaded from buf[0, len) is sound: every tensor's bytes lie inside the
 * data section (or in an aligned copy) and can be read, are aligned, are found by st_get, and
 * all of them together are exactly the data section. 1, or 0 with why. */
static inline int st_sound(StFile *f, const unsigned char *buf, size_t len, char *why, size_t n) {
    uint64_t h = 0;
    for (int i = 0; i < 8; i++) h |= (uint64_t)buf[i] << (8 * i);
    size_t covered = 0;
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_at(f, i);
        size_t bytes = st_numel(t) * st_dtype_size(t->dtype);
        const unsigned char *d = t->data;
        int placed = within(d, bytes, buf + 8 + h, buf + len) || !within(d, 1, buf, buf + len);
        if (!d || !placed || (uintptr_t)d % st_dtype_size(t->dtype) || st_get(f, t->name) != t ||
            t->ndim < 0 || t->ndim > 4) {
            snprintf(why, n, "tensor %d '%s' is unsound", i, t->name);
            return 0;
        }
        for (size_t b = 0; b < bytes; b++) fuzz_sink += d[b]; /* ASan checks every byte */
        covered += bytes;
    }
    if (covered == len - 8 - h) return 1;
    snprintf(why, n, "tensors cover %zu of %zu data bytes", covered, (size_t)(len - 8 - h));
    return 0;
}

/* A config that parsed is valid: its printed form passes json_check, parses again and prints
 * the same, and the cross-key rules hold. 1, or 0 with why. */
static inline int config_sound(const Config *c, char *why, size_t n) {
    char *text = config_to_json(c), err[1024] = "";
    size_t pos;
    Config again;
    int ok = !json_check(text, strlen(text), 0, &pos, err, sizeof err) &&
             !config_from_text(&again, text, "printed", err, sizeof err);
    if (ok) {
        char *text2 = config_to_json(&again);
        ok = !strcmp(text, text2);
        if (!ok) snprintf(err, sizeof err, "printing again changed the text");
        free(text2);
        config_free(&again);
    }
    ok = ok && c->model.d_model % c->model.n_heads == 0 && c->model.n_layers >= 1;
    if (!ok) snprintf(why, n, "accepted, but not valid: %s", err);
    free(text);
    return ok;
}

/* The checkpoint-like seed: every dtype, a scalar, an empty tensor, F64s after an odd number
 * of F32s (misaligned in the file), and the metadata keys of a real checkpoint. */
static inline int fuzz_write_seed(const char *path, char *err, size_t n) {
    static const float w[9] = {1, -2, 3.5f, 0, 1e-30f, 7, 8, 9, 10};
    static const double d[3] = {3.25, -1e300, 0.5};
    static const int32_t i32[5] = {0, -1, 2147483647, 5, 6};
    static const int64_t i64[2] = {INT64_MAX, -3};
    const StTensor t[] = {
        {"tok_emb.weight", ST_F32, 2, {3, 3}, w},
        {"layers.0.ln1.weight", ST_F32, 1, {3}, w},
        {"scale", ST_F64, 0, {0}, d},
        {"ids", ST_I32, 1, {5}, i32},
        {"empty", ST_F32, 2, {0, 4}, NULL},
        {"steps", ST_I64, 1, {2}, i64},
        {"after_odd", ST_F64, 2, {1, 2}, d + 1},
    };
    const char *keys[] = {"format", "config", "vocab_size", "step"};
    const char *values[] = {"trainshort-ckpt-1", "{\"model\": {\"n_layers\": 1}}", "33", "12"};
    return st_write(path, t, 7, keys, values, 4, err, n);
}

#endif
