/* test_data.c — the data module as a specification: tokenization counts, vocabulary order,
 * <unk>, vocabulary files ("word count" ones too), chunked reading (words and lines across chunk
 * edges), the memory-mapped token cache (reuse, staleness, truncation, corruption, read-only
 * folders), the batcher's shuffle and resume property, the synthetic-corpus script, and the
 * published WikiText-2/-103 statistics when the shared corpus is beside the repository.
 * Fixtures: tests/fixtures/data/tiny.*.tokens, tests/fixtures/data_counts/small.vocab. */
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../src/data/data.h"
#include "../src/util/util.h"

#define FIXTURES    "tests/fixtures/data"
#define WIKITEXT2   "../shared/data/wikitext-2"
#define WT103       "../shared/data/wikitext-103"
#define SMALL_VOCAB "tests/fixtures/data_counts/small.vocab"

/* tiny.train.tokens has leading spaces and tabs, a " " line, an empty line, a \r\n line, a
 * non-UTF-8 byte (\377) and no final newline:
 *   " the cat sat on the mat \n \n\tthe dog\tsat  \n\n   the\t\tcat \r\n"
 *   " <unk> dog b a Zebra \377 \n a b"
 * 7 lines, 19 words -> 26 tokens. Counts: <eos> 7, the 4, a b cat dog sat 2, the rest 1. */
static const char *TINY_TOKENS[] = {"the",   "cat",   "sat",   "on",  "the",   "mat",   "<eos>",
                                    "<eos>", "the",   "dog",   "sat", "<eos>", "<eos>", "the",
                                    "cat",   "<eos>", "<unk>", "dog", "b",     "a",     "Zebra",
                                    "\377",  "<eos>", "a",     "b",   "<eos>"};
/* Count descending, ties in byte order: '<' (0x3C) < 'Z' < 'a'..'z' < 0xFF. */
static const char *TINY_VOCAB[] = {"<eos>", "the",   "a",     "b",   "cat", "dog",
                                   "sat",   "<unk>", "Zebra", "mat", "on",  "\377"};
static const int64_t TINY_COUNTS[] = {7, 4, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1};

static void write_bytes(const char *path, const char *bytes, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(bytes, 1, len, f) != len || fclose(f) != 0) sys_error("cannot write %s", path);
}
static void write_text(const char *path, const char *s) {
    write_bytes(path, s, strlen(s));
}

static size_t file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Copy a file into dir; returns the new path (static buffer). */
static const char *copy_into(const char *src, const char *dir, const char *name) {
    static char dst[512];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    size_t len;
    char *buf = read_file(src, &len);
    if (!buf) sys_error("cannot read %s", src);
    write_bytes(dst, buf, len);
    free(buf);
    return dst;
}

static void cache_path(char *out, size_t n, const char *src, const Vocab *v) {
    snprintf(out, n, "%s.%016llx.cache", src, (unsigned long long)v->hash);
}

static int tokens_equal(const Tokens *a, const Tokens *b) {
    return a->n == b->n && a->n_unk == b->n_unk && memcmp(a->ids, b->ids, 4 * a->n) == 0;
}

/* Set a file's mtime to now + offset seconds (nsec as given). A cache counts only if it is newer
 * than its source, and mtimes tick every few ms, so tests that write a source and then its cache
 * within one tick date the source back first. */
static void set_mtime(const char *path, long offset, long nsec) {
    struct timespec ts[2] = {{0, UTIME_OMIT}, {time(NULL) + offset, nsec}};
    if (utimensat(AT_FDCWD, path, ts, 0) != 0) sys_error("cannot set the mtime of %s", path);
}
static void backdate(const char *path) {
    set_mtime(path, -100, 0);
}

/* Files in dir whose name contains part (leftover temporary caches). */
static int files_containing(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, part) != NULL;
    if (d) closedir(d);
    return n;
}

/* Tokens of path with v, no cache; a failed load leaves t empty and says why. */
static int load_fresh(Tokens *t, const char *path, const Vocab *v) {
    char err[512];
    int rc = tokens_load(t, path, v, 0, err, sizeof err);
    CHECK(rc == 0, "tokens_load('%s'): %s", path, err);
    return rc;
}

#define HDR TOKEN_CACHE_HEADER_BYTES

/* A cache's bytes with their checksum recomputed (the header's last 8 bytes), so ids a test wrote
 * into them are believed. */
static void reseal(char *bytes, size_t len) {
    uint64_t sum = token_checksum((const int32_t *)(const void *)(bytes + HDR), (len - HDR) / 4);
    memcpy(bytes + HDR - 8, &sum, 8);
}

/* The tiny fixture copied into dir as src (512 bytes) and dated back, its vocabulary v, its
 * tokens ref read without a cache, and the name its cache gets (600 bytes). 0, or -1 having
 * freed v when the tokens cannot be read. */
static int tiny_copy(char *src, char *cache, Vocab *v, Tokens *ref, const char *dir) {
    char err[512];
    snprintf(src, 512, "%s", copy_into(FIXTURES "/tiny.train.tokens", dir, "train.tokens"));
    backdate(src);
    CHECK(vocab_build(v, src, err, sizeof err) == 0, "%s", err);
    if (load_fresh(ref, src, v)) return vocab_free(v), -1;
    cache_path(cache, 600, src, v);
    return 0;
}

TEST(test_data_tokenize_fixture) {
    char err[512];
    Vocab v;
    int rc = vocab_build(&v, FIXTURES "/tiny.train.tokens", err, sizeof err);
    CHECK(rc == 0, "vocab_build: %s", err);
    if (rc) return;
    int nv = (int)(sizeof TINY_VOCAB / sizeof *TINY_VOCAB);
    CHECK(v.n == nv, "vocab size %d, expected %d", v.n, nv);
    for (int i = 0; i < nv && i < v.n; i++) {
        CHECK(strcmp(v.words[i], TINY_VOCAB[i]) == 0, "id %d is '%s', expected '%s'", i, v.words[i],
              TINY_VOCAB[i]);
        CHECK(v.counts[i] == TINY_COUNTS[i], "count of '%s' %lld, expected %lld", v.words[i],
              (long long)v.counts[i], (long long)TINY_COUNTS[i]);
        CHECK(vocab_id(&v, TINY_VOCAB[i]) == i, "vocab_id('%s')", TINY_VOCAB[i]);
    }
    CHECK(v.eos == 0 && v.unk == 7, "eos %d unk %d", v.eos, v.unk);
    CHECK(vocab_id(&v, "zebra") == -1 && vocab_id(&v, "") == -1, "absent words give -1");

    Tokens t;
    rc = tokens_load(&t, FIXTURES "/tiny.train.tokens", &v, 0, err, sizeof err);
    CHECK(rc == 0, "tokens_load: %s", err);
    size_t nt = sizeof TINY_TOKENS / sizeof *TINY_TOKENS;
    CHECK(rc == 0 && t.n == nt, "%zu tokens, expected %zu", t.n, nt);
    CHECK(t.n_unk == 0, "n_unk %zu on the vocabulary's own file", t.n_unk);
    for (size_t i = 0; rc == 0 && i < nt && i < t.n; i++)
        CHECK(strcmp(v.words[t.ids[i]], TINY_TOKENS[i]) == 0, "token %zu is '%s', expected '%s'", i,
              v.words[t.ids[i]], TINY_TOKENS[i]);
    tokens_free(&t);

    /* Building twice gives the same ids and hash: nothing depends on hash-table order. */
    Vocab v2;
    vocab_build(&v2, FIXTURES "/tiny.train.tokens", err, sizeof err);
    CHECK(v2.hash == v.hash && v2.n == v.n, "rebuilt vocabulary differs");
    vocab_free(&v2);
    vocab_free(&v);
}

