/* data.c — WikiText token streams: vocabulary, tokenization with a binary cache, batching.
 *
 * Tokenization is byte-level and matches Python's bytes.split() plus one "<eos>" per line:
 * words are separated by ASCII whitespace (space, \t, \r, \v, \f), lines by \n, and a last line
 * without its \n still counts once. That is the convention behind the published WikiText-2
 * counts (2,088,628 / 217,646 / 245,569 tokens) and fairseq's. Unicode spaces (which Python's
 * str.split() would also split on) are word bytes here; WikiText-2 counts the same either way.
 * Bytes need not be UTF-8. A NUL byte also separates words, because words are C strings.
 *
 * Word lookup is one open-addressing hash table (WordTable), used both to count the train file
 * and as the vocabulary's index, so building the WikiText-2 vocabulary is a single pass.
 *
 * Token cache "<path>.<vocab hash as 16 hex>.cache": a 56-byte header (CacheHeader) then n int32
 * ids in native byte order (a cache is a local file, not an exchange format). The header is a
 * multiple of 8 bytes so the ids could be memory-mapped in place later. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* st_mtim; the Makefile passes -D_GNU_SOURCE already */
#endif
#include "data.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"

static const char EOS[] = "<eos>", UNK[] = "<unk>";

static int fail(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t n, const char *fmt, ...) {
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Word table: entries in insertion order, slots hold entry index + 1 (0 = empty). */

typedef struct {
    const char **word; /* not NUL-terminated while counting (points into the text) */
    uint32_t *len;
    uint64_t *hash;
    int64_t *count;
    size_t n, cap;
    uint32_t *slot;
    size_t mask; /* slots - 1, a power of two kept at least twice n */
} WordTable;

/* FNV-1a, then hash64 to mix the low bits, which pick the slot. */
static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001B3ull;
    return hash64(h);
}

static void wt_init(WordTable *t, size_t expect) {
    memset(t, 0, sizeof *t);
    size_t slots = 1024;
    while (slots < 2 * expect) slots *= 2;
    t->slot = xcalloc(slots, sizeof *t->slot);
    t->mask = slots - 1;
}

static void wt_free(WordTable *t) {
    free(t->word), free(t->len), free(t->hash), free(t->count), free(t->slot);
    memset(t, 0, sizeof *t);
}

static size_t wt_probe(const WordTable *t, const char *s, size_t len, uint64_t h) {
    size_t i = h & t->mask;
    for (;;) {
        uint32_t e = t->slot[i];
        if (e == 0) return i;
        e--;
        if (t->hash[e] == h && t->len[e] == len && memcmp(t->word[e], s, len) == 0) return i;
        i = (i + 1) & t->mask;
    }
}

/* Entry index of s, or -1. */
static int64_t wt_find(const WordTable *t, const char *s, size_t len) {
    uint32_t e = t->slot[wt_probe(t, s, len, hash_bytes(s, len))];
    return e ? (int64_t)e - 1 : -1;
}

static void wt_grow(WordTable *t) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        assert(t->cap <= UINT32_MAX);
        t->word = realloc(t->word, t->cap * sizeof *t->word);
        t->len = realloc(t->len, t->cap * sizeof *t->len);
        t->hash = realloc(t->hash, t->cap * sizeof *t->hash);
        t->count = realloc(t->count, t->cap * sizeof *t->count);
        if (!t->word || !t->len || !t->hash || !t->count) sys_error("out of memory (word table)");
    }
    if (2 * (t->n + 1) <= t->mask + 1) return;
    /* Rehash into twice the slots; the entries themselves do not move. */
    free(t->slot);
    t->mask = 2 * (t->mask + 1) - 1;
    t->slot = xcalloc(t->mask + 1, sizeof *t->slot);
    for (size_t e = 0; e < t->n; e++) {
        size_t i = t->hash[e] & t->mask;
        while (t->slot[i]) i = (i + 1) & t->mask;
        t->slot[i] = (uint32_t)e + 1;
    }
}

