/* data.c — WikiText token streams: vocabulary, tokenization with a memory-mapped cache, batching.
 *
 * Tokenization is byte-level and matches Python's bytes.split() plus one "<eos>" per line:
 * words are separated by ASCII whitespace (space, \t, \r, \v, \f), lines by \n, and a last line
 * without its \n still counts once. That is the convention behind the published WikiText-2
 * counts (2,088,628 / 217,646 / 245,569 tokens) and fairseq's. Unicode spaces (which Python's
 * str.split() would also split on) are word bytes here; WikiText-2 counts the same either way.
 * Bytes need not be UTF-8. A NUL byte also separates words, because words are C strings.
 *
 * Text is streamed, never read whole: a TextStream reads a file in chunks of 4 MB and hands the
 * scanner segments that end just after a separator byte; the bytes after a chunk's last
 * separator (a partial word) are carried into the next segment, and the scanner's "inside a
 * line" flag carries across segments, so the tokens are exactly those of the whole file. A word
 * longer than a chunk grows the buffer.
 *
 * Word lookup is one open-addressing hash table (WordTable), used both to count the train file
 * and as the vocabulary's index, so building the WikiText-2 vocabulary is a single pass.
 *
 * Token cache "<path>.<vocab hash as 16 hex>.cache": a 64-byte header (CacheHeader) then n int32
 * ids in native byte order (a cache is a local file, not an exchange format), memory-mapped
 * read-only with Tokens.ids pointing just past the header (8-byte aligned in the mapping). It is
 * written under a temporary name in the same folder ("<cache>.tmp.<pid>", removed on failure,
 * and by the next build when a killed process left it: remove_dead_temps), fsync'd and renamed, so
 * the cache name only ever holds a complete file and a mapped cache is never truncated under its
 * reader (that would be a SIGBUS, not an error). A cache is used only if its header matches the
 * source's size and mtime and the vocabulary hash, its size matches its n, every id is below the
 * vocabulary size, the ids match the header's checksum (token_checksum: a flipped bit that keeps an
 * id in range would otherwise train on the wrong word unseen), and it is strictly newer than its
 * source. The last rule is git's answer to "racily clean" files: mtimes come from a coarse clock (a
 * few ms), so a source rewritten at the same size within the tick in which its cache was written
 * would otherwise keep the old ids.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* st_mtim, MAP_POPULATE (the Makefile passes it already) */
#endif
#include "data.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
    const char **word; /* not NUL-terminated in vocab_parse (points into the text) */
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

/* A malloc'd, NUL-terminated copy of s[0, len): counted words must outlive the chunk of text
 * they were read from. */
static char *word_copy(const char *s, size_t len) {
    char *w = malloc(len + 1);
    if (!w) sys_error("out of memory (vocabulary words)");
    memcpy(w, s, len);
    w[len] = 0;
    return w;
}

/* wt_add, storing a copy of a new word (the table then owns its words). */
static size_t wt_add_copy(WordTable *t, const char *s, size_t len, int *added) {
    size_t e = wt_add(t, s, len, added);
    if (*added) t->word[e] = word_copy(s, len);
    return e;
}

