/* safetensors.c — the safetensors format (see safetensors.h).
 *
 * Layout: u64 little-endian N | N bytes of JSON header | tensor bytes. Like the Hugging Face
 * writer we pad the header with spaces so the tensor bytes start 8-byte aligned, and we lay
 * the tensors out back to back in the order given. Offsets are written as plain integers:
 * readers parse them as u64 and would reject cJSON's "1e+15" style.
 *
 * Reading applies the rules of the Hugging Face reader (safetensors/src/tensor.rs,
 * read_metadata and Metadata::validate) and is stricter where they leave a file two meanings:
 * 2 <= N <= min(file size - 8, 100 MB); the header passes json_check (strict UTF-8 JSON, no
 * duplicate key at any depth, no \u0000, every number a plain unsigned integer) and is one
 * object; dtypes are spelled exactly; shape x dtype size = the byte range; and the ranges,
 * sorted, tile the data section exactly. Every check is linear in the file, or n log n in the
 * number of tensors.
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
#include "json_check.h"

/* The Hugging Face reader's limit; a larger "length" is a corrupted file, not a header. */
#define MAX_HEADER 100000000ull
/* Offsets and dimensions must be exact in cJSON's double: below 2^53 every integer is, and no
 * larger integer rounds to below it. */
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

/* Tensor names come from the file and may hold line breaks; a message is one line. */
__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
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

/* Names a reader would take for something else. Duplicates, and names or metadata that are
 * not UTF-8, are caught by checking the header text itself (check_own_header). */
static int check_names(const char *path, const StTensor *tensors, int n, char *err, size_t errlen) {
    for (int i = 0; i < n; i++) {
        const char *name = tensors[i].name;
        if (!*name || !strcmp(name, "__metadata__"))
            return fail(err, errlen, "%s: invalid tensor name '%s'", path, name);
    }
    return 0;
}

/* What st_open would refuse in the header we are about to write: duplicate names or metadata
 * keys, text that is not UTF-8. */
static int check_own_header(const char *path, const char *text, char *err, size_t errlen) {
    char msg[512];
    size_t pos;
    if (!json_check(text, strlen(text), JSON_COUNTS, &pos, msg, sizeof msg)) return 0;
    return fail(err, errlen, "%s: cannot write: the header would be refused: %s", path, msg);
}

int st_write(const char *path, const StTensor *tensors, int n, const char *const *meta_keys,
             const char *const *meta_values, int n_meta, char *err, size_t errlen) {
    if (check_names(path, tensors, n, err, errlen)) return -1;
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
    if (check_own_header(path, text, err, errlen)) {
        cJSON_free(text);
        return -1;
    }

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
    const cJSON *meta;  /* the __metadata__ object, or NULL */
    StTensor *t;        /* in header order */
    int n;
    const StTensor **by_name; /* t sorted by name, for st_get */
    unsigned char *copies;    /* aligned copies of misaligned tensors */
};

void st_close(StFile *f) {
    if (!f) return;
    free(f->buf);
    cJSON_Delete(f->header);
    free(f->t);
    free(f->by_name);
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

static int by_name(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

/* A binary search: a checkpoint load asks for every tensor, thousands with many layers. */
const StTensor *st_get(const StFile *f, const char *name) {
    const StTensor key = {.name = name}, *k = &key;
    const StTensor **hit = bsearch(&k, f->by_name, (size_t)f->n, sizeof *f->by_name, by_name);
    return hit ? *hit : NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f->meta, key));
}