/* Entry index of s, adding it with count 0 if absent; *added tells which. */
static size_t wt_add(WordTable *t, const char *s, size_t len, int *added) {
    uint64_t h = hash_bytes(s, len);
    size_t i = wt_probe(t, s, len, h);
    *added = t->slot[i] == 0;
    if (!*added) return t->slot[i] - 1;
    size_t mask = t->mask;
    wt_grow(t);
    if (t->mask != mask) i = wt_probe(t, s, len, h); /* rehashed: the free slot moved */
    size_t e = t->n++;
    t->word[e] = s, t->len[e] = (uint32_t)len, t->hash[e] = h, t->count[e] = 0;
    t->slot[i] = (uint32_t)e + 1;
    return e;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading and scanning text. */

/* Exactly len bytes; -1 with errno set (EIO for a file that ends early). */
static int read_exact(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR) continue;
        if (r == 0) errno = EIO;
        if (r <= 0) return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* Whole file into a NUL-terminated buffer, with its stat; NULL with errno set on failure. */
static char *read_all(const char *path, size_t *len, struct stat *st) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    char *buf = NULL;
    int ok = fstat(fd, st) == 0;
    if (ok && S_ISDIR(st->st_mode)) ok = 0, errno = EISDIR;
    if (ok) {
        buf = xcalloc((size_t)st->st_size + 1, 1);
        ok = read_exact(fd, buf, (size_t)st->st_size) == 0;
    }
    int saved = errno;
    close(fd);
    if (!ok) {
        free(buf);
        errno = saved;
        return NULL;
    }
    *len = (size_t)st->st_size;
    return buf;
}

/* A whole, non-empty text file; NULL with the reason in err otherwise. */
static char *read_text(const char *path, size_t *len, struct stat *st, char *err, size_t n) {
    char *text = read_all(path, len, st);
    if (!text)
        fail(err, n, "cannot read '%s': %s", path, strerror(errno));
    else if (*len == 0) {
        free(text);
        text = NULL;
        fail(err, n, "'%s' is empty", path);
    }
    return text;
}

static inline int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || c == 0;
}

enum { SCAN_END, SCAN_WORD, SCAN_EOL };

typedef struct {
    const char *p, *end;
    int in_line; /* bytes of the current line were seen: a last line without \n still ends */
} Scanner;

/* Next word (*w, *len) or end of line of the text. */
static int scan_next(Scanner *s, const char **w, size_t *len) {
    while (s->p < s->end && *s->p != '\n' && is_space((unsigned char)*s->p)) s->p++, s->in_line = 1;
    if (s->p == s->end) {
        int eol = s->in_line;
        s->in_line = 0;
        return eol ? SCAN_EOL : SCAN_END;
    }
    if (*s->p == '\n') {
        s->p++, s->in_line = 0;
        return SCAN_EOL;
    }
    const char *start = s->p;
    while (s->p < s->end && *s->p != '\n' && !is_space((unsigned char)*s->p)) s->p++;
    s->in_line = 1;
    *w = start, *len = (size_t)(s->p - start);
    return SCAN_WORD;
}

/* ------------------------------------------------------------------------------------------ */
/* Vocabulary. */

/* Identifies the id mapping: hash of the words in id order, each followed by \n — the bytes of
 * the vocabulary file that vocab_save writes. */
static uint64_t vocab_hash(char **words, int n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (int i = 0; i < n; i++) {
        for (const unsigned char *c = (const unsigned char *)words[i]; *c; c++)
            h = (h ^ *c) * 0x100000001B3ull;
        h = (h ^ '\n') * 0x100000001B3ull;
    }
    return hash64(h ^ (uint64_t)n);
}

/* Takes ownership of words (each xstrdup'd) and counts; builds the index and special ids.
 * The caller has checked that there are no duplicates. */
static void vocab_finish(Vocab *v, char **words, int64_t *counts, int n) {
    WordTable *ix = xcalloc(1, sizeof *ix);
    wt_init(ix, (size_t)n);
    for (int i = 0; i < n; i++) {
        int added;
        size_t e = wt_add(ix, words[i], strlen(words[i]), &added);
        assert(added && e == (size_t)i);
        (void)e;
    }
    v->words = words, v->counts = counts, v->n = n, v->index = ix;
    v->eos = vocab_id(v, EOS), v->unk = vocab_id(v, UNK);
    v->hash = vocab_hash(words, n);
}

typedef struct {
    const char *word;
    uint32_t len;
    int64_t count;
} WordCount;

/* Count descending, then byte order (as strcmp: unsigned bytes, a prefix first). */
static int cmp_count_then_bytes(const void *pa, const void *pb) {
    const WordCount *a = pa, *b = pb;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    uint32_t m = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->word, b->word, m);
    if (c) return c;
    return (a->len > b->len) - (a->len < b->len);
}

