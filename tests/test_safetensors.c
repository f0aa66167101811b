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

/* The sample written to path, read back as raw bytes (NULL after a failed CHECK). */
static unsigned char *sample_bytes(const char *path, size_t *len) {
    if (!write_sample(path)) return NULL;
    unsigned char *raw = (unsigned char *)read_file(path, len);
    CHECK(raw != NULL, "cannot read %s back", path);
    return raw;
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
    size_t len;
    unsigned char *raw = sample_bytes(path, &len);
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
    size_t len;
    unsigned char *raw = sample_bytes(path, &len);
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
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], ",
         "header byte 37 (file offset 45): expected a string key, got the end of the text"},
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
         "number -2 in 'a.shape[0]' is not a plain unsigned integer"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 8]}}",
         "number 1.5 in 'a.shape[0]'"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]}}",
         "number 2.0 in 'a.shape[0]'"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8e0]}}",
         "number 8e0 in 'a.data_offsets[1]'"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}",
         "tensor 'a': shape must be a list of at most 4 non-negative integers, got [\"2\"]"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [9007199254740993], \"data_offsets\": [0, 8]}}",
         "tensor 'a': shape must be"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,2], \"data_offsets\": [0, 8]}}",
         "tensor 'a': shape must be"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296],"
         " \"data_offsets\": [0, 8]}}",
         "tensor 'a': data_offsets [0, 8) hold 8 bytes"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
         "overlap between tensors 'a' [0, 8) and 'b' [4, 12)"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
         "header byte 62 (file offset 70): duplicate key 'a'"},
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
              "[0,8]},\"e\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[8,8]}} ",
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
    CHECK(strstr(err, "cannot write: the header would be refused: duplicate key 'tok_emb.weight'"),
          "message: %s", err);
    CHECK(!file_exists(path), "no file after a failed write");
    const char *keys[2] = {"k", "k"}, *values[2] = {"1", "2"};
    CHECK(st_write(path, tensors, 1, keys, values, 2, err, sizeof err) == -1, "duplicate meta");
    CHECK(strstr(err, "duplicate key 'k' in '__metadata__'") != NULL, "message: %s", err);
    CHECK(!file_exists(path), "no file after a failed write");
    const char *bad_utf8[1] = {"caf\xe9"};
    CHECK(st_write(path, tensors, 1, bad_utf8, values, 1, err, sizeof err) == -1, "bad UTF-8");
    CHECK(strstr(err, "invalid UTF-8") != NULL, "message: %s", err);
    snprintf(path, sizeof path, "%s/no/such/dir/x.safetensors", dir);
    CHECK(st_write(path, tensors, 1, NULL, NULL, 0, err, sizeof err) == -1, "unwritable path");
    CHECK(!strncmp(err, path, strlen(path)) && strstr(err, "cannot write"), "message: %s", err);
}

/* ---- the exact layout: the tensors tile the data section (the Hugging Face reader's rule) ---- */

/* A header for tensors a and b of 2 floats each at the given offsets. */
static void write_two(const char *path, const char *a, const char *b, size_t data_len) {
    char header[512];
    float data[16] = {0};
    snprintf(header, sizeof header,
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": %s},"
             " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": %s}}",
             a, b);
    write_raw(path, header, data, data_len);
}

TEST(test_safetensors_rejects_trailing_bytes) {
    char path[600];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_trailing"));
    write_two(path, "[0, 8]", "[8, 16]", 17);
    expect_open_error(path, "1 trailing bytes: the last tensor 'b' ends at 16 of 17 data bytes");
    write_raw(path, "{}", "abcd", 4);
    expect_open_error(path, "4 data bytes but no tensors");
    write_raw(path, "{\"__metadata__\": {\"k\": \"v\"}}", "abcd", 4);
    expect_open_error(path, "4 data bytes but no tensors");
}

TEST(test_safetensors_rejects_gap_between_tensors) {
    char path[600];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_gap"));
    write_two(path, "[0, 8]", "[12, 20]", 20);
    expect_open_error(path, "unused bytes between tensors 'a' [0, 8) and 'b' [12, 20)");
    write_two(path, "[4, 12]", "[12, 20]", 20);
    expect_open_error(path, "the first tensor 'a' [4, 12) does not start at 0");
}

