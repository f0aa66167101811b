/* test_safetensors.c — the safetensors reader and writer: a write/read round trip, the byte
 * layout other readers rely on, and one test per way a file can be truncated or corrupted
 * (each must be rejected with a one-line message naming the file). */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/io/safetensors.h"
#include "../src/util/util.h"

static uint64_t get_u64le(const unsigned char *p) {
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) x |= (uint64_t)p[i] << (8 * i);
    return x;
}

/* A file from a hand-written header (no padding) and data bytes. */
static void write_raw(const char *path, const char *header, const void *data, size_t data_len) {
    size_t h = strlen(header);
    unsigned char *buf = calloc(8 + h + data_len + 1, 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    if (data_len) memcpy(buf + 8 + h, data, data_len);
    CHECK(write_file_atomic(path, buf, 8 + h + data_len) == 0, "write %s", path);
    free(buf);
}

/* st_open must fail with a one-line message that starts with the path and contains want. */
static void expect_open_error(const char *path, const char *want) {
    char err[512] = "";
    StFile *f = st_open(path, err, sizeof err);
    CHECK(f == NULL, "%s opened although it should fail with '%s'", path, want);
    st_close(f);
    CHECK(!strncmp(err, path, strlen(path)), "message '%s' does not start with the path", err);
    CHECK(strstr(err, want) != NULL, "message '%s' lacks '%s'", err, want);
    CHECK(!strchr(err, '\n'), "message '%s' has a line break", err);
}

/* A small checkpoint covering every dtype, a scalar, an empty tensor and an F64 that follows
 * an odd number of F32s (so its bytes are misaligned in the file). */
static float w[6] = {1, -2, 3.5f, 1e-30f, -0.0f, 7};
static double scalar = 3.141592653589793;
static int32_t ids[4] = {0, -1, 2147483647, -2147483647 - 1};
static int64_t big[4] = {1, -2, INT64_MAX, INT64_MIN};
static float odd[3] = {0.5f, 0.25f, 0.125f};
static double after_odd[2] = {1e300, -1e-300};
static const StTensor tensors[] = {
    {"tok_emb.weight", ST_F32, 2, {2, 3}, w},
    {"scale", ST_F64, 0, {0}, &scalar},
    {"ids", ST_I32, 1, {4}, ids},
    {"steps", ST_I64, 2, {2, 2}, big},
    {"empty", ST_F32, 2, {0, 5}, NULL},
    {"odd", ST_F32, 1, {3}, odd},
    {"after_odd", ST_F64, 1, {2}, after_odd},
};
#define N_TENSORS (int)(sizeof tensors / sizeof tensors[0])
static const char *meta_keys[] = {"format", "config"};
static const char *meta_values[] = {"pt", "{\"model\": {\"n_layers\": 2}}\nsecond line"};

static int write_sample(const char *path) {
    char err[512];
    int rc = st_write(path, tensors, N_TENSORS, meta_keys, meta_values, 2, err, sizeof err);
    CHECK(rc == 0, "st_write: %s", err);
    return rc == 0;
}

TEST(test_safetensors_round_trip) {
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/model.safetensors", test_tmpdir("test_safetensors_rt"));
    if (!write_sample(path)) return;
    StFile *f = st_open(path, err, sizeof err);
    CHECK(f != NULL, "st_open: %s", err);
    if (!f) return;
    CHECK(st_count(f) == N_TENSORS, "count %d", st_count(f));
    for (int i = 0; i < N_TENSORS && i < st_count(f); i++) {
        const StTensor *a = &tensors[i], *b = st_at(f, i);
        CHECK(!strcmp(a->name, b->name), "tensor %d is '%s', expected '%s'", i, b->name, a->name);
        CHECK(a->dtype == b->dtype && a->ndim == b->ndim, "%s: dtype or ndim", a->name);
        for (int d = 0; d < a->ndim; d++)
            CHECK(a->shape[d] == b->shape[d], "%s: shape[%d]", a->name, d);
        CHECK(st_numel(a) == st_numel(b), "%s: numel", a->name);
        size_t bytes = st_numel(a) * st_dtype_size(a->dtype);
        CHECK(!bytes || !memcmp(a->data, b->data, bytes), "%s: data differ", a->name);
        CHECK((uintptr_t)b->data % st_dtype_size(b->dtype) == 0, "%s: data misaligned", a->name);
        CHECK(st_get(f, a->name) == b, "st_get(%s)", a->name);
    }
    CHECK(st_numel(st_get(f, "scale")) == 1, "a scalar has one element");
    CHECK(*(const double *)st_get(f, "after_odd")->data == 1e300, "aligned copy holds the value");
    CHECK(st_get(f, "missing") == NULL, "st_get of an absent name");
    CHECK(st_meta(f, "format") && !strcmp(st_meta(f, "format"), "pt"), "metadata format");
    CHECK(st_meta(f, "config") && !strcmp(st_meta(f, "config"), meta_values[1]), "metadata config");
    CHECK(st_meta(f, "absent") == NULL, "absent metadata");
    st_close(f);

    /* No metadata: the header has no __metadata__ entry at all. */
    CHECK(st_write(path, tensors, 1, NULL, NULL, 0, err, sizeof err) == 0, "st_write: %s", err);
    size_t len;
    char *raw = read_file(path, &len);
    CHECK(raw && !strstr(raw + 8, "__metadata__"), "n_meta == 0 writes no __metadata__");
    free(raw);
}

/* What other readers rely on: u64 length, JSON header padded with spaces to 8 bytes, then the
 * tensors back to back in the order given. */
TEST(test_safetensors_layout) {
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", test_tmpdir("test_safetensors_layout"));
    if (!write_sample(path)) return;
    size_t len;
    unsigned char *raw = (unsigned char *)read_file(path, &len);
    if (!raw) return;
    uint64_t n = get_u64le(raw);
    CHECK((8 + n) % 8 == 0, "data starts at %llu, not 8-aligned", (unsigned long long)(8 + n));
    size_t data_bytes = 0;
    for (int i = 0; i < N_TENSORS; i++)
        data_bytes += st_numel(&tensors[i]) * st_dtype_size(tensors[i].dtype);
    CHECK(len == 8 + n + data_bytes, "file is %zu bytes, expected %zu", len,
          (size_t)(8 + n + data_bytes));
    CHECK(raw[8] == '{', "header starts with '{'");
    size_t end = 8 + n;
    while (end > 8 && raw[end - 1] == ' ') end--;
    CHECK(raw[end - 1] == '}' && 8 + n - end < 8, "header is JSON padded with < 8 spaces");
    CHECK(strstr((char *)raw + 8, "\"data_offsets\":[0,24]") != NULL, "first tensor at [0,24]");
    CHECK(!memcmp(raw + 8 + n, w, sizeof w), "first tensor's bytes follow the header");
    CHECK(!memcmp(raw + len - sizeof after_odd, after_odd, sizeof after_odd), "last tensor last");
    free(raw);
}

TEST(test_safetensors_truncated) {
    char path[600], cut[620];
    const char *dir = test_tmpdir("test_safetensors_truncated");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    if (!write_sample(path)) return;
    size_t len;
    unsigned char *raw = (unsigned char *)read_file(path, &len);
    if (!raw) return;
    size_t n = (size_t)get_u64le(raw);
    static const struct {
        int where; /* 0: inside the length, 1: inside the header, 2: inside the data */
        size_t keep;
        const char *want;
    } cuts[] = {
        {0, 0, "too short"},
        {0, 5, "too short"},
        {0, 7, "too short"},
        {1, 0, "exceeds file size"},
        {1, 1, "exceeds file size"},
        {2, 0, "truncated: tensor 'tok_emb.weight' needs bytes [0, 24)"},
        {2, 30, "truncated: tensor"},
        {2, 99, "truncated: tensor 'after_odd'"},
    };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        size_t keep = cuts[i].where == 0   ? cuts[i].keep
                      : cuts[i].where == 1 ? 8 + n / 2 + cuts[i].keep
                                           : 8 + n + cuts[i].keep;
        CHECK(keep < len, "cut %zu is beyond the file", keep);
        CHECK(write_file_atomic(cut, raw, keep) == 0, "write %s", cut);
        expect_open_error(cut, cuts[i].want);
    }
    free(raw);
    snprintf(cut, sizeof cut, "%s/absent.safetensors", dir);
    expect_open_error(cut, "cannot read");
}