int vocab_build(Vocab *v, const char *train_path, char *err, size_t n) {
    memset(v, 0, sizeof *v);
    size_t len;
    struct stat st;
    char *text = read_text(train_path, &len, &st, err, n);
    if (!text) return -1;
    WordTable wt;
    wt_init(&wt, 1 << 16);
    Scanner sc = {text, text + len, 0};
    const char *w;
    size_t wl;
    int64_t lines = 0;
    int kind, added;
    while ((kind = scan_next(&sc, &w, &wl)) != SCAN_END) {
        if (kind == SCAN_EOL) {
            lines++;
            continue;
        }
        size_t e = wt_add(&wt, w, wl, &added); /* before indexing: wt_add may move wt.count */
        wt.count[e]++;
    }
    size_t eos = wt_add(&wt, EOS, strlen(EOS), &added);
    wt.count[eos] += lines;
    int has_unk = wt_find(&wt, UNK, strlen(UNK)) >= 0;

    WordCount *wc = xcalloc(wt.n, sizeof *wc);
    for (size_t e = 0; e < wt.n; e++) wc[e] = (WordCount){wt.word[e], wt.len[e], wt.count[e]};
    qsort(wc, wt.n, sizeof *wc, cmp_count_then_bytes);
    int nv = (int)wt.n + !has_unk; /* "<unk>" is appended last, count 0, if the file lacks it */
    char **words = xcalloc((size_t)nv, sizeof *words);
    int64_t *counts = xcalloc((size_t)nv, sizeof *counts);
    for (size_t e = 0; e < wt.n; e++) {
        words[e] = xcalloc(wc[e].len + 1, 1);
        memcpy(words[e], wc[e].word, wc[e].len);
        counts[e] = wc[e].count;
    }
    if (!has_unk) words[nv - 1] = xstrdup(UNK);
    free(wc);
    wt_free(&wt);
    free(text);
    vocab_finish(v, words, counts, nv);
    return 0;
}

/* Why a vocabulary line is not a word, or NULL. */
static const char *bad_vocab_line(const char *s, size_t len) {
    if (len == 0) return "empty line";
    for (size_t i = 0; i < len; i++)
        if (is_space((unsigned char)s[i])) return "whitespace inside (expected one word per line)";
    return NULL;
}

static int vocab_parse(Vocab *v, const char *path, const char *text, size_t len, char *err,
                       size_t n) {
    WordTable wt;
    wt_init(&wt, len / 8);
    const char *p = text, *end = text + len;
    size_t line = 0;
    int rc = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t wl = (size_t)((nl ? nl : end) - p);
        line++;
        const char *why = bad_vocab_line(p, wl);
        int added = 0;
        size_t e = why ? 0 : wt_add(&wt, p, wl, &added);
        if (why)
            rc = fail(err, n, "'%s' line %zu: %s", path, line, why);
        else if (!added)
            rc = fail(err, n, "'%s' line %zu: duplicate word '%.*s' (first on line %zu)", path,
                      line, (int)wl, p, e + 1);
        p = nl ? nl + 1 : end;
    }
    for (int k = 0; rc == 0 && k < 2; k++) {
        const char *special = k ? UNK : EOS;
        if (wt_find(&wt, special, strlen(special)) < 0)
            rc = fail(err, n, "'%s': no line '%s' (a vocabulary holds <eos> and <unk>)", path,
                      special);
    }
    if (rc == 0) {
        char **words = xcalloc(wt.n, sizeof *words);
        for (size_t e = 0; e < wt.n; e++) {
            words[e] = xcalloc(wt.len[e] + 1, 1);
            memcpy(words[e], wt.word[e], wt.len[e]);
        }
        vocab_finish(v, words, xcalloc(wt.n, sizeof(int64_t)), (int)wt.n);
    }
    wt_free(&wt);
    return rc;
}

int vocab_load(Vocab *v, const char *vocab_txt, char *err, size_t n) {
    memset(v, 0, sizeof *v);
    size_t len;
    struct stat st;
    char *text = read_text(vocab_txt, &len, &st, err, n);
    if (!text) return -1;
    int rc = vocab_parse(v, vocab_txt, text, len, err, n);
    free(text);
    return rc;
}

