/* safetensors.c — the safetensors format (see safetensors.h).
 *
 * Layout: u64 little-endian N | N bytes of JSON header | tensor bytes. Like the Hugging Face
 * writer we pad the header with spaces so the tensor bytes start 8-byte aligned, and we lay
 * the tensors out back to back in the order given. Offsets are written as plain integers:
 * readers parse them as u64 and would reject cJSON's "1e+15" style.
 *
 * A file is read into memory with one allocation. A tensor whose bytes are not aligned to its
 * dtype (a foreign file with an unpadded header, or an F64 after an odd number of F32s) is
 * copied to an aligned buffer, so every StTensor.data can be cast to its element type. */
#include "safetensors.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../util/util.h"

/* The Hugging Face reader's limit; a larger "length" is a corrupted file, not a header. */
#define MAX_HEADER 100000000ull
/* Offsets and dimensions must be exact in cJSON's double. */
#define MAX_EXACT 9007199254740992.0

static const char *dtype_names[] = {"F32", "F64", "I32", "I64"};

size_t st_dtype_size(StDtype d) {
    return d == ST_F32 || d == ST_I32 ? 4 : 8;
}

size_t st_numel(const StTensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- writing ---- */

static void put_u64le(unsigned char *p, uint64_t x) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(x >> (8 * i));
}

/* {"dtype": ..., "shape": [...], "data_offsets": [begin, end]} */
static cJSON *tensor_entry(const StTensor *t, size_t begin, size_t end) {
    char shape[128], offsets[64];
    int used = snprintf(shape, sizeof shape, "[");
    for (int i = 0; i < t->ndim; i++)
        used += snprintf(shape + used, sizeof shape - (size_t)used, "%s%" PRId64, i ? "," : "",
                         t->shape[i]);
    snprintf(shape + used, sizeof shape - (size_t)used, "]");
    snprintf(offsets, sizeof offsets, "[%zu,%zu]", begin, end);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "dtype", dtype_names[t->dtype]);
    cJSON_AddRawToObject(e, "shape", shape);
    cJSON_AddRawToObject(e, "data_offsets", offsets);
    return e;
}

/* What a reader would reject: JSON keeps duplicate keys, but no reader can use them. */
static int check_names(const char *path, const StTensor *tensors, int n,
                       const char *const *meta_keys, int n_meta, char *err, size_t errlen) {
    for (int i = 0; i < n; i++) {
        const char *name = tensors[i].name;
        if (!*name || !strcmp(name, "__metadata__"))
            return fail(err, errlen, "%s: invalid tensor name '%s'", path, name);
        for (int j = 0; j < i; j++)
            if (!strcmp(tensors[j].name, name))
                return fail(err, errlen, "%s: duplicate tensor '%s'", path, name);
    }
    for (int i = 0; i < n_meta; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(meta_keys[j], meta_keys[i]))
                return fail(err, errlen, "%s: duplicate metadata key '%s'", path, meta_keys[i]);
    return 0;
}

int st_write(const char *path, const StTensor *tensors, int n, const char *const *meta_keys,
             const char *const *meta_values, int n_meta, char *err, size_t errlen) {
    if (check_names(path, tensors, n, meta_keys, n_meta, err, errlen)) return -1;
    cJSON *header = cJSON_CreateObject();
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(header, "__metadata__");
        for (int i = 0; i < n_meta; i++)
            cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i]);
    }
    size_t data_bytes = 0;
    for (int i = 0; i < n; i++) {
        const StTensor *t = &tensors[i];
        assert(t->ndim >= 0 && t->ndim <= 4 && (unsigned)t->dtype <= ST_I64);
        size_t bytes = st_numel(t) * st_dtype_size(t->dtype);
        cJSON_AddItemToObject(header, t->name, tensor_entry(t, data_bytes, data_bytes + bytes));
        data_bytes += bytes;
    }
    char *text = cJSON_PrintUnformatted(header);
    cJSON_Delete(header);
    if (!text) sys_error("out of memory writing %s", path);

    size_t text_len = strlen(text), header_len = (text_len + 7) / 8 * 8;
    size_t total = 8 + header_len + data_bytes;
    unsigned char *buf = xcalloc(total, 1);
    put_u64le(buf, header_len);
    memcpy(buf + 8, text, text_len);
    memset(buf + 8 + text_len, ' ', header_len - text_len);
    cJSON_free(text);
    unsigned char *p = buf + 8 + header_len;
    for (int i = 0; i < n; i++) {
        size_t bytes = st_numel(&tensors[i]) * st_dtype_size(tensors[i].dtype);
        if (bytes) memcpy(p, tensors[i].data, bytes);
        p += bytes;
    }
    int rc = write_file_atomic(path, buf, total);
    free(buf);
    if (rc) return fail(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    return 0;
}