TEST(test_safetensors_corrupted) {
    char path[600];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("test_safetensors_corrupted"));
    float data[8] = {0};
    static const struct {
        const char *header, *want;
    } cases[] = {
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], ", "header is not valid JSON"},
        {"[1, 2]", "header is not a JSON object"},
        {"{\"a\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
         "tensor 'a': unsupported dtype 'BF16'"},
        {"{\"a\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", "tensor 'a': dtype must be"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
         "tensor 'a': data_offsets [0, 4) hold 4 bytes but its shape and dtype F32 need 8"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 0]}}",
         "tensor 'a': data_offsets must be [begin, end]"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}",
         "tensor 'a': data_offsets must be"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]}}",
         "tensor 'a': shape must be"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 8]}}",
         "tensor 'a': shape must be"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,2], \"data_offsets\": [0, 8]}}",
         "tensor 'a': shape must be"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296],"
         " \"data_offsets\": [0, 8]}}",
         "tensor 'a': data_offsets [0, 8) hold 8 bytes"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
         "tensors 'a' [0, 8) and 'b' [4, 12) overlap"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
         "duplicate entry 'a'"},
        {"{\"__metadata__\": {\"k\": 5}}", "__metadata__ 'k' must be a string, got 5"},
        {"{\"__metadata__\": [\"k\"]}", "__metadata__ must be an object"},
        {"{\"a\": 5}", "tensor 'a': entry must be an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_raw(path, cases[i].header, data, sizeof data);
        expect_open_error(path, cases[i].want);
    }

    /* A header length no file could hold. */
    unsigned char huge[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}'};
    CHECK(write_file_atomic(path, huge, sizeof huge) == 0, "write %s", path);
    expect_open_error(path, "exceeds the 100 MB limit");
}

