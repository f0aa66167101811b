/* data.h — WikiText token streams: vocabulary, tokenization with a memory-mapped binary cache,
 * batching.
 *
 * Tokenization follows the corpus convention (and fairseq's): split each line on whitespace and
 * append "<eos>" to every line, blank lines included — WikiText-2 train is then 2,088,628 tokens.
 * The vocabulary comes from the train split, or from a "word count" file (vocab_load_counts),
 * sorted by count (descending) with ties broken by byte order of the word, so it is the same on
 * every machine. It always holds "<eos>" and "<unk>"; unknown words of other splits map to
 * "<unk>" and are counted. Text files are read in chunks of a few MB, never whole, so a 540 MB
 * training file costs its vocabulary and its token ids in memory, not its text. */
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
int vocab_load(Vocab *v, const char *vocab_txt, char *err, size_t n); /* one word per line */
/* A "word count" vocabulary (WikiText-103's vocab.txt, fairseq's dict.txt): one entry a line,
 * a word (no whitespace), one or more spaces or tabs, a non-negative decimal count; a CRLF line
 * end is accepted, and trailing spaces or tabs too. The file's order does not matter: ids are
 * assigned in vocab_build's order (count descending, ties in byte order), so a file holding the
 * counts of a train file gives exactly vocab_build's vocabulary of that file.
 *   "<eos>" absent: added at id 0 with count 0 (its count is unknown; every line ends in one, so
 *                   it is among the most frequent tokens and belongs in an adaptive softmax's
 *                   head). Present: sorted by its count like any word.
 *   "<unk>" absent: appended last with count 0, as vocab_build does. Present: sorted by count.
 * Refused, with one line naming the file and line: an empty line, a missing, non-numeric,
 * negative or too large count, a field after the count, a duplicate word (naming its first
 * line); also an empty or unreadable file. The shared WikiText-103 vocab.txt gives 267,735 ids. */
int vocab_load_counts(Vocab *v, const char *path, char *err, size_t n);
int vocab_save(const Vocab *v, const char *path, char *err, size_t n); /* atomic write */
int vocab_id(const Vocab *v, const char *word);                        /* -1 if absent */
void vocab_free(Vocab *v);

typedef struct {
    const int32_t *ids; /* read-only: usually a view into the mapped cache file */
    size_t n;
    size_t n_unk; /* words not in the vocabulary, mapped to <unk> */
    void *map;    /* private: the mapped cache (NULL: ids was malloc'd), and its length */
    size_t map_bytes;
} Tokens;

/* Tokenize path with v. With use_cache, the ids are kept in "<path>.<vocab hash>.cache" when the
 * directory is writable, and read back by memory-mapping it: a later start costs validation
 * passes over the ids, not a tokenization, and the ids use page cache, not heap. The cache header
 * records the source size and mtime, the vocabulary hash and a checksum of the ids; a stale,
 * truncated, foreign or damaged cache, or one not strictly newer than its source (data.c says
 * why), is rebuilt. Without a cache the ids are tokenized into memory. Sources over 64 MB report
 * progress on stderr. 0, or -1 with a message. */
int tokens_load(Tokens *t, const char *path, const Vocab *v, int use_cache, char *err, size_t n);
void tokens_free(Tokens *t);
/* A prompt's ids (malloc'd, *n of them): tokenized as training text is (whitespace split,
 * unknown words -> <unk>, counted in *n_unk, every newline an <eos>), except that a last line
 * without a newline adds no <eos>: a prompt goes on where it stops. */
int32_t *tokens_from_text(const Vocab *v, const char *text, size_t *n, size_t *n_unk);

/* A token cache is a TOKEN_CACHE_HEADER_BYTES header, whose last 8 bytes hold
 * token_checksum(ids, n), then the n ids. A cache whose ids do not match its checksum (a flipped
 * bit, even one that leaves every id in range) is rebuilt, with a warning. The checksum is a
 * 64-bit hash of the ids read as 8-byte words; public so tests can write a cache with ids of
 * their choosing that loads. */
#define TOKEN_CACHE_HEADER_BYTES 64
uint64_t token_checksum(const int32_t *ids, size_t n);

/* Tests only: read text in chunks of this many bytes (0: the default) to exercise words and
 * lines that straddle chunk boundaries. */
void data_set_chunk_bytes_for_tests(size_t bytes);

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