/* ---- reading ---- */

struct StFile {
    unsigned char *buf; /* the whole file */
    cJSON *header;      /* owns the tensor names and metadata strings */
    StTensor *t;
    int n;
    unsigned char *copies; /* aligned copies of misaligned tensors */
};

void st_close(StFile *f) {
    if (!f) return;
    free(f->buf);
    cJSON_Delete(f->header);
    free(f->t);
    free(f->copies);
    free(f);
}

int st_count(const StFile *f) {
    return f->n;
}

const StTensor *st_at(const StFile *f, int i) {
    assert(i >= 0 && i < f->n);
    return &f->t[i];
}

const StTensor *st_get(const StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f->header, "__metadata__");
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, key));
}

/* A non-negative integer that a double holds exactly. */
static int is_count(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= MAX_EXACT &&
           v->valuedouble == (double)(int64_t)v->valuedouble;
}

static void describe(const cJSON *v, char *out, size_t n) {
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    if (s && strlen(s) > 40) memcpy(s + 37, "...", 4);
    snprintf(out, n, "%s", s ? s : "nothing");
    cJSON_free(s);
}

static int parse_dtype(const char *path, const cJSON *e, StTensor *t, char *err, size_t errlen) {
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(d))
        return fail(err, errlen, "%s: tensor '%s': dtype must be a string", path, e->string);
    for (int k = 0; k <= ST_I64; k++)
        if (!strcmp(d->valuestring, dtype_names[k])) {
            t->dtype = (StDtype)k;
            return 0;
        }
    return fail(err, errlen,
                "%s: tensor '%s': unsupported dtype '%s' (expected F32, F64, I32 or I64)", path,
                e->string, d->valuestring);
}

static int parse_shape(const char *path, const cJSON *e, StTensor *t, char *err, size_t errlen) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "shape");
    int ok = cJSON_IsArray(s) && cJSON_GetArraySize(s) <= 4;
    t->ndim = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, s) {
        if (!ok || !is_count(x)) {
            ok = 0;
            break;
        }
        t->shape[t->ndim++] = (int64_t)x->valuedouble;
    }
    if (ok) return 0;
    char got[64];
    describe(s, got, sizeof got);
    return fail(err, errlen,
                "%s: tensor '%s': shape must be a list of at most 4 non-negative integers, got %s",
                path, e->string, got);
}

/* The tensor's byte range [*begin, *end) inside the data, checked against its size. */
static int parse_offsets(const char *path, const cJSON *e, const StTensor *t, size_t data_bytes,
                         size_t *begin, size_t *end, char *err, size_t errlen) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    const cJSON *b = cJSON_GetArrayItem(o, 0), *z = cJSON_GetArrayItem(o, 1);
    if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 2 || !is_count(b) || !is_count(z) ||
        b->valuedouble > z->valuedouble) {
        char got[64];
        describe(o, got, sizeof got);
        return fail(err, errlen,
                    "%s: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end, "
                    "got %s",
                    path, e->string, got);
    }
    *begin = (size_t)b->valuedouble;
    *end = (size_t)z->valuedouble;
    if (*end > data_bytes)
        return fail(err, errlen,
                    "%s: truncated: tensor '%s' needs bytes [%zu, %zu) but the file has %zu data "
                    "bytes",
                    path, e->string, *begin, *end, data_bytes);
    /* Each dimension is below 2^53 but the product may still overflow. */
    size_t bytes = st_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++)
        if (__builtin_mul_overflow(bytes, (size_t)t->shape[i], &bytes)) bytes = SIZE_MAX;
    if (bytes != *end - *begin)
        return fail(err, errlen,
                    "%s: tensor '%s': data_offsets [%zu, %zu) hold %zu bytes but its shape and "
                    "dtype %s need %zu",
                    path, e->string, *begin, *end, *end - *begin, dtype_names[t->dtype], bytes);
    return 0;
}

static int check_metadata(const char *path, const cJSON *meta, char *err, size_t errlen) {
    if (cJSON_IsNull(meta)) return 0; /* Python's writer may store "__metadata__": null */
    if (!cJSON_IsObject(meta))
        return fail(err, errlen, "%s: __metadata__ must be an object of strings", path);
    for (const cJSON *m = meta->child; m; m = m->next)
        if (!cJSON_IsString(m)) {
            char got[64];
            describe(m, got, sizeof got);
            return fail(err, errlen, "%s: __metadata__ '%s' must be a string, got %s", path,
                        m->string, got);
        }
    return 0;
}

typedef struct {
    size_t begin, end;
    int i;
} Range;