TEST(test_data_line_endings) {
    /* Each case: text -> tokens including <eos>. The last line counts once with or without \n. */
    static const struct {
        const char *text;
        size_t tokens;
    } cases[] = {{"a b\n", 3}, {"a b", 3},    {"\n", 1},          {" ", 1},
                 {"a\n\n", 3}, {"a\n \n", 3}, {"\t a \t\n b", 4}, {"a\r\nb\r\n", 4},
                 {"a\n  ", 3}, {"\n\n\n", 3}, {"a\vb\fc", 4},     {"x y z \n", 4}};
    const char *dir = test_tmpdir("data_line_endings");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/f.tokens", dir);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        write_text(path, cases[c].text);
        Vocab v;
        Tokens t = {0};
        int rc = vocab_build(&v, path, err, sizeof err);
        if (rc == 0) rc = tokens_load(&t, path, &v, 0, err, sizeof err);
        CHECK(rc == 0 && t.n == cases[c].tokens, "case %zu: %zu tokens, expected %zu (%s)", c, t.n,
              cases[c].tokens, rc ? err : "");
        if (rc == 0) CHECK(t.ids[t.n - 1] == v.eos, "case %zu: last token is not <eos>", c);
        tokens_free(&t);
        vocab_free(&v);
    }
}

TEST(test_data_vocab_adds_unk) {
    /* A train file without "<unk>" still gets one: appended last with count 0. "<eos>" sorts
     * among the words by its count (one per line). */
    const char *dir = test_tmpdir("data_vocab_adds_unk");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/train.tokens", dir);
    write_text(path, "b a a\n");
    Vocab v;
    CHECK(vocab_build(&v, path, err, sizeof err) == 0, "%s", err);
    static const char *want[] = {"a", "<eos>", "b", "<unk>"};
    static const int64_t want_count[] = {2, 1, 1, 0};
    CHECK(v.n == 4, "vocab size %d, expected 4", v.n);
    for (int i = 0; i < 4 && i < v.n; i++)
        CHECK(strcmp(v.words[i], want[i]) == 0 && v.counts[i] == want_count[i],
              "id %d: '%s' %lld, expected '%s' %lld", i, v.words[i], (long long)v.counts[i],
              want[i], (long long)want_count[i]);
    CHECK(v.eos == 1 && v.unk == 3, "eos %d unk %d", v.eos, v.unk);
    vocab_free(&v);
}

TEST(test_data_vocab_many_words) {
    /* 200,000 distinct words: the hash table grows many times; ties (all count 2) must come out
     * in byte order and every word must be found again. */
    enum { N = 200000 };
    const char *dir = test_tmpdir("data_vocab_many_words");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/many.tokens", dir);
    FILE *f = fopen(path, "wb");
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < N; i++) fprintf(f, "w%d%c", i, i % 10 == 9 ? '\n' : ' ');
    fclose(f);
    Vocab v;
    CHECK(vocab_build(&v, path, err, sizeof err) == 0, "%s", err);
    CHECK(v.n == N + 2, "vocab size %d, expected %d", v.n, N + 2);
    int sorted = 1, found = 1;
    for (int i = 1; i + 1 < v.n; i++) sorted &= strcmp(v.words[i - 1], v.words[i]) < 0;
    for (int i = 0; i < v.n; i++) found &= vocab_id(&v, v.words[i]) == i;
    CHECK(sorted, "equal counts in byte order");
    CHECK(found, "every word maps back to its id");
    CHECK(strcmp(v.words[0], "<eos>") == 0 && v.counts[0] == 2 * N / 10, "<eos> first");
    CHECK(v.unk == N + 1 && v.counts[v.unk] == 0, "<unk> appended last");
    vocab_free(&v);
}

TEST(test_data_unk) {
    /* tiny.valid.tokens: " the zebra <unk> cat \n new words the \n" — "zebra" (the vocabulary
     * has "Zebra"), "new", "words" are unknown; the literal "<unk>" is a known word. */
    char err[512];
    Vocab v;
    Tokens t;
    CHECK(vocab_build(&v, FIXTURES "/tiny.train.tokens", err, sizeof err) == 0, "%s", err);
    int rc = tokens_load(&t, FIXTURES "/tiny.valid.tokens", &v, 0, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) return vocab_free(&v);
    int the = vocab_id(&v, "the"), cat = vocab_id(&v, "cat"), u = v.unk, e = v.eos;
    int32_t want[] = {the, u, u, cat, e, u, u, the, e};
    CHECK(t.n == 9 && memcmp(t.ids, want, sizeof want) == 0, "ids of the valid fixture");
    CHECK(t.n_unk == 3, "n_unk %zu, expected 3", t.n_unk);
    tokens_free(&t);
    vocab_free(&v);
}

TEST(test_data_vocab_roundtrip) {
    const char *dir = test_tmpdir("data_vocab_roundtrip");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    Vocab v, w;
    CHECK(vocab_build(&v, FIXTURES "/tiny.train.tokens", err, sizeof err) == 0, "%s", err);
    CHECK(vocab_save(&v, path, err, sizeof err) == 0, "vocab_save: %s", err);
    size_t len;
    char *text = read_file(path, &len);
    const char *want = "<eos>\nthe\na\nb\ncat\ndog\nsat\n<unk>\nZebra\nmat\non\n\377\n";
    CHECK(text && len == strlen(want) && memcmp(text, want, len) == 0,
          "saved file: one word a line");
    free(text);

    int rc = vocab_load(&w, path, err, sizeof err);
    CHECK(rc == 0, "vocab_load: %s", err);
    if (rc == 0) {
        CHECK(w.n == v.n && w.hash == v.hash, "loaded n %d hash %llx, saved n %d hash %llx", w.n,
              (unsigned long long)w.hash, v.n, (unsigned long long)v.hash);
        CHECK(w.eos == v.eos && w.unk == v.unk, "special ids survive");
        for (int i = 0; i < v.n && i < w.n; i++) {
            CHECK(strcmp(w.words[i], v.words[i]) == 0, "line %d: '%s' vs '%s'", i + 1, w.words[i],
                  v.words[i]);
            CHECK(w.counts[i] == 0, "loaded counts are 0");
            CHECK(vocab_id(&w, v.words[i]) == i, "vocab_id after load");
        }
        vocab_free(&w);
    }
    /* No final newline is fine; the hash depends on the words only. */
    write_text(path, "<eos>\nthe\na\nb\ncat\ndog\nsat\n<unk>\nZebra\nmat\non\n\377");
    CHECK(vocab_load(&w, path, err, sizeof err) == 0 && w.hash == v.hash, "no final newline");
    vocab_free(&w);
    /* A different order is a different mapping, hence a different hash. */
    write_text(path, "<unk>\n<eos>\n");
    Vocab a, b;
    CHECK(vocab_load(&a, path, err, sizeof err) == 0, "%s", err);
    write_text(path, "<eos>\n<unk>\n");
    CHECK(vocab_load(&b, path, err, sizeof err) == 0, "%s", err);
    CHECK(a.hash != b.hash, "order changes the hash");
    vocab_free(&a);
    vocab_free(&b);
    vocab_free(&v);
}

