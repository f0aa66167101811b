/* safetensors.h — read and write the safetensors format (https://huggingface.co/docs/safetensors):
 * an 8-byte little-endian header length N, N bytes of JSON header, then the raw tensor bytes.
 * The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end)} (offsets
 * relative to the start of the byte buffer) plus an optional "__metadata__" map of string to
 * string. Any safetensors reader (Python's included) loads what we write.
 *
 * Writes are atomic (temp file, fsync, rename): a crash never leaves a truncated checkpoint.
 * Reads enforce the format exactly (the rules are listed in safetensors.c) and report what a
 * corrupted, truncated or foreign file gets wrong in one line naming the file. */
#ifndef SAFETENSORS_H
#define SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { ST_F32, ST_F64, ST_I32, ST_I64 } StDtype;

typedef struct {
    const char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data; /* little-endian, row-major, numel * dtype size bytes */
} StTensor;

/* metadata: n_meta pairs of (key, value) strings; may be 0. Returns 0, or -1 with err set and
 * no file written. */
int st_write(const char *path, const StTensor *tensors, int n, const char *const *meta_keys,
             const char *const *meta_values, int n_meta, char *err, size_t errlen);

typedef struct StFile StFile;

/* NULL with err set ("<path>: header length 123456 exceeds file size 100", ...) on failure. */
StFile *st_open(const char *path, char *err, size_t errlen);
/* The same from a file already in memory: buf (len bytes, from malloc) is owned by the StFile
 * from now on, and freed on failure too; name stands for the path in messages. */
StFile *st_open_buffer(unsigned char *buf, size_t len, const char *name, char *err, size_t errlen);
void st_close(StFile *f);
int st_count(const StFile *f);
const StTensor *st_at(const StFile *f, int i);
const StTensor *st_get(const StFile *f, const char *name); /* NULL if absent */
const char *st_meta(const StFile *f, const char *key);     /* NULL if absent */
size_t st_dtype_size(StDtype d);
size_t st_numel(const StTensor *t);

#endif