/* A non-negative integer that a double holds exactly. */
static int is_count(const cJSON *v) {
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < MAX_EXACT &&
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

typedef struct {
    size_t begin, end;
    int i;
} Range;

/* The tensor's byte range inside the data, checked against its size. */
static int parse_offsets(const char *path, const cJSON *e, const StTensor *t, size_t data_bytes,
                         Range *r, char *err, size_t errlen) {
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
    r->begin = (size_t)b->valuedouble;
    r->end = (size_t)z->valuedouble;
    if (r->end > data_bytes)
        return fail(err, errlen,
                    "%s: truncated: tensor '%s' needs bytes [%zu, %zu) but the file has %zu data "
                    "bytes",
                    path, e->string, r->begin, r->end, data_bytes);
    /* Each dimension is below 2^53 but the product may still overflow. */
    size_t bytes = st_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++)
        if (__builtin_mul_overflow(bytes, (size_t)t->shape[i], &bytes)) bytes = SIZE_MAX;
    if (bytes != r->end - r->begin)
        return fail(err, errlen,
                    "%s: tensor '%s': data_offsets [%zu, %zu) hold %zu bytes but its shape and "
                    "dtype %s need %zu",
                    path, e->string, r->begin, r->end, r->end - r->begin, dtype_names[t->dtype],
                    bytes);
    return 0;
}

static int parse_tensor(const char *path, const cJSON *e, StTensor *t, size_t data_bytes, Range *r,
                        char *err, size_t errlen) {
    t->name = e->string;
    if (!cJSON_IsObject(e))
        return fail(err, errlen, "%s: tensor '%s': entry must be an object", path, e->string);
    return parse_dtype(path, e, t, err, errlen) || parse_shape(path, e, t, err, errlen) ||
           parse_offsets(path, e, t, data_bytes, r, err, errlen);
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

static int by_offsets(const void *a, const void *b) {
    const Range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* As the Hugging Face reader requires: sorted by offsets, the tensors tile the data section
 * exactly, the first from byte 0, each from where the previous one ends, the last to the end
 * of the file. A gap, an overlap or trailing bytes mean a damaged or misread file: a header
 * length one short, for one, shifts every tensor by a byte and leaves one byte over. */
static int check_tiling(const char *path, const StFile *f, Range *r, size_t data_bytes, char *err,
                        size_t errlen) {
    qsort(r, (size_t)f->n, sizeof *r, by_offsets);
    size_t at = 0;
    for (int i = 0; i < f->n; i++) {
        if (r[i].begin == at) {
            at = r[i].end;
            continue;
        }
        const char *t = f->t[r[i].i].name;
        if (i == 0)
            return fail(err, errlen, "%s: the first tensor '%s' [%zu, %zu) does not start at 0",
                        path, t, r[i].begin, r[i].end);
        const char *p = f->t[r[i - 1].i].name;
        return fail(err, errlen, "%s: %s between tensors '%s' [%zu, %zu) and '%s' [%zu, %zu)", path,
                    r[i].begin > at ? "unused bytes" : "overlap", p, r[i - 1].begin, at, t,
                    r[i].begin, r[i].end);
    }
    if (at == data_bytes) return 0;
    if (f->n == 0) return fail(err, errlen, "%s: %zu data bytes but no tensors", path, data_bytes);
    return fail(err, errlen,
                "%s: %zu trailing bytes: the last tensor '%s' ends at %zu of %zu data bytes", path,
                data_bytes - at, f->t[r[f->n - 1].i].name, at, data_bytes);
}

/* Points each tensor at its bytes, copying the misaligned ones (see the top of the file). An
 * empty tensor points at an aligned dummy, never NULL: a memcpy of 0 bytes from NULL is
 * undefined. */
static void place_data(StFile *f, const Range *r, const unsigned char *data) {
    static const int64_t nothing[1];
    size_t copy_bytes = 0;
    for (int i = 0; i < f->n; i++)
        if (r[i].end > r[i].begin &&
            (uintptr_t)(data + r[i].begin) % st_dtype_size(f->t[r[i].i].dtype))
            copy_bytes += (r[i].end - r[i].begin + 7) / 8 * 8;
    if (copy_bytes) f->copies = xcalloc(copy_bytes, 1);
    unsigned char *p = f->copies;
    for (int i = 0; i < f->n; i++) {
        StTensor *t = &f->t[r[i].i];
        const unsigned char *src = data + r[i].begin;
        if (r[i].begin == r[i].end) {
            t->data = nothing;
        } else if ((uintptr_t)src % st_dtype_size(t->dtype)) {
            memcpy(p, src, r[i].end - r[i].begin);
            t->data = p;
            p += (r[i].end - r[i].begin + 7) / 8 * 8;
        } else {
            t->data = src;
        }
    }
}

static void index_names(StFile *f) {
    f->by_name = xcalloc((size_t)f->n + 1, sizeof *f->by_name);
    for (int i = 0; i < f->n; i++) f->by_name[i] = &f->t[i];
    qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, by_name);
}

/* The header text through json_check, then cJSON: an object. */
static int read_json(const char *path, StFile *f, const char *text, size_t len, char *err,
                     size_t errlen) {
    char msg[512];
    size_t pos;
    if (json_check(text, len, JSON_COUNTS, &pos, msg, sizeof msg))
        return fail(err, errlen, "%s: header byte %zu (file offset %zu): %s", path, pos, pos + 8,
                    msg);
    f->header = cJSON_ParseWithLength(text, len);
    if (!f->header) sys_error("out of memory reading %s", path); /* the text is valid JSON */
    if (!cJSON_IsObject(f->header))
        return fail(err, errlen, "%s: header is not a JSON object", path);
    return 0;
}

static int parse_header(const char *path, StFile *f, const char *text, size_t len,
                        const unsigned char *data, size_t data_bytes, char *err, size_t errlen) {
    if (read_json(path, f, text, len, err, errlen)) return -1;
    int n = cJSON_GetArraySize(f->header), rc = 0;
    f->t = xcalloc((size_t)n + 1, sizeof *f->t);
    Range *r = xcalloc((size_t)n + 1, sizeof *r);
    for (const cJSON *e = f->header->child; e && !rc; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) {
            rc = check_metadata(path, e, err, errlen);
            f->meta = e;
            continue;
        }
        rc = parse_tensor(path, e, &f->t[f->n], data_bytes, &r[f->n], err, errlen);
        r[f->n].i = f->n;
        f->n++;
    }
    if (!rc) rc = check_tiling(path, f, r, data_bytes, err, errlen);
    if (!rc) place_data(f, r, data);
    if (!rc) index_names(f);
    free(r);
    return rc ? -1 : 0;
}