/* A malformed vocabulary file and the part of the one-line message that must name its fault. */
typedef struct {
    const char *text, *msg;
} Malformed;

/* Writes each case to dir/name and checks that load (vocab_load or vocab_load_counts) refuses it
 * with one line holding the case's message and the path. */
static void check_refused(int (*load)(Vocab *, const char *, char *, size_t), const char *dir,
                          const char *name, const Malformed *cases, size_t n_cases) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    for (size_t c = 0; c < n_cases; c++) {
        write_text(path, cases[c].text);
        Vocab v;
        err[0] = 0;
        int rc = load(&v, path, err, sizeof err);
        CHECK(rc == -1, "%s case %zu accepted", name, c);
        CHECK(strstr(err, cases[c].msg) && strstr(err, path) && !strchr(err, '\n'),
              "%s case %zu: message '%s' lacks '%s' or the path", name, c, err, cases[c].msg);
        if (rc == 0) vocab_free(&v);
    }
}

TEST(test_data_vocab_errors) {
    /* Each malformed file is refused with one line naming the file and the offending line. */
    static const Malformed cases[] = {
        {"", "is empty"},
        {"<eos>\n\n<unk>\n", "line 2: empty line"},
        {"<eos>\n<unk>\nthe 5\n", "line 3: whitespace inside"},
        {"<eos>\n<unk>\nthe\tx\n", "line 3: whitespace inside"},
        {"<eos>\r\n<unk>\r\n", "line 1: whitespace inside"},
        {"<eos>\n<unk>\nthe\nof\nthe\n", "line 5: duplicate word 'the' (first on line 3)"},
        {"<eos>\nthe\n", "no line '<unk>'"},
        {"the\n<unk>\n", "no line '<eos>'"},
    };
    check_refused(vocab_load, test_tmpdir("data_vocab_errors"), "vocab.txt", cases,
                  sizeof cases / sizeof *cases);
}

/* Writes TINY_VOCAB's words with TINY_COUNTS to path, in reverse order, with assorted
 * separators and line ends; drop (if not NULL) is left out. */
static void write_tiny_counts(const char *path, const char *drop) {
    static const char *sep[] = {" ", "\t", "  \t "}, *eol[] = {"\n", "\r\n", " \n"};
    char text[1024];
    size_t len = 0;
    int nv = (int)(sizeof TINY_VOCAB / sizeof *TINY_VOCAB);
    for (int i = nv - 1; i >= 0; i--) {
        if (drop && !strcmp(TINY_VOCAB[i], drop)) continue;
        len += (size_t)snprintf(text + len, sizeof text - len, "%s%s%lld%s", TINY_VOCAB[i],
                                sep[i % 3], (long long)TINY_COUNTS[i], i ? eol[i % 3] : "");
    }
    write_bytes(path, text, len); /* no final newline */
}

TEST(test_data_vocab_counts_equals_build) {
    /* A "word count" file holding a train file's counts, in any order, gives vocab_build's
     * vocabulary of that file: same ids, counts and hash. */
    const char *dir = test_tmpdir("data_vocab_counts_equals_build");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/counts.txt", dir);
    write_tiny_counts(path, NULL);
    Vocab b, c;
    CHECK(vocab_build(&b, FIXTURES "/tiny.train.tokens", err, sizeof err) == 0, "%s", err);
    int rc = vocab_load_counts(&c, path, err, sizeof err);
    CHECK(rc == 0, "vocab_load_counts: %s", err);
    if (rc) return vocab_free(&b);
    CHECK(c.n == b.n && c.hash == b.hash && c.eos == b.eos && c.unk == b.unk,
          "n %d/%d hash %llx/%llx eos %d/%d unk %d/%d", c.n, b.n, (unsigned long long)c.hash,
          (unsigned long long)b.hash, c.eos, b.eos, c.unk, b.unk);
    for (int i = 0; i < b.n && i < c.n; i++)
        CHECK(!strcmp(c.words[i], b.words[i]) && c.counts[i] == b.counts[i] &&
                  vocab_id(&c, b.words[i]) == i,
              "id %d: '%s' %lld, vocab_build has '%s' %lld", i, c.words[i], (long long)c.counts[i],
              b.words[i], (long long)b.counts[i]);
    vocab_free(&c);

    /* Without "<unk>" (count 1 in the file): appended last with count 0, like vocab_build. */
    write_tiny_counts(path, "<unk>");
    CHECK(vocab_load_counts(&c, path, err, sizeof err) == 0, "%s", err);
    CHECK(c.n == b.n && c.unk == c.n - 1 && c.counts[c.unk] == 0 && !strcmp(c.words[7], "Zebra"),
          "absent <unk>: id %d of %d, count %lld", c.unk, c.n, (long long)c.counts[c.unk]);
    vocab_free(&c);
    vocab_free(&b);
}