int vocab_save(const Vocab *v, const char *path, char *err, size_t n) {
    size_t len = 0;
    for (int i = 0; i < v->n; i++) len += strlen(v->words[i]) + 1;
    char *buf = xcalloc(len + 1, 1), *p = buf;
    for (int i = 0; i < v->n; i++) {
        size_t wl = strlen(v->words[i]);
        memcpy(p, v->words[i], wl);
        p += wl;
        *p++ = '\n';
    }
    int rc = write_file_atomic(path, buf, len);
    int saved = errno;
    free(buf);
    if (rc != 0) return fail(err, n, "cannot write '%s': %s", path, strerror(saved));
    return 0;
}

int vocab_id(const Vocab *v, const char *word) {
    const WordTable *ix = v->index;
    return ix ? (int)wt_find(ix, word, strlen(word)) : -1;
}

void vocab_free(Vocab *v) {
    for (int i = 0; i < v->n; i++) free(v->words[i]);
    free(v->words);
    free(v->counts);
    if (v->index) wt_free(v->index);
    free(v->index);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------------------------------ */
/* Tokens and their cache. */

typedef struct {
    char magic[8]; /* "TSTOKv1\0" */
    uint64_t source_size;
    int64_t mtime_sec, mtime_nsec;
    uint64_t vocab_hash;
    uint64_t n, n_unk;
} CacheHeader;
_Static_assert(sizeof(CacheHeader) == 56, "cache header layout");
static const char CACHE_MAGIC[8] = "TSTOKv1";
enum { PATH_BYTES = 4200 };

static CacheHeader cache_header(const struct stat *st, const Vocab *v, size_t n, size_t n_unk) {
    CacheHeader h = {.source_size = (uint64_t)st->st_size,
                     .mtime_sec = (int64_t)st->st_mtim.tv_sec,
                     .mtime_nsec = (int64_t)st->st_mtim.tv_nsec,
                     .vocab_hash = v->hash,
                     .n = n,
                     .n_unk = n_unk};
    memcpy(h.magic, CACHE_MAGIC, sizeof h.magic);
    return h;
}

/* 0 and t filled if the cache matches the source (st) and v; -1 otherwise — any mismatch just
 * means "rebuild", so there is no message. */
static int cache_read(Tokens *t, const char *cache, const struct stat *src, const Vocab *v) {
    int fd = open(cache, O_RDONLY);
    if (fd < 0) return -1;
    struct stat st;
    CacheHeader h, want = cache_header(src, v, 0, 0);
    int32_t *ids = NULL;
    if (fstat(fd, &st) != 0 || read_exact(fd, &h, sizeof h) != 0) goto stale;
    if (memcmp(h.magic, want.magic, sizeof h.magic) != 0 || h.source_size != want.source_size ||
        h.mtime_sec != want.mtime_sec || h.mtime_nsec != want.mtime_nsec ||
        h.vocab_hash != want.vocab_hash || h.n_unk > h.n || h.n == 0)
        goto stale;
    if (h.n > (SIZE_MAX - sizeof h) / 4 || (uint64_t)st.st_size != sizeof h + 4 * h.n) goto stale;
    ids = xcalloc(h.n, sizeof *ids);
    if (read_exact(fd, ids, 4 * h.n) != 0) goto stale;
    for (size_t i = 0; i < h.n; i++)
        if (ids[i] < 0 || ids[i] >= v->n) goto stale;
    close(fd);
    t->ids = ids, t->n = h.n, t->n_unk = h.n_unk;
    return 0;
stale:
    free(ids);
    close(fd);
    return -1;
}

/* Root ignores permission bits, so a folder marked read-only (like the shared data folder,
 * dr-xr-xr-x) would still be written to; honour the marking as well as access(). */
static int dir_writable(const char *file) {
    char dir[PATH_BYTES];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir] = 0; /* keep the "/" of a file in the root */
    else
        snprintf(dir, sizeof dir, ".");
    struct stat st;
    return stat(dir, &st) == 0 && (st.st_mode & 0222) && access(dir, W_OK) == 0;
}

/* Best effort: a cache that cannot be written only costs time. Permission problems are
 * expected (read-only data folders) and silent; anything else is worth a warning. */
static void cache_write(const char *cache, const Tokens *t, const struct stat *src,
                        const Vocab *v) {
    if (!dir_writable(cache)) return;
    CacheHeader h = cache_header(src, v, t->n, t->n_unk);
    size_t bytes = sizeof h + 4 * t->n;
    char *buf = malloc(bytes);
    if (!buf) return;
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, t->ids, 4 * t->n);
    if (write_file_atomic(cache, buf, bytes) != 0 && errno != EACCES && errno != EROFS &&
        errno != EPERM)
        fprintf(stderr, "warning: cannot write token cache '%s': %s\n", cache, strerror(errno));
    free(buf);
}