/* What a foreign writer may legitimately do: no header padding (so F32 data starts
 * misaligned), "__metadata__": null, tensors listed out of data order, empty tensors. */
TEST(test_safetensors_foreign_layout) {
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("test_safetensors_foreign"));
    float data[3] = {1.5f, -2.5f, 4};
    write_raw(path,
              "{\"__metadata__\":null,\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[8,12]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":"
              "[0,8]},\"e\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[4,4]}} ",
              data, sizeof data);
    StFile *f = st_open(path, err, sizeof err);
    CHECK(f != NULL, "st_open: %s", err);
    if (!f) return;
    const StTensor *a = st_get(f, "a"), *b = st_get(f, "b");
    CHECK(a && b && st_count(f) == 3, "tensors a, b, e");
    if (a && b) {
        CHECK((uintptr_t)a->data % 4 == 0 && (uintptr_t)b->data % 4 == 0, "aligned copies");
        const float *x = a->data, *y = b->data;
        CHECK(x[0] == 1.5f && x[1] == -2.5f && y[0] == 4, "values %g %g %g", x[0], x[1], y[0]);
    }
    CHECK(st_meta(f, "format") == NULL, "null metadata has no keys");
    st_close(f);
}

TEST(test_safetensors_write_errors) {
    char path[600], err[512];
    const char *dir = test_tmpdir("test_safetensors_write_errors");
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    StTensor two[2] = {tensors[0], tensors[0]};
    CHECK(st_write(path, two, 2, NULL, NULL, 0, err, sizeof err) == -1, "duplicate names");
    CHECK(strstr(err, "duplicate tensor 'tok_emb.weight'") != NULL, "message: %s", err);
    CHECK(!file_exists(path), "no file after a failed write");
    const char *keys[2] = {"k", "k"}, *values[2] = {"1", "2"};
    CHECK(st_write(path, tensors, 1, keys, values, 2, err, sizeof err) == -1, "duplicate meta");
    CHECK(strstr(err, "duplicate metadata key 'k'") != NULL, "message: %s", err);
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", dir);
    CHECK(st_write(path, tensors, 1, NULL, NULL, 0, err, sizeof err) == -1, "unwritable path");
    CHECK(!strncmp(err, path, strlen(path)) && strstr(err, "cannot write"), "message: %s", err);
}