TEST(test_data_vocab_counts_order) {
    /* small.vocab: no <eos>, <unk> with a count, a tie (a/to 90), non-ASCII, file order not
     * sorted. <eos> goes to id 0 with count 0; everything else by count, ties in byte order. */
    static const char *want[] = {"<eos>", "the", ",",  ".",           "of",   "and",
                                 "<unk>", "in",  "a",  "to",          "was",  "is",
                                 "=",     "@-@", "\"", "caf\xc3\xa9", "Zebra"};
    static const int64_t want_count[] = {0,  500, 300, 250, 200, 150, 120, 100, 90,
                                         90, 60,  50,  40,  30,  20,  7,   5};
    char err[512];
    Vocab v;
    int rc = vocab_load_counts(&v, SMALL_VOCAB, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    int nw = (int)(sizeof want / sizeof *want);
    CHECK(v.n == nw && v.eos == 0 && v.unk == 6, "n %d eos %d unk %d", v.n, v.eos, v.unk);
    for (int i = 0; i < nw && i < v.n; i++)
        CHECK(!strcmp(v.words[i], want[i]) && v.counts[i] == want_count[i],
              "id %d: '%s' %lld, expected '%s' %lld", i, v.words[i], (long long)v.counts[i],
              want[i], (long long)want_count[i]);

    /* vocab_save then vocab_load: the same ids and hash. */
    const char *dir = test_tmpdir("data_vocab_counts_order");
    char path[512];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    Vocab w;
    CHECK(vocab_save(&v, path, err, sizeof err) == 0, "%s", err);
    rc = vocab_load(&w, path, err, sizeof err);
    CHECK(rc == 0 && w.n == v.n && w.hash == v.hash && w.eos == 0 && w.unk == 6, "round trip: %s",
          rc ? err : "different ids");
    if (rc == 0) vocab_free(&w);

    /* "<eos>" with a count sorts like any word; the largest count is accepted. */
    write_text(path, "b 3\n<eos> 5\na 9223372036854775807\n");
    rc = vocab_load_counts(&w, path, err, sizeof err);
    CHECK(rc == 0 && w.n == 4 && w.eos == 1 && w.counts[0] == INT64_MAX && w.unk == 3,
          "present <eos>: %s", rc ? err : "wrong ids");
    if (rc == 0) vocab_free(&w);
    vocab_free(&v);
}

TEST(test_data_vocab_counts_errors) {
    /* Each malformed file is refused with one line naming the file and the offending line. */
    static const Malformed cases[] = {
        {"", "is empty"},
        {"the 5\n\nof 3\n", "line 2: empty line"},
        {"the 5\r\n\r\n", "line 2: empty line"},
        {"the\n", "line 1: no count after 'the'"},
        {"the 5\nof \n", "line 2: no count after 'of'"},
        {"the\v5\n", "line 1: no count after 'the'"},
        {" the 5\n", "line 1: starts with whitespace"},
        {"the five\n", "line 1: count 'five' is not a non-negative integer"},
        {"the 5x\n", "line 1: count '5x' is not a non-negative integer"},
        {"the +5\n", "line 1: count '+5' is not a non-negative integer"},
        {"the 1.5\n", "line 1: count '1.5' is not a non-negative integer"},
        {"the -5\n", "line 1: count '-5' is negative"},
        {"the 9223372036854775808\n", "line 1: count '9223372036854775808' is too large"},
        {"the 5 6\n", "line 1: '6' after the count"},
        {"a 1\nthe 5 extra words\n", "line 2: 'extra words' after the count"},
        {"the 5\nof 3\nthe 2\n", "line 3: duplicate word 'the' (first on line 1)"},
        {"<unk> 5\n<unk> 3", "line 2: duplicate word '<unk>' (first on line 1)"},
    };
    const char *dir = test_tmpdir("data_vocab_counts_errors");
    check_refused(vocab_load_counts, dir, "counts.txt", cases, sizeof cases / sizeof *cases);
    char path[512], err[512];
    Vocab v;
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    CHECK(vocab_load_counts(&v, path, err, sizeof err) == -1 && strstr(err, "cannot read '") &&
              strstr(err, "No such file"),
          "missing file: '%s'", err);
    CHECK(vocab_load_counts(&v, dir, err, sizeof err) == -1 && strstr(err, "Is a directory"),
          "directory: '%s'", err);
}

TEST(test_data_file_errors) {
    const char *dir = test_tmpdir("data_file_errors");
    char path[512], empty[512], err[512], want[1024];
    snprintf(path, sizeof path, "%s/missing.tokens", dir);
    snprintf(want, sizeof want, "cannot read '%s': No such file or directory", path);
    Vocab v;
    Tokens t;
    CHECK(vocab_build(&v, path, err, sizeof err) == -1 && strcmp(err, want) == 0, "build: '%s'",
          err);
    CHECK(vocab_load(&v, path, err, sizeof err) == -1 && strcmp(err, want) == 0, "load: '%s'", err);
    CHECK(vocab_build(&v, dir, err, sizeof err) == -1 && strstr(err, "Is a directory"), "dir: '%s'",
          err);

    snprintf(empty, sizeof empty, "%s/empty.tokens", dir);
    write_text(empty, "");
    CHECK(vocab_build(&v, empty, err, sizeof err) == -1 && strstr(err, "is empty"), "'%s'", err);

    CHECK(vocab_build(&v, FIXTURES "/tiny.train.tokens", err, sizeof err) == 0, "%s", err);
    CHECK(tokens_load(&t, path, &v, 1, err, sizeof err) == -1 && strcmp(err, want) == 0,
          "tokens: '%s'", err);
    CHECK(t.ids == NULL && t.n == 0, "failed load leaves empty tokens");
    CHECK(tokens_load(&t, empty, &v, 1, err, sizeof err) == -1 && strstr(err, "is empty"), "'%s'",
          err);
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    snprintf(want, sizeof want, "%s/no-such-dir/vocab.txt", dir);
    CHECK(vocab_save(&v, want, err, sizeof err) == -1 && strstr(err, "cannot write '"), "'%s'",
          err);
    vocab_free(&v);
}

TEST(test_data_cache) {
    const char *dir = test_tmpdir("data_cache");
    char src[512], cache[600], err[512];
    Vocab v;
    Tokens ref, t;
    if (tiny_copy(src, cache, &v, &ref, dir)) return;
    CHECK(!file_exists(cache), "use_cache=0 writes no cache");
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref),
          "first cached load equals the uncached one");
    CHECK(ref.map == NULL && t.map != NULL, "uncached ids in memory, cached ones mapped");
    tokens_free(&t);
    CHECK(files_containing(dir, ".tmp.") == 0, "no temporary file left");
    CHECK(file_size(cache) == HDR + 4 * ref.n, "cache %s: %zu bytes, expected %zu", cache,
          file_size(cache), HDR + 4 * ref.n);

    /* The second load reads the cache: doctor its ids (keeping the header valid) and see them. */
    size_t len;
    char *bytes = read_file(cache, &len);
    CHECK(bytes && memcmp(bytes, "TSTOKv2\0", 8) == 0, "cache magic");
    int32_t *ids = (int32_t *)(void *)(bytes + HDR);
    for (size_t i = 0; i < ref.n; i++) ids[i] = v.eos;
    reseal(bytes, len);
    write_bytes(cache, bytes, len);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && t.n == ref.n && t.ids[3] == v.eos &&
              t.ids[0] == v.eos,
          "second load came from the cache");
    tokens_free(&t);

    /* Ids beyond the vocabulary (under a matching checksum): corrupted, rebuilt. */
    ids[0] = v.n;
    reseal(bytes, len);
    printf("  (a warning about '%s' follows)\n", cache);
    fflush(stdout);
    write_bytes(cache, bytes, len);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref),
          "out-of-range id -> rebuilt");
    tokens_free(&t);

    /* Truncated: rebuilt and rewritten whole. */
    write_bytes(cache, bytes, len - 4);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref),
          "truncated cache -> rebuilt");
    CHECK(file_size(cache) == len, "truncated cache rewritten");
    tokens_free(&t);

    /* Garbage of the right length, and a header-only stub. */
    for (size_t i = 0; i < len; i++) bytes[i] = (char)(i * 131 + 7);
    write_bytes(cache, bytes, len);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref),
          "garbage cache -> rebuilt");
    tokens_free(&t);
    write_bytes(cache, "TSTOKv2", 8);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref),
          "stub cache -> rebuilt");
    tokens_free(&t);
    free(bytes);

    /* Foreign: a cache written for another vocabulary, put under this vocabulary's name. */
    char other_src[512], other_cache[600];
    snprintf(other_src, sizeof other_src, "%s/other.vocab", dir);
    write_text(other_src, "<unk>\n<eos>\nthe\n");
    Vocab w;
    CHECK(vocab_load(&w, other_src, err, sizeof err) == 0, "%s", err);
    CHECK(tokens_load(&t, src, &w, 1, err, sizeof err) == 0, "%s", err);
    CHECK(t.n == ref.n && t.n_unk == 14, "other vocabulary: n_unk %zu, expected 14", t.n_unk);
    tokens_free(&t);
    cache_path(other_cache, sizeof other_cache, src, &w);
    CHECK(strcmp(other_cache, cache) != 0 && file_exists(other_cache), "one cache per vocabulary");
    CHECK(rename(other_cache, cache) == 0, "rename");
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref),
          "foreign cache -> rebuilt");
    tokens_free(&t);
    vocab_free(&w);

    /* Stale: the source changes, the cache must not be believed. (The fixture has no final
     * newline, so the appended text starts with one.) */
    FILE *f = fopen(src, "ab");
    fputs("\n the cat\n", f);
    fclose(f);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && t.n == ref.n + 3,
          "modified source -> rebuilt (%zu tokens, expected %zu)", t.n, ref.n + 3);
    CHECK(t.n > ref.n && memcmp(t.ids, ref.ids, 4 * ref.n) == 0, "old prefix, new tail");
    tokens_free(&t);
    tokens_free(&ref);
    vocab_free(&v);
}