/* Tokenize text with v; unknown words become <unk> and are counted. */
static void tokenize(Tokens *t, const char *text, size_t len, const Vocab *v) {
    const WordTable *ix = v->index;
    size_t cap = len / 4 + 16, n = 0, n_unk = 0; /* WikiText averages ~5 bytes per token */
    int32_t *ids = malloc(cap * sizeof *ids);
    Scanner sc = {text, text + len, 0};
    const char *w;
    size_t wl;
    int kind;
    while (ids && (kind = scan_next(&sc, &w, &wl)) != SCAN_END) {
        int32_t id = v->eos;
        if (kind == SCAN_WORD) {
            int64_t e = wt_find(ix, w, wl);
            if (e < 0) n_unk++;
            id = e < 0 ? v->unk : (int32_t)e;
        }
        if (n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        if (ids) ids[n++] = id;
    }
    if (!ids) sys_error("out of memory tokenizing %.1f MB", len / 1e6);
    int32_t *fit = realloc(ids, (n ? n : 1) * sizeof *ids);
    t->ids = fit ? fit : ids, t->n = n, t->n_unk = n_unk;
}

int tokens_load(Tokens *t, const char *path, const Vocab *v, int use_cache, char *err, size_t n) {
    memset(t, 0, sizeof *t);
    assert(v && v->index && v->eos >= 0 && v->unk >= 0);
    struct stat st;
    if (stat(path, &st) != 0) return fail(err, n, "cannot read '%s': %s", path, strerror(errno));
    char cache[PATH_BYTES];
    int cn = snprintf(cache, sizeof cache, "%s.%016llx.cache", path, (unsigned long long)v->hash);
    if (cn < 0 || (size_t)cn >= sizeof cache) use_cache = 0; /* a truncated name would be wrong */
    if (use_cache && cache_read(t, cache, &st, v) == 0) return 0;

    size_t len;
    char *text = read_text(path, &len, &st, err, n); /* st now describes what we tokenize */
    if (!text) return -1;
    tokenize(t, text, len, v);
    free(text);
    if (use_cache) cache_write(cache, t, &st, v);
    return 0;
}

void tokens_free(Tokens *t) {
    free(t->ids);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------------------------------ */
/* Batcher. */

void batcher_init(Batcher *b, const Tokens *t, int T, uint64_t seed) {
    assert(T > 0);
    memset(b, 0, sizeof *b);
    b->tok = t, b->T = T, b->seed = seed, b->epoch = -1;
    b->n_windows = t->n > 0 ? (t->n - 1) / (size_t)T : 0;
    assert(b->n_windows <= UINT32_MAX);
    if (b->n_windows) b->perm = xcalloc(b->n_windows, sizeof *b->perm);
}

/* Fisher–Yates with a stateless key per (seed, epoch): any epoch's order can be rebuilt
 * alone, which is what makes batcher_get independent of earlier calls. The modulo's bias is
 * below W / 2^64, far below anything measurable. */
static void batcher_shuffle(Batcher *b, int64_t epoch) {
    uint64_t key = rng_key(b->seed, (uint64_t)epoch);
    uint32_t *perm = b->perm;
    for (size_t i = 0; i < b->n_windows; i++) perm[i] = (uint32_t)i;
    for (size_t i = b->n_windows - 1; i > 0; i--) {
        size_t j = (size_t)(rng_key(key, i) % (i + 1));
        uint32_t tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
    b->epoch = epoch;
}

void batcher_get(Batcher *b, uint64_t s, int B, int32_t *inputs, int32_t *targets) {
    assert(b->n_windows > 0 && "corpus shorter than T+1 tokens: the caller must check");
    size_t T = (size_t)b->T;
    for (int i = 0; i < B; i++) {
        uint64_t seq = s + (uint64_t)i;
        int64_t epoch = (int64_t)(seq / b->n_windows);
        if (epoch != b->epoch) batcher_shuffle(b, epoch);
        const int32_t *w = b->tok->ids + (size_t)b->perm[seq % b->n_windows] * T;
        memcpy(inputs + (size_t)i * T, w, T * sizeof *w);
        memcpy(targets + (size_t)i * T, w + 1, T * sizeof *w);
    }
}

void batcher_free(Batcher *b) {
    free(b->perm);
    memset(b, 0, sizeof *b);
}