static int by_begin(const void *a, const void *b) {
    const Range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Two tensors sharing bytes means a corrupted header; empty tensors share nothing. */
static int check_overlap(const char *path, const StFile *f, Range *r, char *err, size_t errlen) {
    qsort(r, (size_t)f->n, sizeof *r, by_begin);
    int prev = -1;
    for (int i = 0; i < f->n; i++) {
        if (r[i].begin == r[i].end) continue;
        if (prev >= 0 && r[i].begin < r[prev].end)
            return fail(err, errlen, "%s: tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap",
                        path, f->t[r[prev].i].name, r[prev].begin, r[prev].end, f->t[r[i].i].name,
                        r[i].begin, r[i].end);
        prev = i;
    }
    return 0;
}

/* Points each tensor at its bytes, copying the misaligned ones (see the top of the file). */
static void place_data(StFile *f, const Range *r, const unsigned char *data) {
    size_t copy_bytes = 0;
    for (int i = 0; i < f->n; i++)
        if ((uintptr_t)(data + r[i].begin) % st_dtype_size(f->t[r[i].i].dtype))
            copy_bytes += (r[i].end - r[i].begin + 7) / 8 * 8;
    if (copy_bytes) f->copies = xcalloc(copy_bytes, 1);
    unsigned char *p = f->copies;
    for (int i = 0; i < f->n; i++) {
        StTensor *t = &f->t[r[i].i];
        const unsigned char *src = data + r[i].begin;
        if ((uintptr_t)src % st_dtype_size(t->dtype)) {
            memcpy(p, src, r[i].end - r[i].begin);
            t->data = p;
            p += (r[i].end - r[i].begin + 7) / 8 * 8;
        } else {
            t->data = src;
        }
    }
}

static int parse_header(const char *path, StFile *f, const char *text, size_t data_bytes,
                        const unsigned char *data, char *err, size_t errlen) {
    const char *end = text;
    f->header = cJSON_ParseWithOpts(text, &end, 1);
    if (!f->header)
        return fail(err, errlen, "%s: header is not valid JSON (near byte %zu of the header)", path,
                    (size_t)(end - text));
    if (!cJSON_IsObject(f->header))
        return fail(err, errlen, "%s: header is not a JSON object", path);
    int n = cJSON_GetArraySize(f->header);
    f->t = xcalloc((size_t)n + 1, sizeof *f->t);
    Range *r = xcalloc((size_t)n + 1, sizeof *r);
    int rc = 0;
    for (const cJSON *e = f->header->child; e && !rc; e = e->next) {
        for (const cJSON *d = f->header->child; d != e && !rc; d = d->next)
            if (!strcmp(d->string, e->string))
                rc = fail(err, errlen, "%s: duplicate entry '%s' in the header", path, e->string);
        if (rc) break;
        if (!strcmp(e->string, "__metadata__")) {
            rc = check_metadata(path, e, err, errlen);
            continue;
        }
        StTensor *t = &f->t[f->n];
        t->name = e->string;
        if (!cJSON_IsObject(e))
            rc = fail(err, errlen, "%s: tensor '%s': entry must be an object", path, e->string);
        else
            rc = parse_dtype(path, e, t, err, errlen) || parse_shape(path, e, t, err, errlen) ||
                 parse_offsets(path, e, t, data_bytes, &r[f->n].begin, &r[f->n].end, err, errlen);
        r[f->n].i = f->n;
        f->n++;
    }
    if (!rc) rc = check_overlap(path, f, r, err, errlen);
    if (!rc) place_data(f, r, data);
    free(r);
    return rc ? -1 : 0;
}

StFile *st_open(const char *path, char *err, size_t errlen) {
    size_t len;
    unsigned char *buf = (unsigned char *)read_file(path, &len);
    if (!buf) {
        fail(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    StFile *f = xcalloc(1, sizeof *f);
    f->buf = buf;
    uint64_t header_len = 0;
    for (int i = 0; i < 8 && len >= 8; i++) header_len |= (uint64_t)buf[i] << (8 * i);
    int rc;
    if (len < 8)
        rc = fail(err, errlen, "%s: file of %zu bytes is too short for a safetensors file", path,
                  len);
    else if (header_len > MAX_HEADER)
        rc = fail(err, errlen, "%s: header length %" PRIu64 " exceeds the 100 MB limit", path,
                  header_len);
    else if (header_len > len - 8)
        rc = fail(err, errlen, "%s: header length %" PRIu64 " exceeds file size %zu", path,
                  header_len, len);
    else {
        /* A NUL-terminated copy of the header, since cJSON reads to the terminator. */
        char *text = xcalloc(header_len + 1, 1);
        memcpy(text, buf + 8, header_len);
        rc = parse_header(path, f, text, len - 8 - header_len, buf + 8 + header_len, err, errlen);
        free(text);
    }
    if (rc) {
        st_close(f);
        return NULL;
    }
    return f;
}