TEST(test_data_cache_readonly_dir) {
    /* A folder marked read-only (as the shared data folder is) gets no cache, and no error —
     * even for root, who could write there. */
    const char *dir = test_tmpdir("data_cache_readonly");
    char src[512], cache[600], err[512];
    snprintf(src, sizeof src, "%s", copy_into(FIXTURES "/tiny.train.tokens", dir, "train.tokens"));
    Vocab v;
    Tokens t;
    CHECK(vocab_build(&v, src, err, sizeof err) == 0, "%s", err);
    chmod(dir, 0555);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && t.n == 26, "read-only: %s", err);
    cache_path(cache, sizeof cache, src, &v);
    CHECK(!file_exists(cache), "no cache in a read-only folder");
    chmod(dir, 0755);
    tokens_free(&t);
    vocab_free(&v);
}

/* Pseudo-random text over a small alphabet with every separator (space, \t, \r, \n, \v, \f,
 * NUL) and runs of long words, so chunk edges fall inside words, inside \r\n pairs, between
 * blank lines; it ends as `tail` says. */
static size_t edge_text(char *out, size_t len, const char *tail) {
    static const char alphabet[] = "abcab  \t\r\n\n\v\f";
    uint64_t key = 12345;
    size_t n = 0;
    while (n + 80 < len) {
        uint64_t r = hash64(key++);
        if (r % 23 == 0) /* a word longer than the small chunks */
            for (int k = 0; k < 40; k++) out[n++] = 'w';
        else if (r % 29 == 0)
            memcpy(out + n, "x\r\n", 3), n += 3;
        else if (r % 31 == 0)
            out[n++] = 0;
        else
            out[n++] = alphabet[(r >> 8) % (sizeof alphabet - 1)];
    }
    memcpy(out + n, tail, strlen(tail));
    return n + strlen(tail);
}

TEST(test_data_chunk_edges) {
    /* Reading in chunks of 1, 2, 3, ... bytes gives exactly the tokens and the vocabulary of
     * reading the file in one chunk — words, \r\n and line breaks straddling chunk edges, a last
     * line with or without \n — with and without writing a cache. */
    static const char *tails[] = {"end", "end\n", "end \n\n", "\r\n", " "};
    static const size_t chunks[] = {1, 2, 3, 4, 5, 7, 8, 13, 64, 1000};
    const char *dir = test_tmpdir("data_chunk_edges");
    char path[512], err[512], text[4096];
    snprintf(path, sizeof path, "%s/edges.tokens", dir);
    for (size_t k = 0; k < sizeof tails / sizeof *tails; k++) {
        write_bytes(path, text, edge_text(text, sizeof text, tails[k]));
        backdate(path);
        Vocab ref;
        Tokens want;
        data_set_chunk_bytes_for_tests(0);
        CHECK(vocab_build(&ref, path, err, sizeof err) == 0, "%s", err);
        if (load_fresh(&want, path, &ref)) return vocab_free(&ref);
        for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
            data_set_chunk_bytes_for_tests(chunks[c]);
            Vocab v;
            Tokens t, cached;
            CHECK(vocab_build(&v, path, err, sizeof err) == 0, "%s", err);
            int same = v.n == ref.n && v.hash == ref.hash;
            for (int i = 0; same && i < v.n; i++) same = v.counts[i] == ref.counts[i];
            CHECK(same, "tail %zu, chunk %zu: vocabulary differs", k, chunks[c]);
            vocab_free(&v);
            if (load_fresh(&t, path, &ref)) break;
            CHECK(tokens_equal(&t, &want), "tail %zu, chunk %zu: %zu tokens, whole file %zu", k,
                  chunks[c], t.n, want.n);
            tokens_free(&t);
            char cache[600];
            cache_path(cache, sizeof cache, path, &ref);
            remove(cache);
            CHECK(tokens_load(&cached, path, &ref, 1, err, sizeof err) == 0 && cached.map != NULL &&
                      tokens_equal(&cached, &want),
                  "tail %zu, chunk %zu: the cache written in chunks differs", k, chunks[c]);
            tokens_free(&cached);
        }
        tokens_free(&want);
        vocab_free(&ref);
    }
    /* The fixture, whose expected tokens are listed, in chunks of every size up to its length. */
    Vocab v;
    CHECK(vocab_build(&v, FIXTURES "/tiny.train.tokens", err, sizeof err) == 0, "%s", err);
    size_t nt = sizeof TINY_TOKENS / sizeof *TINY_TOKENS;
    for (size_t c = 1; c <= file_size(FIXTURES "/tiny.train.tokens"); c++) {
        data_set_chunk_bytes_for_tests(c);
        Tokens t;
        if (load_fresh(&t, FIXTURES "/tiny.train.tokens", &v)) break;
        int same = t.n == nt;
        for (size_t i = 0; same && i < nt; i++) same = !strcmp(v.words[t.ids[i]], TINY_TOKENS[i]);
        CHECK(same, "fixture in chunks of %zu bytes: %zu tokens, expected %zu", c, t.n, nt);
        tokens_free(&t);
    }
    data_set_chunk_bytes_for_tests(0);
    vocab_free(&v);
}

/* A cache for src (tokenized with v): built, then its ids all set to <eos> with the header
 * kept valid, so a load that returns <eos> everywhere came from this cache. */
static void doctored_cache(const char *src, const Vocab *v) {
    char cache[600], err[512];
    Tokens t;
    cache_path(cache, sizeof cache, src, v);
    remove(cache);
    CHECK(tokens_load(&t, src, v, 1, err, sizeof err) == 0 && t.map, "build: %s", err);
    tokens_free(&t);
    size_t len;
    char *bytes = read_file(cache, &len);
    if (!bytes) return;
    for (size_t i = HDR; i + 4 <= len; i += 4) memcpy(bytes + i, &v->eos, 4);
    reseal(bytes, len);
    write_bytes(cache, bytes, len);
    free(bytes);
}

static int all_eos(const Tokens *t, const Vocab *v) {
    int all = t->n > 0;
    for (size_t i = 0; all && i < t->n; i++) all = t->ids[i] == v->eos;
    return all;
}

