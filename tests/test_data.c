/* test_data.c — the data module as a specification: tokenization counts, vocabulary order,
 * <unk>, vocabulary files, the token cache (reuse, staleness, corruption, read-only folders),
 * the batcher's shuffle and resume property, and the published WikiText-2 statistics when the
 * shared corpus is beside the repository. Fixtures: tests/fixtures/data/tiny.*.tokens. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../src/data/data.h"
#include "../src/util/util.h"

#define FIXTURES  "tests/fixtures/data"
#define WIKITEXT2 "../shared/data/wikitext-2"

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

TEST(test_data_vocab_errors) {
    /* Each malformed file is refused with one line naming the file and the offending line. */
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"", "is empty"},
        {"<eos>\n\n<unk>\n", "line 2: empty line"},
        {"<eos>\n<unk>\nthe 5\n", "line 3: whitespace inside"},
        {"<eos>\n<unk>\nthe\tx\n", "line 3: whitespace inside"},
        {"<eos>\r\n<unk>\r\n", "line 1: whitespace inside"},
        {"<eos>\n<unk>\nthe\nof\nthe\n", "line 5: duplicate word 'the' (first on line 3)"},
        {"<eos>\nthe\n", "no line '<unk>'"},
        {"the\n<unk>\n", "no line '<eos>'"},
    };
    const char *dir = test_tmpdir("data_vocab_errors");
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        write_text(path, cases[c].text);
        Vocab v;
        err[0] = 0;
        int rc = vocab_load(&v, path, err, sizeof err);
        CHECK(rc == -1, "case %zu accepted", c);
        CHECK(strstr(err, cases[c].msg) && strstr(err, path) && !strchr(err, '\n'),
              "case %zu: message '%s' lacks '%s' or the path", c, err, cases[c].msg);
        if (rc == 0) vocab_free(&v);
    }
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
    snprintf(src, sizeof src, "%s", copy_into(FIXTURES "/tiny.train.tokens", dir, "train.tokens"));
    Vocab v;
    CHECK(vocab_build(&v, src, err, sizeof err) == 0, "%s", err);
    cache_path(cache, sizeof cache, src, &v);

    Tokens ref, t;
    CHECK(tokens_load(&ref, src, &v, 0, err, sizeof err) == 0, "%s", err);
    CHECK(!file_exists(cache), "use_cache=0 writes no cache");
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && tokens_equal(&t, &ref),
          "first cached load equals the uncached one");
    tokens_free(&t);
    CHECK(file_size(cache) == 56 + 4 * ref.n, "cache %s: %zu bytes, expected %zu", cache,
          file_size(cache), 56 + 4 * ref.n);

    /* The second load reads the cache: doctor its ids (keeping the header valid) and see them. */
    size_t len;
    char *bytes = read_file(cache, &len);
    CHECK(bytes && memcmp(bytes, "TSTOKv1\0", 8) == 0, "cache magic");
    int32_t *ids = (int32_t *)(void *)(bytes + 56);
    for (size_t i = 0; i < ref.n; i++) ids[i] = v.eos;
    write_bytes(cache, bytes, len);
    CHECK(tokens_load(&t, src, &v, 1, err, sizeof err) == 0 && t.n == ref.n && t.ids[3] == v.eos &&
              t.ids[0] == v.eos,
          "second load came from the cache");
    tokens_free(&t);

    /* Ids beyond the vocabulary: corrupted, rebuilt. */
    ids[0] = v.n;
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
    write_bytes(cache, "TSTOKv1", 8);
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

/* ids 0, 1, ..., n-1: a window's content tells where it came from. */
static Tokens iota_tokens(size_t n) {
    Tokens t = {xcalloc(n, sizeof(int32_t)), n, 0};
    for (size_t i = 0; i < n; i++) t.ids[i] = (int32_t)i;
    return t;
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

TEST(test_data_wikitext2) {
    if (!file_exists(WIKITEXT2 "/wiki.train.tokens")) {
        printf("  skip: " WIKITEXT2 " not found\n");
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

    static const struct {
        const char *split;
        size_t n;
    } splits[] = {{"train", 2088628}, {"valid", 217646}, {"test", 245569}};
    for (int k = 0; k < 3; k++) {
        char path[256];
        snprintf(path, sizeof path, WIKITEXT2 "/wiki.%s.tokens", splits[k].split);
        Tokens t;
        /* No cache: tests write only under tests/tmp/. */
        rc = tokens_load(&t, path, &v, 0, err, sizeof err);
        CHECK(rc == 0, "%s", err);
        CHECK(t.n == splits[k].n, "%s: %zu tokens, expected %zu", splits[k].split, t.n,
              splits[k].n);
        CHECK(t.n_unk == 0, "%s: %zu words outside the train vocabulary", splits[k].split, t.n_unk);
        tokens_free(&t);
    }

    /* The cache on real data: a copy of valid in tests/tmp, loaded twice. */
    const char *dir = test_tmpdir("data_wikitext2");
    char src[512];
    snprintf(src, sizeof src, "%s", copy_into(WIKITEXT2 "/wiki.valid.tokens", dir, "valid.tokens"));
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
    tokens_free(&a);
    tokens_free(&b);
    vocab_free(&v);
}

TEST(test_data_sample) {
    /* data/sample/ ships with the repository (see its README): the counts documented there. */
    static const struct {
        const char *split;
        size_t n, n_unk;
    } splits[] = {{"train", 152313, 0}, {"valid", 29470, 1785}, {"test", 5955, 500}};
    char err[512];
    Vocab v;
    int rc = vocab_build(&v, "data/sample/wiki.train.tokens", err, sizeof err);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    CHECK(v.n == 12912, "sample vocabulary %d, expected 12,912", v.n);
    for (int k = 0; k < 3; k++) {
        char path[256];
        snprintf(path, sizeof path, "data/sample/wiki.%s.tokens", splits[k].split);
        Tokens t;
        rc = tokens_load(&t, path, &v, 0, err, sizeof err);
        CHECK(rc == 0, "%s", err);
        CHECK(t.n == splits[k].n && t.n_unk == splits[k].n_unk,
              "sample %s: %zu tokens %zu unknown, expected %zu and %zu", splits[k].split, t.n,
              t.n_unk, splits[k].n, splits[k].n_unk);
        tokens_free(&t);
    }
    vocab_free(&v);
}
