/* data.h — WikiText token streams: vocabulary, tokenization with a binary cache, batching.
 *
 * Tokenization follows the corpus convention (and fairseq's): split each line on whitespace and
 * append "<eos>" to every line, blank lines included — WikiText-2 train is then 2,088,628 tokens.
 * The vocabulary comes from the train split, sorted by count (descending) with ties broken by
 * byte order of the word, so it is the same on every machine. It always holds "<eos>" and
 * "<unk>"; unknown words of other splits map to "<unk>" and are counted. */
#ifndef DATA_H
#define DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char **words;    /* id -> word */
    int64_t *counts; /* id -> count in the source (0 for an added "<unk>") */
    int n;
    int eos, unk;  /* ids of "<eos>" and "<unk>" */
    uint64_t hash; /* of the word list, identifies the id mapping in token caches */
    void *index;   /* word -> id lookup (private) */
} Vocab;

/* 0, or -1 with a one-line message naming the file. */
int vocab_build(Vocab *v, const char *train_path, char *err, size_t n);
int vocab_load(Vocab *v, const char *vocab_txt, char *err, size_t n);  /* one word per line */
int vocab_save(const Vocab *v, const char *path, char *err, size_t n); /* atomic write */
int vocab_id(const Vocab *v, const char *word);                        /* -1 if absent */
void vocab_free(Vocab *v);

typedef struct {
    int32_t *ids;
    size_t n;
    size_t n_unk; /* words not in the vocabulary, mapped to <unk> */
} Tokens;

/* Tokenize path with v. With use_cache, ids are cached in "<path>.<vocab hash>.cache" when the
 * directory is writable; the cache header records the source size and mtime and the vocabulary
 * hash, and a stale, truncated or foreign cache is rebuilt. 0, or -1 with a message. */
int tokens_load(Tokens *t, const char *path, const Vocab *v, int use_cache, char *err, size_t n);
void tokens_free(Tokens *t);

/* Training windows: window w covers inputs ids[w*T .. w*T+T) and targets shifted by one, so
 * there are (n-1)/T windows. Sequence s of the whole run (s = 0, 1, 2, ...) is window
 * perm_e[s % W] of epoch e = s / W, where perm_e is a shuffle seeded by (seed, e). The batch
 * depends only on s, so a resumed run sees exactly the batches it would have seen. */
typedef struct {
    const Tokens *tok;
    int T;
    uint64_t seed;
    size_t n_windows;
    int64_t epoch;  /* epoch of perm (-1: none yet) */
    uint32_t *perm; /* n_windows entries */
} Batcher;

void batcher_init(Batcher *b, const Tokens *t, int T, uint64_t seed);
/* Fill B sequences starting at global sequence index s: inputs, targets: (B, T). */
void batcher_get(Batcher *b, uint64_t s, int B, int32_t *inputs, int32_t *targets);
void batcher_free(Batcher *b);

#endif