TEST(test_data_cache_stale) {
    /* The cache is believed exactly when the source is unchanged: a new mtime, new content of
     * the same size, or a cache no newer than its source each mean "rebuild". */
    const char *dir = test_tmpdir("data_cache_stale");
    char src[512], cache[600], err[512];
    Vocab v;
    Tokens ref, t;
    if (tiny_copy(src, cache, &v, &ref, dir)) return;

    doctored_cache(src, &v);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && all_eos(&t, &v) && t.map,
          "an unchanged source uses its cache");
    tokens_free(&t);

    set_mtime(src, -50, 0); /* touched: same bytes, new mtime */
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref),
          "new mtime -> rebuilt");
    tokens_free(&t);

    /* Same size, other words ("cat" -> "dog" throughout), written now. */
    doctored_cache(src, &v);
    size_t len;
    char *text = read_file(src, &len);
    for (char *p = text; (p = strstr(p, "cat")); p++) memcpy(p, "dog", 3);
    write_bytes(src, text, len);
    free(text);
    Tokens dogs;
    if (load_fresh(&dogs, src, &v) == 0) {
        CHECK(dogs.n == ref.n && !tokens_equal(&dogs, &ref), "the edit changes the tokens");
        CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &dogs),
              "same size, new content -> rebuilt");
        tokens_free(&t);
        tokens_free(&dogs);
    }

    /* A cache whose mtime is not later than its source's may predate a rewrite in the same
     * clock tick: not believed. */
    backdate(src);
    doctored_cache(src, &v);
    struct stat st;
    stat(src, &st);
    struct timespec ts[2] = {{0, UTIME_OMIT}, st.st_mtim};
    CHECK(utimensat(AT_FDCWD, cache, ts, 0) == 0, "set the cache's mtime");
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && !all_eos(&t, &v),
          "cache as old as its source -> rebuilt");
    tokens_free(&t);
    CHECK(files_containing(dir, ".tmp.") == 0, "no temporary file left");
    tokens_free(&ref);
    vocab_free(&v);
}

/* A build killed before its rename (SIGKILL, power cut) leaves "<cache>.tmp.<pid>": the next
 * build removes it once that process is gone, and keeps one of a process that still runs. */
TEST(test_data_cache_dead_temp_removed) {
    const char *dir = test_tmpdir("data_cache_dead_temp");
    char src[512], cache[600], err[512], dead[700], alive[700];
    Vocab v;
    Tokens ref, t;
    if (tiny_copy(src, cache, &v, &ref, dir)) return;
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0); /* a pid that no longer runs */
    snprintf(dead, sizeof dead, "%s.tmp.%ld", cache, (long)child);
    snprintf(alive, sizeof alive, "%s.tmp.%ld", cache, (long)getppid());
    write_bytes(dead, "half a cache", 12);
    write_bytes(alive, "another build", 13);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref), "%s", err);
    tokens_free(&t);
    CHECK(!file_exists(dead), "%s (its process is gone) was not removed", dead);
    CHECK(file_exists(alive), "%s (its process runs) was removed", alive);
    unlink(alive);
    tokens_free(&ref);
    vocab_free(&v);
}

TEST(test_data_cache_truncated) {
    /* A cache cut anywhere — inside the header, right after it, inside an id — or with bytes
     * appended is rebuilt and rewritten whole; it is never mapped past its end. */
    const char *dir = test_tmpdir("data_cache_truncated");
    char src[512], cache[600], err[512];
    Vocab v;
    Tokens ref, t;
    if (tiny_copy(src, cache, &v, &ref, dir)) return;
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0, "%s", err);
    tokens_free(&t);
    size_t len;
    char *whole = read_file(cache, &len);
    if (!whole) return vocab_free(&v), tokens_free(&ref);
    char *longer = xcalloc(len + 4, 1);
    memcpy(longer, whole, len);
    size_t cuts[] = {0, 1, 30, HDR - 1, HDR, HDR + 1, HDR + 4, len - 4, len - 1, len + 4};
    for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
        write_bytes(cache, longer, cuts[k]);
        CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref),
              "cache cut to %zu of %zu bytes -> rebuilt", cuts[k], len);
        CHECK(file_size(cache) == len, "cut to %zu: cache rewritten whole", cuts[k]);
        tokens_free(&t);
    }
    free(longer);
    free(whole);
    tokens_free(&ref);
    vocab_free(&v);
}

/* An id changed inside a cache into another word of the vocabulary (a flipped bit that no range
 * check can see) is never used: the ids no longer match the header's checksum, so the cache is
 * rebuilt and rewritten. Also the last id (the checksum's tail) and a bit of the checksum. */
TEST(test_data_cache_flipped_id) {
    const char *dir = test_tmpdir("data_cache_flipped");
    char src[512], cache[600], err[512];
    Vocab v;
    Tokens ref, t;
    if (tiny_copy(src, cache, &v, &ref, dir)) return;
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && t.map, "%s", err);
    tokens_free(&t);
    size_t len;
    char *whole = read_file(cache, &len);
    if (!whole) return vocab_free(&v), tokens_free(&ref);
    const struct {
        size_t at;
        const char *what;
    } flips[] = {{HDR + 4 * 3, "id 3"}, {len - 4, "the last id"}, {HDR - 8, "the checksum"}};
    for (size_t k = 0; k < sizeof flips / sizeof *flips; k++) {
        char *bytes = xcalloc(len, 1);
        memcpy(bytes, whole, len);
        int32_t id;
        memcpy(&id, bytes + flips[k].at, 4);
        id = k < 2 ? (id + 1) % v.n : id ^ 1; /* an id stays inside the vocabulary */
        memcpy(bytes + flips[k].at, &id, 4);
        write_bytes(cache, bytes, len);
        printf("  (a warning about '%s' follows: %s changed)\n", cache, flips[k].what);
        fflush(stdout);
        CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref) && t.map,
              "%s changed: the tokens are not the source's (%s)", flips[k].what, err);
        tokens_free(&t);
        free(bytes);
        size_t again_len;
        char *again = read_file(cache, &again_len);
        CHECK(again && again_len == len && !memcmp(again, whole, len),
              "%s changed: the cache was not rewritten", flips[k].what);
        free(again);
    }
    free(whole);
    tokens_free(&ref);
    vocab_free(&v);
}

TEST(test_data_cache_unwritable) {
    /* When the cache cannot be written (here its name is taken by a folder), the load still
     * succeeds from memory and leaves no temporary file. The warning is expected. */
    const char *dir = test_tmpdir("data_cache_unwritable");
    char src[512], cache[600], err[512];
    Vocab v;
    Tokens ref, t;
    if (tiny_copy(src, cache, &v, &ref, dir)) return;
    mkdir_p(cache);
    printf("  (a warning about '%s' follows)\n", cache);
    fflush(stdout);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref) && !t.map,
          "unwritable cache: tokens from memory (%s)", err);
    CHECK(files_containing(dir, ".tmp.") == 0, "no temporary file left");
    tokens_free(&t);
    tokens_free(&ref);
    vocab_free(&v);
}

/* ids 0, 1, ..., n-1: a window's content tells where it came from. */
static Tokens iota_tokens(size_t n) {
    int32_t *ids = xcalloc(n, sizeof *ids);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)i;
    return (Tokens){.ids = ids, .n = n};
}