/* wt_free for a table that owns its words. */
static void wt_free_words(WordTable *t) {
    for (size_t e = 0; e < t->n; e++) free((char *)t->word[e]);
    wt_free(t);
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

static int write_exact(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Whole file into a NUL-terminated buffer, with its stat; NULL with errno set on failure. Only
 * for vocabulary files (a few MB); corpora go through a TextStream. */
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
    int last;    /* the text ends at end (otherwise more follows, and the line may go on) */
} Scanner;

/* Next word (*w, *len) or end of line of the text. */
static int scan_next(Scanner *s, const char **w, size_t *len) {
    while (s->p < s->end && *s->p != '\n' && is_space((unsigned char)*s->p)) s->p++, s->in_line = 1;
    if (s->p == s->end) {
        if (!s->last) return SCAN_END;
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

/* Progress of a long read, on stderr (stdout may be a run's log): one updating line on a
 * terminal, otherwise a line per 10%. Files under 64 MB take under a second and print nothing. */
typedef struct {
    const char *what, *path;
    double total, t0, shown; /* bytes; start; last time shown */
    int on, tty, tenth;      /* tenth: the last 10% step printed */
} Meter;

static void meter_start(Meter *m, const char *what, const char *path, uint64_t total) {
    *m = (Meter){.what = what, .path = path, .total = (double)total, .t0 = now_seconds()};
    m->on = m->total > 64e6, m->tty = isatty(STDERR_FILENO);
}

static void meter_update(Meter *m, uint64_t done) {
    if (!m->on) return;
    double now = now_seconds(), frac = (double)done / m->total, rate = done / (now - m->t0 + 1e-9);
    int tenth = (int)(10 * frac);
    if (m->tty ? now - m->shown < 0.25 : tenth <= m->tenth || tenth >= 10) return;
    m->shown = now, m->tenth = tenth;
    char eta[32];
    format_duration(frac < 1 && rate > 0 ? (m->total - (double)done) / rate : 0, eta, sizeof eta);
    fprintf(stderr, "%s%s %s: %3.0f%%  %.0f/%.0f MB  %.0f MB/s  ETA %s%s", m->tty ? "\r\033[K" : "",
            m->what, m->path, 100 * frac, done / 1e6, m->total / 1e6, rate / 1e6, eta,
            m->tty ? "" : "\n");
}

static void meter_end(const Meter *m, size_t tokens) {
    if (!m->on) return;
    fprintf(stderr, "%s%s %s: %zu tokens in %.1f s\n", m->tty ? "\r\033[K" : "", m->what, m->path,
            tokens, now_seconds() - m->t0);
}

/* Chunk size: big enough that read() calls cost nothing, small next to any corpus. */
enum { CHUNK_BYTES = 4 << 20 };
static size_t chunk_bytes = CHUNK_BYTES;

void data_set_chunk_bytes_for_tests(size_t bytes) {
    chunk_bytes = bytes ? bytes : CHUNK_BYTES;
}

/* A text file read chunk by chunk (see the top of the file). */
typedef struct {
    int fd;
    char *buf;
    size_t cap, len, cut; /* buf[0, len) was read; [0, cut) is the segment being scanned */
    uint64_t bytes;       /* read from the file so far */
    int error;            /* errno of a failed read */
    Scanner sc;
    Meter meter;
} TextStream;

/* Opens a non-empty file; st receives its stat. 0, or -1 with a message naming the file. */
static int stream_open(TextStream *s, const char *path, const char *what, struct stat *st,
                       char *err, size_t n) {
    memset(s, 0, sizeof *s);
    s->fd = open(path, O_RDONLY);
    if (s->fd < 0) return fail(err, n, "cannot read '%s': %s", path, strerror(errno));
    int e = fstat(s->fd, st) != 0 ? errno : S_ISDIR(st->st_mode) ? EISDIR : 0;
    if (e || st->st_size == 0) {
        close(s->fd);
        return e ? fail(err, n, "cannot read '%s': %s", path, strerror(e))
                 : fail(err, n, "'%s' is empty", path);
    }
    meter_start(&s->meter, what, path, (uint64_t)st->st_size);
    return 0;
}

static void stream_close(TextStream *s) {
    close(s->fd);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

/* Back to the start of the file, to read it again. */
static void stream_rewind(TextStream *s) {
    if (lseek(s->fd, 0, SEEK_SET) != 0) sys_error("cannot rewind '%s'", s->meter.path);
    s->len = s->cut = 0, s->bytes = 0, s->error = 0;
    s->sc = (Scanner){0};
    meter_start(&s->meter, s->meter.what, s->meter.path, (uint64_t)s->meter.total);
}

/* End of the last separator (whitespace or \n) in p[0, len), or 0 if there is none. */
static size_t separated_prefix(const char *p, size_t len) {
    while (len > 0 && p[len - 1] != '\n' && !is_space((unsigned char)p[len - 1])) len--;
    return len;
}

/* The next segment: the carried partial word plus fresh bytes, up to the last separator (to the
 * end at the end of the file). Only the fresh bytes are searched: the carried ones hold no
 * separator. 0, or -1 with s->error. */
static int stream_fill(TextStream *s) {
    if (s->cut) memmove(s->buf, s->buf + s->cut, s->len - s->cut);
    s->len -= s->cut;
    size_t cut = 0;
    int last = 0;
    while (!cut && !last) {
        if (s->len == s->cap) { /* first call, or a partial word fills the buffer */
            s->cap = s->cap ? 2 * s->cap : chunk_bytes;
            s->buf = realloc(s->buf, s->cap);
            if (!s->buf) sys_error("out of memory reading '%s'", s->meter.path);
        }
        ssize_t r = read(s->fd, s->buf + s->len, s->cap - s->len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return s->error = errno, -1;
        size_t fresh = s->len, k = separated_prefix(s->buf + fresh, (size_t)r);
        s->len += (size_t)r, s->bytes += (uint64_t)r;
        last = r == 0;
        cut = last ? s->len : k ? fresh + k : 0;
    }
    s->cut = cut;
    s->sc = (Scanner){s->buf, s->buf + cut, s->sc.in_line, last};
    meter_update(&s->meter, s->bytes);
    return 0;
}

/* The next word or line end as scan_next, SCAN_END at the end of the file, or -1 if reading
 * failed (s->error). A word is valid until the next call. */
static int stream_next(TextStream *s, const char **w, size_t *len) {
    for (;;) {
        int kind = scan_next(&s->sc, w, len);
        if (kind != SCAN_END || s->sc.last) return kind;
        if (stream_fill(s) != 0) return -1;
    }
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

/* Takes ownership of words (each malloc'd) and counts; builds the index and special ids.
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

/* The vocabulary of a table of counted words (owned copies, taken over; the table is freed), in
 * canonical order: count descending, ties in byte order. A missing "<eos>" goes first and a
 * missing "<unk>" last, both with count 0. */
static void vocab_from_table(Vocab *v, WordTable *wt) {
    int has_eos = wt_find(wt, EOS, strlen(EOS)) >= 0, has_unk = wt_find(wt, UNK, strlen(UNK)) >= 0;
    WordCount *wc = xcalloc(wt->n, sizeof *wc);
    for (size_t e = 0; e < wt->n; e++) wc[e] = (WordCount){wt->word[e], wt->len[e], wt->count[e]};
    qsort(wc, wt->n, sizeof *wc, cmp_count_then_bytes);
    assert(wt->n <= INT_MAX - 2);
    int nv = (int)wt->n + !has_eos + !has_unk, k = 0;
    char **words = xcalloc((size_t)nv, sizeof *words);
    int64_t *counts = xcalloc((size_t)nv, sizeof *counts);
    if (!has_eos) words[k++] = xstrdup(EOS);
    for (size_t e = 0; e < wt->n; e++, k++) words[k] = (char *)wc[e].word, counts[k] = wc[e].count;
    if (!has_unk) words[k++] = xstrdup(UNK);
    free(wc);
    wt_free(wt);
    vocab_finish(v, words, counts, nv);
}

int vocab_build(Vocab *v, const char *train_path, char *err, size_t n) {
    memset(v, 0, sizeof *v);
    TextStream s;
    struct stat st;
    if (stream_open(&s, train_path, "counting words of", &st, err, n) != 0) return -1;
    WordTable wt;
    wt_init(&wt, 1 << 16);
    const char *w;
    size_t wl, tokens = 0;
    int64_t lines = 0;
    int kind, added;
    while ((kind = stream_next(&s, &w, &wl)) > SCAN_END) {
        tokens++;
        if (kind == SCAN_EOL) {
            lines++;
            continue;
        }
        size_t e = wt_add_copy(&wt, w, wl, &added); /* before indexing: wt_add may move count */
        wt.count[e]++;
    }
    if (kind < 0) {
        fail(err, n, "cannot read '%s': %s", train_path, strerror(s.error));
        wt_free_words(&wt);
        stream_close(&s);
        return -1;
    }
    meter_end(&s.meter, tokens);
    stream_close(&s);
    size_t eos = wt_add_copy(&wt, EOS, strlen(EOS), &added);
    wt.count[eos] += lines;
    vocab_from_table(v, &wt);
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

static int all_digits(const char *p, const char *end) {
    for (; p < end; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

/* Parses the "word count" line s[0, end): 0 with the word's length and the count, or -1 with
 * the reason in why. */
static int parse_word_count(const char *s, const char *end, size_t *wl, int64_t *count, char *why,
                            size_t n) {
    if (end > s && end[-1] == '\r') end--; /* a CRLF file */
    const char *w = s, *c, *ce, *x;
    while (w < end && !is_space((unsigned char)*w)) w++;
    for (c = w; c < end && (*c == ' ' || *c == '\t');) c++;
    for (ce = c; ce < end && !is_space((unsigned char)*ce);) ce++;
    for (x = ce; x < end && (*x == ' ' || *x == '\t');) x++;
    int shown = ce - c > 40 ? 40 : (int)(ce - c); /* of the count field in messages */
    *wl = (size_t)(w - s);
    if (s == end) return fail(why, n, "empty line (expected 'word count')");
    if (w == s) return fail(why, n, "starts with whitespace (expected 'word count')");
    if (c == w || c == ce)
        return fail(why, n, "no count after '%.*s' (expected 'word count')",
                    (int)(*wl > 40 ? 40 : *wl), s);
    if (x < end)
        return fail(why, n, "'%.*s' after the count (expected 'word count')",
                    (int)(end - x > 40 ? 40 : end - x), x);
    if (*c == '-' && ce - c > 1 && all_digits(c + 1, ce))
        return fail(why, n, "count '%.*s' is negative", shown, c);
    if (!all_digits(c, ce))
        return fail(why, n, "count '%.*s' is not a non-negative integer", shown, c);
    int64_t v = 0;
    for (const char *d = c; d < ce; d++) {
        if (v > (INT64_MAX - (*d - '0')) / 10)
            return fail(why, n, "count '%.*s' is too large (the limit is 2^63 - 1)", shown, c);
        v = 10 * v + (*d - '0');
    }
    *count = v;
    return 0;
}

int vocab_load_counts(Vocab *v, const char *path, char *err, size_t n) {
    memset(v, 0, sizeof *v);
    size_t len;
    struct stat st;
    char *text = read_text(path, &len, &st, err, n);
    if (!text) return -1;
    WordTable wt;
    wt_init(&wt, len / 16); /* WikiText-103's file: 11 bytes a line */
    const char *p = text, *end = text + len;
    int rc = 0;
    for (size_t line = 1; p < end && rc == 0; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        char why[200];
        size_t wl;
        int64_t count = 0;
        int added = 0;
        rc = parse_word_count(p, nl ? nl : end, &wl, &count, why, sizeof why);
        size_t e = rc ? 0 : wt_add_copy(&wt, p, wl, &added);
        if (rc)
            fail(err, n, "'%s' line %zu: %s", path, line, why);
        else if (!added) /* each line so far added one word: word e is on line e + 1 */
            rc = fail(err, n, "'%s' line %zu: duplicate word '%.*s' (first on line %zu)", path,
                      line, (int)wl, p, e + 1);
        else
            wt.count[e] = count;
        p = nl ? nl + 1 : end;
    }
    free(text);
    if (rc == 0)
        vocab_from_table(v, &wt);
    else
        wt_free_words(&wt);
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
    char magic[8]; /* "TSTOKv2\0" (v1 had no checksum: such caches are rebuilt) */
    uint64_t source_size;
    int64_t mtime_sec, mtime_nsec;
    uint64_t vocab_hash;
    uint64_t n, n_unk;
    uint64_t checksum; /* token_checksum of the ids */
} CacheHeader;
_Static_assert(sizeof(CacheHeader) == TOKEN_CACHE_HEADER_BYTES, "cache header layout");
static const char CACHE_MAGIC[8] = "TSTOKv2";
enum { PATH_BYTES = 4200 };

/* xxHash64's primes and round (Collet, github.com/Cyan4973/xxHash): acc + w * P2, rotated,
 * times P1 is a bijection of acc for a given w and of w for a given acc. */
static const uint64_t P1 = 0x9E3779B185EBCA87ull, P2 = 0xC2B2AE3D27D4EB4Full;
static uint64_t xx_round(uint64_t acc, uint64_t w) {
    acc += w * P2;
    return ((acc << 31) | (acc >> 33)) * P1;
}

/* The ids read as 8-byte words (an odd last id zero-extended), in eight independent lanes so the
 * multiplies overlap (one chain ran at a third of the speed: 100M ids take ~18 ms in eight lanes,
 * ~22 in four); the lanes, the tail and the count are then folded in one at a time. Every step
 * is a bijection of the state given the word and of the word given the state, so any change to
 * one word (e.g. one flipped id) always changes the result; the final hash64 spreads it over all
 * 64 bits. */
uint64_t token_checksum(const int32_t *ids, size_t n) {
    enum { LANES = 8 };
    const unsigned char *b = (const unsigned char *)ids;
    const size_t words = n / 2;
    uint64_t lane[LANES], w;
    for (int k = 0; k < LANES; k++) lane[k] = (uint64_t)(k + 1) * P1;
    size_t i = 0;
    for (; i + LANES <= words; i += LANES)
        for (int k = 0; k < LANES; k++) {
            memcpy(&w, b + 8 * (i + k), 8);
            lane[k] = xx_round(lane[k], w);
        }
    uint64_t h = (uint64_t)n;
    for (int k = 0; k < LANES; k++) h = xx_round(h, lane[k]);
    for (; i < words; i++) {
        memcpy(&w, b + 8 * i, 8);
        h = xx_round(h, w);
    }
    if (n % 2) h = xx_round(h, (uint32_t)ids[n - 1]);
    return hash64(h);
}

static CacheHeader cache_header(const struct stat *st, const Vocab *v, size_t n, size_t n_unk,
                                uint64_t checksum) {
    CacheHeader h = {.source_size = (uint64_t)st->st_size,
                     .mtime_sec = (int64_t)st->st_mtim.tv_sec,
                     .mtime_nsec = (int64_t)st->st_mtim.tv_nsec,
                     .vocab_hash = v->hash,
                     .n = n,
                     .n_unk = n_unk,
                     .checksum = checksum};
    memcpy(h.magic, CACHE_MAGIC, sizeof h.magic);
    return h;
}

enum { CACHE_STALE = -1, CACHE_CORRUPT = -2 };

/* 0 and t filled with a view of the mapped cache open in fd if it matches the source (src) and
 * v. CACHE_STALE if the header or the size does not match: an old cache or another file, to be
 * rebuilt without a message. CACHE_CORRUPT if the header matches but the ids do not (an id out
 * of range, or not the checksum's): damage worth a warning. The header and the size are checked
 * before mapping, so a truncated file is never read past its end. */
static int cache_map_fd(Tokens *t, int fd, const struct stat *src, const Vocab *v) {
    struct stat st;
    CacheHeader h, want = cache_header(src, v, 0, 0, 0);
    if (fstat(fd, &st) != 0 || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h) return CACHE_STALE;
    if (memcmp(h.magic, want.magic, sizeof h.magic) != 0 || h.source_size != want.source_size ||
        h.mtime_sec != want.mtime_sec || h.mtime_nsec != want.mtime_nsec ||
        h.vocab_hash != want.vocab_hash || h.n_unk > h.n || h.n == 0)
        return CACHE_STALE;
    if (h.n > (SIZE_MAX - sizeof h) / 4 || (uint64_t)st.st_size != sizeof h + 4 * h.n)
        return CACHE_STALE;
    size_t bytes = (size_t)st.st_size;
    /* MAP_POPULATE: the checks below read every page anyway; one read-ahead pass beats a page
     * fault per 4 KB. */
    char *map = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) return CACHE_STALE;
    const int32_t *ids = (const int32_t *)(const void *)(map + sizeof h);
    int bad = 0; /* no early exit: the loop vectorizes */
    for (size_t i = 0; i < h.n; i++) bad |= (uint32_t)ids[i] >= (uint32_t)v->n;
    if (bad || token_checksum(ids, h.n) != h.checksum) {
        munmap(map, bytes);
        return CACHE_CORRUPT;
    }
    t->ids = ids, t->n = h.n, t->n_unk = h.n_unk, t->map = map, t->map_bytes = bytes;
    return 0;
}

static int newer(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec != b->tv_sec ? a->tv_sec > b->tv_sec : a->tv_nsec > b->tv_nsec;
}

/* cache_map_fd on the cache file, which must be strictly newer than its source (see the
 * "racily clean" rule at the top of the file). */
static int cache_map(Tokens *t, const char *cache, const struct stat *src, const Vocab *v) {
    int fd = open(cache, O_RDONLY);
    if (fd < 0) return -1;
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) == 0 && newer(&st.st_mtim, &src->st_mtim)) rc = cache_map_fd(t, fd, src, v);
    close(fd); /* the mapping stays */
    if (rc == CACHE_CORRUPT)
        fprintf(stderr,
                "warning: token cache '%s' is damaged (an id outside the vocabulary, or ids that "
                "do not match its checksum); rebuilding it\n",
                cache);
    return rc;
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

/* Where tokenized ids go: a growing array (fd < 0), or a file written through the buffer. */
typedef struct {
    int32_t *buf;
    size_t n, cap; /* ids in buf */
    size_t total;  /* ids put so far */
    int fd;
    int error; /* errno of a failed write; later ids are dropped */
} IdSink;

static void sink_flush(IdSink *s) {
    if (!s->error && write_exact(s->fd, s->buf, s->n * sizeof *s->buf) != 0) s->error = errno;
    s->n = 0;
}

static void sink_make_room(IdSink *s) {
    if (s->fd >= 0) {
        sink_flush(s);
        return;
    }
    s->buf = realloc(s->buf, (s->cap *= 2) * sizeof *s->buf);
    if (!s->buf) sys_error("out of memory: %zu token ids", s->cap);
}

static inline void sink_put(IdSink *s, int32_t id) {
    if (s->n == s->cap) sink_make_room(s);
    s->buf[s->n++] = id;
    s->total++;
}

/* The id of word w (wl bytes); an unknown word is <unk>, counted in *n_unk. */
static int32_t word_id(const Vocab *v, const char *w, size_t wl, size_t *n_unk) {
    const int64_t e = wt_find(v->index, w, wl);
    *n_unk += e < 0;
    return e < 0 ? v->unk : (int32_t)e;
}

/* Tokenize the stream into out; unknown words become <unk> and are counted. 0, or -1 if reading
 * failed (s->error). */
static int tokenize(TextStream *s, const Vocab *v, IdSink *out, size_t *n_unk) {
    const char *w;
    size_t wl;
    int kind;
    *n_unk = 0;
    while ((kind = stream_next(s, &w, &wl)) > SCAN_END) {
        sink_put(out, kind == SCAN_WORD ? word_id(v, w, wl, n_unk) : v->eos);
    }
    if (kind == SCAN_END) meter_end(&s->meter, out->total);
    return kind;
}

int32_t *tokens_from_text(const Vocab *v, const char *text, size_t *n, size_t *n_unk) {
    /* last = 0: the text's end is not a line end, so a last line without \n adds no <eos> */
    Scanner sc = {.p = text, .end = text + strlen(text)};
    size_t cap = 16;
    int32_t *ids = xcalloc(cap, sizeof *ids);
    const char *w;
    size_t wl;
    int kind;
    *n = *n_unk = 0;
    while ((kind = scan_next(&sc, &w, &wl)) != SCAN_END) {
        const int32_t id = kind == SCAN_WORD ? word_id(v, w, wl, n_unk) : v->eos;
        if (*n == cap) {
            ids = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!ids) sys_error("out of memory: a prompt of %zu tokens", *n);
        }
        ids[(*n)++] = id;
    }
    return ids;
}

static int tokens_in_memory(Tokens *t, TextStream *s, const struct stat *st, const Vocab *v) {
    IdSink out = {.cap = (size_t)st->st_size / 4 + 16, .fd = -1}; /* WikiText: ~5 bytes a token */
    out.buf = malloc(out.cap * sizeof *out.buf);
    if (!out.buf) sys_error("out of memory tokenizing %.1f MB", (double)st->st_size / 1e6);
    size_t n_unk;
    if (tokenize(s, v, &out, &n_unk) != 0) {
        free(out.buf);
        return -1;
    }
    int32_t *fit = realloc(out.buf, out.n * sizeof *fit); /* n > 0: the source is not empty */
    t->ids = fit ? fit : out.buf, t->n = out.n, t->n_unk = n_unk;
    return 0;
}

/* Best effort: a cache that cannot be written only costs time. Permission problems are
 * expected (read-only data folders) and silent; anything else is worth a warning. */
static void cache_warn(const char *cache, int e) {
    if (e != EACCES && e != EROFS && e != EPERM)
        fprintf(stderr, "warning: cannot write token cache '%s': %s\n", cache, strerror(e));
}

/* The checksum of the n ids written after the header into fd (read back through a mapping:
 * they were streamed out in 1 MB pieces). 0, or an errno. */
static int checksum_of_file(int fd, size_t n, uint64_t *sum) {
    size_t bytes = sizeof(CacheHeader) + 4 * n;
    char *map = mmap(NULL, bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) return errno;
    *sum = token_checksum((const int32_t *)(const void *)(map + sizeof(CacheHeader)), n);
    munmap(map, bytes);
    return 0;
}

/* Tokenize the stream straight into a temporary file beside the cache (ids first, the header
 * with n, n_unk and the checksum last), fsync it, rename it into place and map it. 1: t filled;
 * 0: no cache could be written (the caller tokenizes into memory); -1: reading the source
 * failed. */
static int cache_build(Tokens *t, const char *cache, TextStream *s, const struct stat *src,
                       const Vocab *v) {
    char tmp[PATH_BYTES + 32], dir[PATH_BYTES];
    const char *slash = strrchr(cache, '/');
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - cache) : 1, slash ? cache : ".");
    remove_dead_temps(dir); /* a build killed before its rename left its temp file */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", cache, (long)getpid());
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return cache_warn(cache, errno), 0;
    IdSink out = {.cap = 1 << 18, .fd = fd}; /* 1 MB writes */
    out.buf = xcalloc(out.cap, sizeof *out.buf);
    if (lseek(fd, sizeof(CacheHeader), SEEK_SET) < 0) out.error = errno;
    size_t n_unk;
    int rc = tokenize(s, v, &out, &n_unk), renamed = 0;
    sink_flush(&out);
    free(out.buf);
    if (rc == 0) {
        uint64_t sum = 0;
        int e = out.error ? out.error : checksum_of_file(fd, out.total, &sum);
        CacheHeader h = cache_header(src, v, out.total, n_unk, sum);
        if (!e && (lseek(fd, 0, SEEK_SET) != 0 || write_exact(fd, &h, sizeof h) != 0 ||
                   fchmod(fd, 0644) != 0 || fsync(fd) != 0))
            e = errno;
        if (!e && rename(tmp, cache) != 0) e = errno;
        renamed = !e;
        if (e) cache_warn(cache, e);
        if (renamed) fsync_path_dir(cache);
        rc = renamed && cache_map_fd(t, fd, src, v) == 0;
    }
    close(fd);
    if (!renamed) unlink(tmp);
    return rc;
}

int tokens_load(Tokens *t, const char *path, const Vocab *v, int use_cache, char *err, size_t n) {
    memset(t, 0, sizeof *t);
    assert(v && v->index && v->eos >= 0 && v->unk >= 0);
    TextStream s;
    struct stat st; /* of the source we read; recorded in the cache header */
    if (stream_open(&s, path, "tokenizing", &st, err, n) != 0) return -1;
    char cache[PATH_BYTES];
    int cn = snprintf(cache, sizeof cache, "%s.%016llx.cache", path, (unsigned long long)v->hash);
    if (cn < 0 || (size_t)cn >= sizeof cache) use_cache = 0; /* a truncated name would be wrong */
    int done = use_cache && cache_map(t, cache, &st, v) == 0, rc = 0;
    if (!done && use_cache && dir_writable(cache)) {
        rc = cache_build(t, cache, &s, &st, v);
        done = rc == 1;
        if (rc == 0) stream_rewind(&s);
    }
    if (!done && rc == 0) rc = tokens_in_memory(t, &s, &st, v);
    if (rc < 0) fail(err, n, "cannot read '%s': %s", path, strerror(s.error));
    stream_close(&s);
    return rc < 0 ? -1 : 0;
}

void tokens_free(Tokens *t) {
    if (t->map)
        munmap(t->map, t->map_bytes);
    else
        free((void *)t->ids); /* malloc'd: by tokens_in_memory, or by a caller */
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