/* Overlaps, including an empty tensor inside another, and the order of the header (which
 * need not be the order of the data). */
TEST(test_safetensors_rejects_overlap) {
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_overlap"));
    write_two(path, "[0, 8]", "[4, 12]", 12);
    expect_open_error(path, "overlap between tensors 'a' [0, 8) and 'b' [4, 12)");
    write_two(path, "[0, 8]", "[0, 8]", 16);
    expect_open_error(path, "overlap between tensors");
    write_raw(path,
              "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
              " \"e\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}",
              "12345678", 8);
    expect_open_error(path, "overlap between tensors 'a' [0, 8) and 'e' [4, 4)");
    write_two(path, "[8, 16]", "[0, 8]", 16);
    StFile *f = st_open(path, err, sizeof err);
    CHECK(f != NULL, "b before a in the data: %s", err);
    st_close(f);
}

/* A length field one short: the header loses its last byte (a padding space, so the JSON is
 * still whole) and every tensor starts a byte early. Accepted before, it evaluated to nan. */
TEST(test_safetensors_rejects_header_length_one_short) {
    char path[600], bad[620];
    const char *dir = test_tmpdir("st_length_one_short");
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    size_t len;
    unsigned char *raw = sample_bytes(path, &len);
    if (!raw) return;
    uint64_t n = get_u64le(raw);
    CHECK(raw[8 + n - 1] == ' ', "the sample's header is padded, as the test assumes");
    static const struct {
        int64_t delta;
        const char *want;
    } cases[] = {
        {-1, "1 trailing bytes: the last tensor 'after_odd'"},
        {+1, "unexpected byte 0x00 after the JSON value"}, /* the first data byte */
        {-8, "header byte"},
        {+8, "header byte"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint64_t m = n + (uint64_t)cases[i].delta;
        for (int b = 0; b < 8; b++) raw[b] = (unsigned char)(m >> (8 * b));
        CHECK(write_file_atomic(bad, raw, len) == 0, "write %s", bad);
        expect_open_error(bad, cases[i].want);
    }
    free(raw);
}

TEST(test_safetensors_rejects_header_length_below_2) {
    char path[600];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_length_below_2"));
    unsigned char zero[8] = {0}, one[9] = {1, 0, 0, 0, 0, 0, 0, 0, '{'};
    CHECK(write_file_atomic(path, zero, sizeof zero) == 0, "write %s", path);
    expect_open_error(path, "header length 0 is below 2");
    CHECK(write_file_atomic(path, one, sizeof one) == 0, "write %s", path);
    expect_open_error(path, "header length 1 is below 2");
    unsigned char empty[10] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(write_file_atomic(path, empty, sizeof empty) == 0, "write %s", path);
    char err[512];
    StFile *f = st_open(path, err, sizeof err);
    CHECK(f && st_count(f) == 0, "{} is a valid file without tensors: %s", err);
    st_close(f);
}

/* ---- the header's JSON, through json_check ---- */

TEST(test_safetensors_rejects_duplicate_key_in_entry) {
    char path[600];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_dup_in_entry"));
    float data[2] = {0};
    write_raw(path,
              "{\"a\": {\"dtype\": \"F64\", \"dtype\": \"F32\", \"shape\": [2], "
              "\"data_offsets\": [0, 8]}}",
              data, sizeof data);
    expect_open_error(path, "duplicate key 'dtype' in 'a'");
    write_raw(path,
              "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8],"
              " \"shap\\u0065\": [1]}}",
              data, sizeof data);
    expect_open_error(path, "duplicate key 'shape' in 'a'");
}

TEST(test_safetensors_rejects_duplicate_metadata_key) {
    char path[600];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_dup_meta"));
    write_raw(path, "{\"__metadata__\": {\"step\": \"1\", \"step\": \"2\"}}", NULL, 0);
    expect_open_error(path, "duplicate key 'step' in '__metadata__'");
    write_raw(path, "{\"__metadata__\": {}, \"__metadata__\": {}}", NULL, 0);
    expect_open_error(path, "duplicate key '__metadata__'");
}

/* cJSON ends a string at an escaped NUL: "F32\u0000" would read as F32. */
TEST(test_safetensors_rejects_dtype_with_nul) {
    char path[600];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_dtype_nul"));
    float data[2] = {0};
    write_raw(path,
              "{\"a\": {\"dtype\": \"F32\\u0000\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
              data, sizeof data);
    expect_open_error(path, "\\u0000 is not allowed");
    write_raw(path, "{\"a\": {\"dtype\": \"f32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", data,
              sizeof data);
    expect_open_error(path, "unsupported dtype 'f32'");
    write_raw(path, "{\"a\": {\"dtype\": \"F32 \", \"shape\": [2], \"data_offsets\": [0, 8]}}",
              data, sizeof data);
    expect_open_error(path, "unsupported dtype 'F32 '");
}

/* Two names that differ only after a NUL would be one name to every C string function. */
TEST(test_safetensors_rejects_nul_in_name) {
    char path[600];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_name_nul"));
    float data[4] = {0};
    write_raw(path,
              "{\"w\\u0000a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
              " \"w\\u0000b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}",
              data, sizeof data);
    expect_open_error(path, "header byte 3 (file offset 11): \\u0000 is not allowed");
}

TEST(test_safetensors_rejects_invalid_utf8_and_bom) {
    char path[600];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_utf8"));
    float data[2] = {0};
    write_raw(path, "{\"w\xff\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
              data, sizeof data);
    expect_open_error(path, "header byte 3 (file offset 11): invalid UTF-8");
    write_raw(path, "\xef\xbb\xbf{}", NULL, 0);
    expect_open_error(path, "byte-order mark");
    write_raw(path, "{\"__metadata__\": {\"k\": \"\xed\xa0\x80\"}}", NULL, 0);
    expect_open_error(path, "surrogate");
}

/* st_get is a binary search over an index sorted once, and the duplicate check is a hash set:
 * 60,000 tensors load in milliseconds (the quadratic check took over 30 s). */
TEST(test_safetensors_60000_entries_linear) {
    enum { N = 60000 };
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/x.safetensors", test_tmpdir("st_60000"));
    StTensor *t = calloc(N, sizeof *t);
    char(*names)[24] = calloc(N, sizeof *names);
    int32_t *values = calloc(N, sizeof *values);
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "layers.%d.w", (i * 7919) % N); /* not sorted */
        values[i] = i;
        t[i] = (StTensor){names[i], ST_I32, 1, {1}, &values[i]};
    }
    CHECK(st_write(path, t, N, NULL, NULL, 0, err, sizeof err) == 0, "st_write: %s", err);
    StFile *f = st_open(path, err, sizeof err);
    CHECK(f && st_count(f) == N, "st_open: %s", err);
    for (int i = 0; f && i < N; i += 997) {
        const StTensor *x = st_get(f, names[i]);
        CHECK(x && *(const int32_t *)x->data == i, "st_get(%s)", names[i]);
    }
    CHECK(!f || !st_get(f, "layers.60000.w"), "an absent name");
    st_close(f);
    free(t);
    free(names);
    free(values);
}

/* The in-memory entry point owns its buffer, on success and on failure (ASan's leak check). */
TEST(test_safetensors_open_buffer) {
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/model.safetensors", test_tmpdir("st_open_buffer"));
    size_t len;
    unsigned char *raw = sample_bytes(path, &len);
    if (!raw) return;
    StFile *f = st_open_buffer(raw, len, "mem", err, sizeof err);
    CHECK(f && st_count(f) == N_TENSORS, "st_open_buffer: %s", err);
    CHECK(f && st_get(f, "ids") && ((const int32_t *)st_get(f, "ids")->data)[2] == 2147483647,
          "ids from memory");
    st_close(f);
    raw = (unsigned char *)read_file(path, &len);
    f = st_open_buffer(raw, len - 1, "mem", err, sizeof err);
    CHECK(!f && !strncmp(err, "mem: truncated", 14), "a cut buffer: %s", err);
}