TEST(test_data_batcher_windows) {
    enum { T = 10, N = 105, W = (N - 1) / T, B = 3 };
    Tokens t = iota_tokens(N);
    Batcher b;
    batcher_init(&b, &t, T, 42);
    CHECK(b.n_windows == W, "n_windows %zu, expected %d", b.n_windows, W);
    int32_t in[B * T], tg[B * T];
    for (int epoch = 0; epoch < 3; epoch++) {
        int seen[W] = {0};
        for (int s = 0; s < W; s++) {
            batcher_get(&b, (uint64_t)(epoch * W + s), 1, in, tg);
            int ok = in[0] % T == 0;
            for (int j = 0; j < T; j++) ok &= in[j] == in[0] + j && tg[j] == in[j] + 1;
            CHECK(ok, "epoch %d seq %d: not a contiguous window with shifted targets", epoch, s);
            seen[in[0] / T]++;
        }
        int once = 1;
        for (int w = 0; w < W; w++) once &= seen[w] == 1;
        CHECK(once, "epoch %d: every window exactly once", epoch);
    }
    batcher_free(&b);
    tokens_free(&t);
}

/* Window starts of sequences s0 .. s0+count-1, fetched B at a time. */
static void window_starts(Batcher *b, uint64_t s0, int count, int B, int *out) {
    int32_t in[8 * 16], tg[8 * 16];
    for (int i = 0; i < count; i += B) {
        int k = count - i < B ? count - i : B;
        batcher_get(b, s0 + (uint64_t)i, k, in, tg);
        for (int j = 0; j < k; j++) out[i + j] = in[j * b->T];
    }
}

TEST(test_data_batcher_order) {
    enum { T = 16, N = 16 * 40 + 1, W = 40 };
    Tokens t = iota_tokens(N);
    Batcher a, b, c;
    batcher_init(&a, &t, T, 7);
    batcher_init(&b, &t, T, 7);
    batcher_init(&c, &t, T, 8);
    int ra[3 * W], rb[3 * W], rc[3 * W], rr[3 * W];
    window_starts(&a, 0, 3 * W, 1, ra);
    window_starts(&b, 0, 3 * W, 8, rb); /* batches cross epoch boundaries */
    window_starts(&c, 0, 3 * W, 1, rc);
    CHECK(memcmp(ra, rb, sizeof ra) == 0, "same seed, any batch size -> same order");
    CHECK(memcmp(ra, rc, sizeof ra) != 0, "different seed -> different order");
    CHECK(memcmp(ra, ra + W, W * sizeof *ra) != 0 && memcmp(ra + W, ra + 2 * W, W * sizeof *ra),
          "different epochs -> different orders");
    int identity = 1;
    for (int i = 0; i < W; i++) identity &= ra[i] == i * T;
    CHECK(!identity, "epoch 0 is shuffled");

    /* Resume: sequences fetched out of order, on a batcher that has seen other epochs, are
     * the ones a straight run saw. */
    Batcher d;
    batcher_init(&d, &t, T, 7);
    window_starts(&d, 2 * W + 5, 7, 3, rr);
    CHECK(memcmp(rr, ra + 2 * W + 5, 7 * sizeof *rr) == 0, "fresh batcher resumes at s");
    window_starts(&d, 3, 50, 4, rr);
    CHECK(memcmp(rr, ra + 3, 50 * sizeof *rr) == 0, "jumping back an epoch");
    window_starts(&a, W - 2, 4, 4, rr);
    CHECK(memcmp(rr, ra + W - 2, 4 * sizeof *rr) == 0, "batch across the epoch 0/1 boundary");
    batcher_free(&a), batcher_free(&b), batcher_free(&c), batcher_free(&d);
    tokens_free(&t);
}

TEST(test_data_batcher_short_corpus) {
    /* Fewer than T+1 tokens: no window; batcher_init must not crash and says so. */
    Tokens t = iota_tokens(10);
    Batcher b;
    batcher_init(&b, &t, 10, 1);
    CHECK(b.n_windows == 0, "10 tokens, T=10: n_windows %zu, expected 0", b.n_windows);
    batcher_free(&b);
    tokens_free(&t);
    t = iota_tokens(11);
    batcher_init(&b, &t, 10, 1);
    CHECK(b.n_windows == 1, "11 tokens, T=10: n_windows %zu, expected 1", b.n_windows);
    int32_t in[20], tg[20];
    batcher_get(&b, 5, 2, in, tg);
    CHECK(in[0] == 0 && in[10] == 0 && tg[9] == 10, "one window, every epoch");
    batcher_free(&b);
    tokens_free(&t);
}

/* A WikiText split's size: tokens (with <eos>) and words outside the train vocabulary. */
typedef struct {
    const char *split;
    size_t n, n_unk;
} SplitSize;

/* Each split's dir/wiki.<split>.tokens, read with v and without a cache (tests write only under
 * tests/tmp/), has the size listed. */
static void check_splits(const char *dir, const Vocab *v, const SplitSize *splits, int n) {
    char path[512], err[512];
    for (int k = 0; k < n; k++) {
        snprintf(path, sizeof path, "%s/wiki.%s.tokens", dir, splits[k].split);
        Tokens t;
        int rc = tokens_load(&t, path, v, 0, err, sizeof err);
        CHECK(rc == 0, "%s", err);
        CHECK(t.n == splits[k].n && t.n_unk == splits[k].n_unk,
              "%s: %zu tokens %zu unknown, expected %zu and %zu", path, t.n, t.n_unk, splits[k].n,
              splits[k].n_unk);
        tokens_free(&t);
    }
}

TEST(test_data_wikitext2) {
    if (!file_exists(WIKITEXT2 "/wiki.train.tokens")) {
        SKIP_NEED("wikitext-2", WIKITEXT2 " not found");
        return;
    }
    char err[512];
    Vocab v;
    double t0 = now_seconds();
    int rc = vocab_build(&v, WIKITEXT2 "/wiki.train.tokens", err, sizeof err);
    double build_s = now_seconds() - t0;
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    printf("  vocab_build of WikiText-2 train (10.8 MB): %.3f s\n", build_s);
    CHECK(build_s < 2.0, "vocab_build took %.2f s; it should be well under a second", build_s);
    CHECK(v.n == 33278, "vocabulary %d, expected 33,278", v.n);
    CHECK(v.counts[v.eos] == 36718, "<eos> count %lld, expected 36,718 lines",
          (long long)v.counts[v.eos]);
    CHECK(v.counts[v.unk] == 54625, "<unk> count %lld, expected 54,625",
          (long long)v.counts[v.unk]);
    CHECK(strcmp(v.words[0], "the") == 0 && v.counts[0] == 113161, "most frequent: '%s' %lld",
          v.words[0], (long long)v.counts[0]);

    static const SplitSize splits[] = {
        {"train", 2088628, 0}, {"valid", 217646, 0}, {"test", 245569, 0}};
    check_splits(WIKITEXT2, &v, splits, 3);

    /* The cache on real data: a copy of valid in tests/tmp, loaded twice. */
    const char *dir = test_tmpdir("data_wikitext2");
    char src[512];
    snprintf(src, sizeof src, "%s", copy_into(WIKITEXT2 "/wiki.valid.tokens", dir, "valid.tokens"));
    backdate(src);
    Tokens a, b;
    t0 = now_seconds();
    CHECK(tokens_load(&a, src, &v, 1, err, sizeof err) == 0, "%s", err);
    double t_build = now_seconds() - t0;
    t0 = now_seconds();
    CHECK(tokens_load(&b, src, &v, 1, err, sizeof err) == 0, "%s", err);
    double t_cached = now_seconds() - t0;
    printf("  valid: tokenize + write cache %.1f ms, load from cache %.1f ms\n", 1e3 * t_build,
           1e3 * t_cached);
    CHECK(tokens_equal(&a, &b) && a.n == 217646, "cached valid equals tokenized valid");
    CHECK(b.map != NULL, "second load mapped the cache");
    tokens_free(&a);
    tokens_free(&b);
    vocab_free(&v);
}