/* The length field: at least "{}", at most the Hugging Face limit and what the file holds. */
static int check_length(const char *path, size_t len, uint64_t header_len, char *err,
                        size_t errlen) {
    if (len < 8)
        return fail(err, errlen, "%s: file of %zu bytes is too short for a safetensors file", path,
                    len);
    if (header_len > MAX_HEADER)
        return fail(err, errlen, "%s: header length %" PRIu64 " exceeds the 100 MB limit", path,
                    header_len);
    if (header_len > len - 8)
        return fail(err, errlen, "%s: header length %" PRIu64 " exceeds file size %zu", path,
                    header_len, len);
    if (header_len < 2)
        return fail(err, errlen, "%s: header length %" PRIu64 " is below 2, the size of {}", path,
                    header_len);
    return 0;
}

StFile *st_open_buffer(unsigned char *buf, size_t len, const char *name, char *err, size_t errlen) {
    StFile *f = xcalloc(1, sizeof *f);
    f->buf = buf;
    uint64_t header_len = 0;
    for (int i = 0; i < 8 && len >= 8; i++) header_len |= (uint64_t)buf[i] << (8 * i);
    if (check_length(name, len, header_len, err, errlen) ||
        parse_header(name, f, (const char *)buf + 8, header_len, buf + 8 + header_len,
                     len - 8 - header_len, err, errlen)) {
        st_close(f);
        return NULL;
    }
    return f;
}

StFile *st_open(const char *path, char *err, size_t errlen) {
    size_t len;
    unsigned char *buf = (unsigned char *)read_file(path, &len);
    if (!buf) {
        fail(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    return st_open_buffer(buf, len, path, err, errlen);
}