TEST(test_data_sample) {
    /* data/sample/ ships with the repository (see its README): the counts documented there. */
    static const SplitSize splits[] = {
        {"train", 152313, 0}, {"valid", 29470, 1785}, {"test", 5955, 500}};
    char err[512];
    Vocab v;
    int rc = vocab_build(&v, "data/sample/wiki.train.tokens", err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    CHECK(v.n == 12912, "sample vocabulary %d, expected 12,912", v.n);
    check_splits("data/sample", &v, splits, 3);
    vocab_free(&v);
}

TEST(test_data_wikitext103_vocab) {
    /* The shared full-train WikiText-103 vocabulary: 267,734 lines, no <eos>. */
    if (!file_exists(WT103 "/vocab.txt")) {
        SKIP_NEED("wikitext-103", WT103 "/vocab.txt not found");
        return;
    }
    char err[512];
    Vocab v;
    double t0 = now_seconds();
    int rc = vocab_load_counts(&v, WT103 "/vocab.txt", err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    printf("  vocab_load_counts of WikiText-103 (267,734 lines): %.3f s\n", now_seconds() - t0);
    CHECK(v.n == 267735, "vocabulary %d, expected 267,735", v.n);
    CHECK(v.eos == 0 && !strcmp(v.words[0], "<eos>") && v.counts[0] == 0, "<eos> at id 0");
    CHECK(!strcmp(v.words[1], "the") && v.counts[1] == 5584823, "id 1: '%s' %lld", v.words[1],
          (long long)v.counts[1]);
    CHECK(v.unk > 0 && v.counts[v.unk] == 441959, "<unk> count %lld, expected 441,959",
          v.unk > 0 ? (long long)v.counts[v.unk] : -1LL);
    int sorted = 1;
    for (int i = 2; i < v.n; i++) sorted &= v.counts[i] <= v.counts[i - 1];
    CHECK(sorted, "counts non-increasing after id 0");
    vocab_free(&v);
}

TEST(test_data_synthetic_corpus) {
    /* scripts/make_synthetic_corpus: exact size, only vocabulary words, deterministic per
     * seed, WikiText line format, atomic and careful about overwriting, one-line errors. */
    char out[OUT_LEN], err[512], path[600], other[600];
    if (sh(out, "command -v python3") != 0) {
        SKIP_NEED("python3", "python3 not on PATH");
        return;
    }
    const char *dir = test_tmpdir("data_synthetic_corpus");
    const char *make = "scripts/make_synthetic_corpus --vocab " SMALL_VOCAB " --tokens 20k";
    int rc = sh(out, "%s --out %s/a --seed 3 --valid-from data/sample", make, dir);
    CHECK(rc == 0 && out[0] == 0, "exit %d, output: %s", rc, out);
    CHECK(sh(out, "%s --out %s/b --seed 3", make, dir) == 0, "%s", out);
    snprintf(path, sizeof path, "%s/a/wiki.train.tokens", dir);
    snprintf(other, sizeof other, "%s/b/wiki.train.tokens", dir);
    CHECK(same_files(path, other), "same seed -> byte-identical");
    Vocab v;
    Tokens t;
    rc = vocab_load_counts(&v, SMALL_VOCAB, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    if (load_fresh(&t, path, &v) == 0) {
        CHECK(t.n >= 19980 && t.n <= 20020, "%zu tokens, expected 20,000 within 0.1%%", t.n);
        CHECK(t.n_unk == 0, "%zu words outside the vocabulary", t.n_unk);
        tokens_free(&t);
    }
    vocab_free(&v);
    size_t len;
    char *text = read_file(path, &len);
    int format = text && len > 0 && text[len - 1] == '\n';
    for (char *line = text; format && line < text + len; line = strchr(line, '\n') + 1)
        format = line[0] == ' ' && strchr(line, '\n')[-1] == ' ';
    CHECK(format, "every line is ' ', the tokens, ' \\n'");
    CHECK(text && strstr(text, "\n = ") && strstr(text, "\n = = ") && strstr(text, "\n \n"),
          "titles, headings and blank lines");
    free(text);
    snprintf(path, sizeof path, "%s/a/vocab.txt", dir);
    CHECK(same_files(path, SMALL_VOCAB), "vocab.txt is a copy of --vocab");
    snprintf(path, sizeof path, "%s/a/wiki.valid.tokens", dir);
    CHECK(same_files(path, "data/sample/wiki.valid.tokens"), "--valid-from copies valid");
    snprintf(path, sizeof path, "%s/a/README.md", dir);
    text = read_file(path, &len);
    CHECK(text && strstr(text, "SYNTHETIC") && strstr(text, "--seed 3") &&
              strstr(text, "CC BY-SA 3.0"),
          "README says synthetic, the command and the licence");
    free(text);

    /* Overwriting needs --force; errors are one line, exit 2, nothing written. */
    rc = sh(out, "%s --out %s/b --seed 4", make, dir);
    CHECK(rc == 2 && strstr(out, "exists") && count_lines(out) == 1, "no --force: %d %s", rc, out);
    CHECK(sh(out, "%s --out %s/b --seed 4 --force", make, dir) == 0, "--force: %s", out);
    snprintf(path, sizeof path, "%s/a/wiki.train.tokens", dir);
    CHECK(!same_files(path, other) && file_exists(other), "another seed -> another text");
    snprintf(path, sizeof path, "%s/bad.vocab", dir);
    write_text(path, "the 5\nof\nand 3\n");
    rc = sh(out, "scripts/make_synthetic_corpus --vocab %s --tokens 1k --out %s/d", path, dir);
    CHECK(rc == 2 && strstr(out, "line 2") && strstr(out, path) && count_lines(out) == 1,
          "malformed vocabulary: %d %s", rc, out);
    rc = sh(out, "%s --out %s/d --tokens 12q", make, dir);
    CHECK(rc == 2 && strstr(out, "--tokens '12q'") && count_lines(out) == 1, "bad N: %d %s", rc,
          out);
    rc = sh(out, "scripts/make_synthetic_corpus --vocab %s/none --tokens 1k --out %s/d", dir, dir);
    CHECK(rc == 2 && strstr(out, "none") && count_lines(out) == 1, "missing vocab: %d %s", rc, out);
    snprintf(path, sizeof path, "%s/d", dir);
    CHECK(!file_exists(path), "failed runs write nothing");
    snprintf(path, sizeof path, "%s/b", dir);
    CHECK(files_containing(path, ".tmp") == 0, "no temporary files");
}
