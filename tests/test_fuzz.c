/* test_fuzz.c — seeded mutation fuzzers for the two readers of users' files: the safetensors
 * loader and the config parser (file text and --set assignments), plus a few mutated
 * checkpoints through the real ./eval.
 *
 * Each case starts from a valid input (a checkpoint written by st_write with every dtype and
 * metadata, a PyTorch reference fixture, the shipped configs), applies 1 to 4 mutations drawn
 * from a random stream keyed by (seed, case), and asserts only that the outcome is clean:
 * either a refusal with a non-empty one-line message, or a result that is valid in every way
 * we can check (every tensor's bytes inside the file, readable, and together covering the data
 * section exactly; a config that passes validation again after printing). Crashes and
 * undefined behaviour are the sanitizers' part: under make test-asan any report aborts.
 *
 * The mutations are byte-level (bit flips, interesting bytes, truncation, insertion, deletion,
 * splicing two inputs) and structure-aware (the header-length field moved by ±1 or ±8 or set
 * huge, numbers replaced by edge cases and non-JSON spellings, a member duplicated, escapes and
 * invalid UTF-8 put into strings, deep nesting); edits inside a safetensors header usually fix
 * up the length field so that the checks behind it are reached.
 *
 * TRAINSHORT_FUZZ_CASES=N runs N cases per fuzzer (default 2000), TRAINSHORT_FUZZ_SEED=S another
 * seed. Cases are independent, so a failure, printed with its seed, case number and mutations
 * and saved under tests/tmp/fuzz/, is replayed by the same seed. */
#include "test.h"

#include <glob.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/util/util.h"
#include "fuzz_common.h"

#define DEFAULT_CASES 2000
#define DEFAULT_SEED  20240917

/* ---- an input under mutation ---- */

typedef struct {
    const char *name;
    unsigned char *p;
    size_t n;
} Seed;

typedef struct {
    unsigned char *p;
    size_t n, cap;
    size_t lo, hi;   /* the region most mutations aim at: the header, or the whole text */
    int st;          /* a safetensors file: bytes 0..7 are the header length */
    int region_only; /* aim inside the region only */
    uint64_t rng;
    const Seed *seeds; /* the other inputs, for splicing */
    int n_seeds;
    char log[800]; /* the mutations applied, for the failure message */
} Input;

/* p[n] is always 0, so the bytes can be read as a C string (config text, strtoull). */
static void input_init(Input *in, const Seed *from, int st, uint64_t key) {
    const unsigned char *p = from->p;
    size_t n = from->n;
    *in = (Input){0};
    in->cap = n + 64;
    in->p = malloc(in->cap);
    memcpy(in->p, p, n);
    in->p[n] = 0;
    in->n = n;
    in->st = st;
    in->lo = 0;
    in->hi = n;
    in->rng = key;
    in->log[0] = 0;
    if (st && n >= 8) {
        uint64_t h = 0;
        for (int i = 0; i < 8; i++) h |= (uint64_t)in->p[i] << (8 * i);
        in->lo = 8;
        in->hi = 8 + h <= n ? 8 + h : n;
    }
}

static uint64_t next(Input *in) {
    in->rng += 0x9E3779B97F4A7C15ull;
    return hash64(in->rng);
}

static size_t below(Input *in, size_t n) {
    return n ? (size_t)(next(in) % n) : 0;
}

__attribute__((format(printf, 2, 3))) static void note(Input *in, const char *fmt, ...) {
    size_t used = strlen(in->log);
    if (used + 2 >= sizeof in->log) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(in->log + used, sizeof in->log - used, fmt, ap);
    va_end(ap);
}

/* Replaces p[at, at + del) by ins[0, len). With fix, an edit inside a safetensors header moves
 * the length field with it, so the checks behind the length check are reached. */
static void edit(Input *in, size_t at, size_t del, const void *ins, size_t len, int fix) {
    int in_header = in->st && at >= in->lo && at <= in->hi;
    if (at > in->n) at = in->n;
    if (del > in->n - at) del = in->n - at;
    if (fix && in_header && del > in->hi - at) del = in->hi - at;
    if (in->n - del + len + 1 > in->cap) {
        in->cap = 2 * (in->n + len) + 64;
        in->p = realloc(in->p, in->cap);
    }
    memmove(in->p + at + len, in->p + at + del, in->n - at - del);
    memcpy(in->p + at, ins, len);
    in->n = in->n - del + len;
    in->p[in->n] = 0;
    if (fix && in_header) {
        uint64_t h = in->hi - 8 - del + len;
        for (int i = 0; i < 8; i++) in->p[i] = (unsigned char)(h >> (8 * i));
    }
    if (in_header || !in->st) in->hi = in->hi - del + len;
    if (in->hi > in->n) in->hi = in->n;
}

/* A position: three times in four inside the region, else anywhere. */
static size_t aim(Input *in) {
    if (in->hi > in->lo && (in->region_only || below(in, 4)))
        return in->lo + below(in, in->hi - in->lo);
    return below(in, in->n + 1);
}

/* The first byte at or after a random aimed position that is in set; SIZE_MAX if none. */
static size_t find_from(Input *in, const char *set) {
    for (size_t i = aim(in); i < in->hi; i++)
        if (in->p[i] && strchr(set, in->p[i])) return i;
    return SIZE_MAX;
}

/* ---- byte-level mutations ---- */

static const unsigned char interesting[] = {0,    0xFF, 0x7F, 0x80, '"', '\\', '{',  '}', '[',
                                            ']',  ',',  ':',  '0',  '9', '-',  'e',  '.', ' ',
                                            '\n', 0xC0, 0xED, 0xF4, 'n', 't',  0x01, 'u'};

static void m_flip(Input *in) {
    if (!in->n) return;
    size_t at = aim(in) % in->n;
    int bit = (int)below(in, 8);
    in->p[at] ^= (unsigned char)(1u << bit);
    note(in, "flip@%zu.%d ", at, bit);
}

static void m_set_byte(Input *in) {
    if (!in->n) return;
    size_t at = aim(in) % in->n;
    in->p[at] = interesting[below(in, sizeof interesting)];
    note(in, "set@%zu=0x%02X ", at, in->p[at]);
}

static void m_truncate(Input *in) {
    size_t keep = below(in, 4) ? aim(in) : in->n - (in->n > 0);
    note(in, "truncate@%zu ", keep);
    edit(in, keep, in->n, "", 0, 0);
}

static void m_insert(Input *in) {
    unsigned char b[8];
    size_t at = aim(in), len = 1 + below(in, 8);
    for (size_t i = 0; i < len; i++)
        b[i] = below(in, 2) ? interesting[below(in, sizeof interesting)] : (unsigned char)next(in);
    int fix = (int)below(in, 2);
    note(in, "insert@%zu+%zu%s ", at, len, fix ? "(fixed)" : "");
    edit(in, at, 0, b, len, fix);
}

static void m_delete(Input *in) {
    size_t at = aim(in), len = 1 + below(in, 16);
    int fix = (int)below(in, 2);
    note(in, "delete@%zu-%zu%s ", at, len, fix ? "(fixed)" : "");
    edit(in, at, len, "", 0, fix);
}

static void set_length(Input *in, uint64_t v) {
    for (int i = 0; i < 8; i++) in->p[i] = (unsigned char)(v >> (8 * i));
    note(in, "length=%llu ", (unsigned long long)v);
}

static void m_length_by(Input *in, int64_t delta) {
    set_length(in, in->hi - 8 + (uint64_t)delta);
}

/* The header-length field: one off, eight off, or a value no file can hold. */
static void m_length(Input *in) {
    if (!in->st || in->n < 8) return m_flip(in);
    static const int64_t deltas[] = {-1, 1, -8, 8, -2, 2};
    uint64_t h = in->hi - 8, v;
    size_t k = below(in, 10);
    if (k < 6)
        v = h + (uint64_t)deltas[k];
    else
        v = k == 6 ? UINT64_MAX : k == 7 ? 100000001 : k == 8 ? (uint64_t)1 << 63 : in->n - 8;
    set_length(in, v);
}

/* ---- structure-aware mutations ---- */

/* A number (the digit run found from a random position) replaced by an edge case. */
static void m_number(Input *in) {
    static const char *tokens[] = {"0",
                                   "01",
                                   "-0",
                                   "1.",
                                   ".5",
                                   "+1",
                                   "1e999",
                                   "-1",
                                   "2.5",
                                   "1e3",
                                   "NaN",
                                   "0x",
                                   "-",
                                   "9007199254740993",
                                   "",
                                   "1e-400",
                                   "4294967296",
                                   "18446744073709551616",
                                   "99999999999999999999999"};
    size_t at = find_from(in, "0123456789");
    if (at == SIZE_MAX) return m_set_byte(in);
    size_t end = at;
    while (end < in->hi && in->p[end] && strchr("0123456789.eE+-", in->p[end])) end++;
    char tok[48];
    size_t k = below(in, sizeof tokens / sizeof *tokens + 3);
    if (k < sizeof tokens / sizeof *tokens)
        snprintf(tok, sizeof tok, "%s", tokens[k]);
    else /* one off the original, or any count below the file size */
        snprintf(tok, sizeof tok, "%llu",
                 k == sizeof tokens / sizeof *tokens ? (unsigned long long)below(in, in->n + 1)
                                                     : strtoull((char *)in->p + at, NULL, 10) + 1);
    note(in, "number@%zu='%s' ", at, tok);
    edit(in, at, end - at, tok, strlen(tok), 1);
}

/* The member after a random '{' is written twice: a duplicate key, at any depth. */
static void m_duplicate(Input *in) {
    size_t open = find_from(in, "{");
    if (open == SIZE_MAX) return m_insert(in);
    size_t s = open + 1, e = s;
    int depth = 0, quoted = 0;
    for (; e < in->hi; e++) {
        unsigned char b = in->p[e];
        if (quoted) {
            if (b == '\\')
                e++;
            else if (b == '"')
                quoted = 0;
        } else if (b == '"') {
            quoted = 1;
        } else if (b == '{' || b == '[') {
            depth++;
        } else if ((b == '}' || b == ']') && depth-- == 0) {
            break;
        } else if (b == ',' && depth == 0) {
            break;
        }
    }
    if (e >= in->hi || e == s) return m_insert(in);
    size_t len = e - s;
    unsigned char *copy = malloc(len + 1);
    memcpy(copy, in->p + s, len);
    copy[len] = ',';
    note(in, "duplicate@%zu+%zu ", s, len);
    edit(in, s, 0, copy, len + 1, 1);
    free(copy);
}

/* Something put at the end of a random string (before a quote that closes one): an escape
 * (valid, NUL, lone surrogate, bad) or raw bytes that are not UTF-8. */
static void m_string(Input *in) {
    static const char *tokens[] = {
        "\\u0000",  "\\ud800",      "\\udc00",  "\\u0041", "\\ud83d\\ude00",
        "\xc3\xa9", "\xed\xa0\x80", "\xc0\xaf", "\xff",    "\\x",
        "\\n",      "\n",           "\\",       "\\u12",   "\xef\xbb\xbf"};
    size_t at = find_from(in, "\"");
    while (at < in->hi && !strchr(":,}]", in->p[at + 1])) at++; /* a closing quote */
    if (at >= in->hi) return m_insert(in);
    const char *tok = tokens[below(in, sizeof tokens / sizeof *tokens)];
    note(in, "string@%zu ", at);
    edit(in, at, 0, tok, strlen(tok), 1);
}

/* Both data_offsets of an entry moved by the same amount: the size still fits the shape, and
 * what is left to find is a gap, an overlap or a tensor past the end. */
static void m_shift_offsets(Input *in) {
    static const long deltas[] = {-8, -4, -1, 1, 4, 8, 1000};
    const char *key = "\"data_offsets\":[";
    size_t at = aim(in);
    char *hit = at < in->n ? strstr((char *)in->p + at, key) : NULL;
    if (!hit) hit = strstr((char *)in->p, key);
    unsigned long long b, e;
    int used = 0;
    if (!hit || sscanf(hit + strlen(key), "%llu,%llu]%n", &b, &e, &used) != 2 || !used)
        return m_number(in);
    long d = deltas[below(in, sizeof deltas / sizeof *deltas)];
    char tok[64];
    snprintf(tok, sizeof tok, "%lld,%lld]", (long long)b + d, (long long)e + d);
    size_t from = (size_t)(hit - (char *)in->p) + strlen(key);
    note(in, "shift@%zu%+ld ", from, d);
    edit(in, from, (size_t)used, tok, strlen(tok), 1);
}

/* A value inside arrays nested around the cJSON and json_check limits. */
static void m_nest(Input *in) {
    static const int depths[] = {JSON_MAX_DEPTH - 2, JSON_MAX_DEPTH, JSON_MAX_DEPTH + 1, 1001};
    size_t at = find_from(in, ":");
    if (at == SIZE_MAX) return m_insert(in);
    int d = depths[below(in, sizeof depths / sizeof *depths)];
    char *t = malloc(2 * (size_t)d + 2);
    memset(t, '[', (size_t)d);
    t[d] = '0';
    memset(t + d + 1, ']', (size_t)d);
    note(in, "nest@%zu*%d ", at + 1, d);
    /* in front of the old value, so the text stays well-formed only where it held one value */
    edit(in, at + 1, 0, t, 2 * (size_t)d + 1, 1);
    free(t);
}

/* ---- the engine ---- */

/* Another seed's tail spliced onto this input's head. */
static void m_splice(Input *in) {
    if (!in->n_seeds) return m_flip(in);
    const Seed *o = &in->seeds[below(in, (size_t)in->n_seeds)];
    size_t at = aim(in), from = below(in, o->n + 1);
    note(in, "splice@%zu+%s@%zu ", at, o->name, from);
    edit(in, at, in->n, o->p + from, o->n - from, 0);
}

/* The mutators, each as often as it appears. */
static void (*const mutators[])(Input *) = {
    m_flip,   m_set_byte, m_truncate,  m_insert, m_delete,        m_length, m_splice,
    m_number, m_number,   m_duplicate, m_string, m_shift_offsets, m_string, m_nest,
};

static void mutate(Input *in) {
    int rounds = below(in, 2) ? 1 : 2 + (int)below(in, 3); /* a single edit reaches deepest */
    for (int r = 0; r < rounds; r++) mutators[below(in, sizeof mutators / sizeof *mutators)](in);
}

/* A failing case: the message names seed, case and mutations; the input is kept for replay. */
static void keep_input(const char *kind, long k, const Input *in, char *path, size_t n) {
    char dir[64];
    snprintf(dir, sizeof dir, "tests/tmp/fuzz");
    mkdir_p(dir);
    snprintf(path, n, "%s/%s-case%ld.bin", dir, kind, k);
    if (write_file_atomic(path, in->p, in->n)) snprintf(path, n, "(not saved)");
}

/* ---- (a) safetensors ---- */

enum { REFUSED, LOADED, BROKEN }; /* the outcomes of a case; BROKEN fails the test */

static int st_case(const Input *in, char *why, size_t n) {
    unsigned char *buf = malloc(in->n ? in->n : 1);
    memcpy(buf, in->p, in->n);
    char err[1024] = "";
    StFile *f = st_open_buffer(buf, in->n, "fuzz.safetensors", err, sizeof err);
    if (f) {
        int outcome = st_sound(f, buf, in->n, why, n) ? LOADED : BROKEN;
        st_close(f);
        return outcome;
    }
    if (one_line(err) && !strncmp(err, "fuzz.safetensors: ", 18)) return REFUSED;
    snprintf(why, n, "bad message '%s'", err);
    return BROKEN;
}

static Seed written_seed(void) {
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/seed.safetensors", test_tmpdir("fuzz_seed"));
    CHECK(fuzz_write_seed(path, err, sizeof err) == 0, "st_write: %s", err);
    Seed s = {"written", NULL, 0};
    s.p = (unsigned char *)read_file(path, &s.n);
    return s;
}

/* Runs the cases of one fuzzer; counts[outcome] receives how many ended each way. */
typedef int (*CaseFn)(const Input *in, char *why, size_t n, void *ctx);

static void run_cases(const char *kind, const Seed *seeds, int n_seeds, int st, CaseFn fn,
                      void *ctx, long counts[3]) {
    long cases = test_env_long("TRAINSHORT_FUZZ_CASES", DEFAULT_CASES);
    uint64_t seed = (uint64_t)test_env_long("TRAINSHORT_FUZZ_SEED", DEFAULT_SEED);
    for (long k = 0; k < cases && counts[BROKEN] < 5; k++) {
        Input in;
        const Seed *from = &seeds[k % n_seeds];
        input_init(&in, from, st, rng_key(seed, (uint64_t)k));
        in.seeds = seeds;
        in.n_seeds = n_seeds;
        mutate(&in);
        char why[600] = "", path[128] = "";
        int outcome = fn(&in, why, sizeof why, ctx);
        if (outcome == BROKEN) keep_input(kind, k, &in, path, sizeof path);
        CHECK(outcome != BROKEN,
              "%s fuzz: seed %llu case %ld (from %s): %s; mutations: %s; input: %s", kind,
              (unsigned long long)seed, k, from->name, why, in.log, path);
        counts[outcome]++;
        free(in.p);
    }
    printf("  %s fuzz, seed %llu: %ld cases, %ld accepted, %ld refused\n", kind,
           (unsigned long long)seed, counts[0] + counts[1] + counts[2], counts[LOADED],
           counts[REFUSED]);
}

static int st_case_fn(const Input *in, char *why, size_t n, void *ctx) {
    (void)ctx;
    return st_case(in, why, n);
}

TEST(test_fuzz_safetensors_loader) {
    Seed seeds[2] = {written_seed(), {"fixture", NULL, 0}};
    seeds[1].p = (unsigned char *)read_file(
        "tests/ref/fixtures/sinusoidal_gelu_final_h2.safetensors", &seeds[1].n);
    CHECK(seeds[0].p && seeds[1].p, "the seed files cannot be read");
    for (int s = 0; s < 2 && seeds[s].p; s++) {
        Input in;
        input_init(&in, &seeds[s], 1, 0);
        char why[256] = "";
        CHECK(st_case(&in, why, sizeof why) == LOADED, "seed %s does not load: %s", seeds[s].name,
              why);
        free(in.p);
    }
    long counts[3] = {0, 0, 0};
    if (seeds[0].p && seeds[1].p) run_cases("safetensors", seeds, 2, 1, st_case_fn, NULL, counts);
    /* a fuzzer whose every case is refused at the first check tests nothing behind it */
    CHECK(counts[LOADED] > 0 && counts[REFUSED] > 0, "outcomes: %ld loaded, %ld refused",
          counts[LOADED], counts[REFUSED]);
    free(seeds[0].p);
    free(seeds[1].p);
}

/* ---- (b) configs ---- */

static int config_case_fn(const Input *in, char *why, size_t n, void *ctx) {
    (void)ctx;
    Config c;
    char err[1024] = "";
    /* the text as a C string: a NUL byte ends it, as config_from_text's callers do */
    if (config_from_text(&c, (const char *)in->p, "fuzz.json", err, sizeof err) == 0) {
        int outcome = config_sound(&c, why, n) ? LOADED : BROKEN;
        config_free(&c);
        return outcome;
    }
    if (one_line(err) && !strncmp(err, "fuzz.json", 9)) return REFUSED;
    snprintf(why, n, "bad message '%s'", err);
    return BROKEN;
}

/* The shipped configs (and the fixture runs' resolved ones) as seeds; frees with free_seeds. */
static int config_seeds(Seed *seeds, int max) {
    glob_t g;
    int n = 0;
    if (glob("configs/*.json", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc && n < max; i++) {
            seeds[n].name = xstrdup(g.gl_pathv[i]);
            seeds[n].p = (unsigned char *)read_file(g.gl_pathv[i], &seeds[n].n);
            n += seeds[n].p != NULL;
        }
        globfree(&g);
    }
    return n;
}

static void free_seeds(Seed *seeds, int n) {
    for (int i = 0; i < n; i++) {
        free((char *)seeds[i].name);
        free(seeds[i].p);
    }
}

TEST(test_fuzz_config_parser) {
    Seed seeds[64];
    int n = config_seeds(seeds, 64);
    CHECK(n >= 20, "only %d shipped configs found", n);
    long counts[3] = {0, 0, 0};
    if (n) run_cases("config", seeds, n, 0, config_case_fn, NULL, counts);
    CHECK(counts[LOADED] > 0 && counts[REFUSED] > 0, "outcomes: %ld loaded, %ld refused",
          counts[LOADED], counts[REFUSED]);
    free_seeds(seeds, n);
}

/* --set: a failure leaves the config as it was; a success leaves a valid config. */
static int set_case_fn(const Input *in, char *why, size_t n, void *ctx) {
    Config *base = ctx, c;
    char err[1024] = "", *before = config_to_json(base);
    CHECK(config_from_text(&c, before, "base", err, sizeof err) == 0, "base: %s", err);
    /* argv strings hold no NUL; the assignment is the text up to the first one */
    int rc = config_set(&c, (const char *)in->p, err, sizeof err), outcome = REFUSED;
    if (rc == 0) {
        outcome = config_sound(&c, why, n) ? LOADED : BROKEN;
    } else {
        char *after = config_to_json(&c);
        if (!one_line(err) || strncmp(err, "--set ", 6) || strcmp(before, after)) {
            snprintf(why, n, "bad failure: '%s'%s", err,
                     strcmp(before, after) ? " and the config changed" : "");
            outcome = BROKEN;
        }
        free(after);
    }
    config_free(&c);
    free(before);
    return outcome;
}

TEST(test_fuzz_config_set) {
    static const char *assignments[] = {
        "train.lr=3e-4",
        "model.position.type=alibi",
        "model.output.cutoffs=[100, 200]",
        "model.output={\"type\": \"adaptive\", \"cutoffs\": [10], \"factor\": 2}",
        "model.position={\"type\": \"rotary\", \"scaling\": \"yarn\", \"factor\": 4}",
        "data.dir=data/wikitext-103",
        "model.activation=\"swiglu\"",
        "train.steps=5",
        "model.n_heads=4",
        "model.final_norm=false",
        "model.position.slopes=[0.5, 0.25, 0.125, 0.0625]",
        "train.schedule=inverse_sqrt",
    };
    enum { N = sizeof assignments / sizeof *assignments };
    Seed seeds[N];
    for (int i = 0; i < N; i++)
        seeds[i] = (Seed){assignments[i], (unsigned char *)assignments[i], strlen(assignments[i])};
    Config base;
    char err[1024];
    CHECK(config_from_file(&base, "configs/quick.json", err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < N; i++) {
        Config c;
        CHECK(config_from_file(&c, "configs/quick.json", err, sizeof err) == 0, "%s", err);
        CHECK(config_set(&c, assignments[i], err, sizeof err) == 0, "seed %s: %s", assignments[i],
              err);
        config_free(&c);
    }
    long counts[3] = {0, 0, 0};
    run_cases("set", seeds, N, 0, set_case_fn, &base, counts);
    CHECK(counts[LOADED] > 0 && counts[REFUSED] > 0, "outcomes: %ld accepted, %ld refused",
          counts[LOADED], counts[REFUSED]);
    config_free(&base);
}

/* ---- (c) mutated checkpoints through ./eval ---- */

/* ./eval on dir/bad, whose model.safetensors is in: exit 0 with finite numbers, or exit 2 with
 * one line "error: ...". With want, the loader must refuse it with a message containing want. */
static void eval_case(const char *dir, const Input *in, const char *want, const char *what) {
    char out[OUT_LEN], path[600];
    snprintf(path, sizeof path, "%s/bad/model.safetensors", dir);
    CHECK(write_file_atomic(path, in->p, in->n) == 0, "write %s", path);
    int rc = sh(out, "./eval --ckpt %s/bad --lvalid 16", dir);
    if (rc == 0 && !want) {
        CHECK(!strstr(out, "nan") && !strstr(out, "inf"), "%s: eval printed %s", what, out);
        return;
    }
    expect_user_error(rc, out, "error: ", want, NULL, what);
}

/* Puts text right after the first occurrence of after in the header, length field fixed. */
static void insert_after(Input *in, const char *after, const char *text) {
    char *hit = strstr((char *)in->p + 8, after);
    if (hit) edit(in, (size_t)(hit - (char *)in->p) + strlen(after), 0, text, strlen(text), 1);
    CHECK(hit != NULL, "'%s' is not in the header", after);
}

TEST(test_fuzz_eval_mutated_checkpoints) {
    char dir[256], out[OUT_LEN], path[600];
    cli_scratch("fuzz_eval", dir, sizeof dir);
    cli_tiny_config(dir, "\"position\": {\"type\": \"alibi\"}");
    if (sh(out, "./train --config %s/cfg.json --out %s/run && cp -r %s/run %s/bad", dir, dir, dir,
           dir)) {
        CHECK(0, "training the tiny run: %s", out);
        return;
    }
    snprintf(path, sizeof path, "%s/run/model.safetensors", dir);
    Seed model = {"model.safetensors", NULL, 0};
    model.p = (unsigned char *)read_file(path, &model.n);
    if (!model.p) return;
    /* the first was accepted before, every weight a byte off, and evaluated to nan */
    static const char *damages[][2] = {
        {"length-1", "1 trailing bytes"},
        {"length+1", "header byte"},
        {"a trailing byte", "1 trailing bytes"},
        {"truncated", "truncated: tensor"},
        {"duplicate dtype", "duplicate key 'dtype' in 'tok_emb.weight'"},
        {"dtype F32\\u0000", "\\u0000 is not allowed"},
    };
    for (int k = 0; k < 6; k++) {
        Input in;
        input_init(&in, &model, 1, 0);
        if (k == 0) edit(&in, in.hi, 0, "        ", 8, 1); /* padded: -1 keeps the JSON whole */
        if (k < 2) m_length_by(&in, k ? 1 : -1);
        if (k == 2) edit(&in, in.n, 0, "", 1, 0);
        if (k == 3) edit(&in, in.n - 1, 1, "", 0, 0);
        if (k == 4) insert_after(&in, "\"tok_emb.weight\":{", "\"dtype\":\"F32\",");
        if (k == 5) insert_after(&in, "\"dtype\":\"F32", "\\u0000");
        eval_case(dir, &in, damages[k][1], damages[k][0]);
        free(in.p);
    }
    /* a weight made NaN or infinite anywhere in the data: the model loader refuses it, naming
     * the tensor (it used to evaluate to nan with exit 0) */
    uint64_t seed = (uint64_t)test_env_long("TRAINSHORT_FUZZ_SEED", DEFAULT_SEED);
    static const uint32_t non_finite[] = {0x7fc00000u, 0x7f800000u, 0xff800000u, 0xffffffffu};
    for (long k = 0; k < 8; k++) {
        Input in;
        input_init(&in, &model, 1, rng_key(seed, (uint64_t)k + 2000000));
        size_t floats = (in.n - in.hi) / 4, at = in.hi + 4 * below(&in, floats);
        uint32_t bits = non_finite[below(&in, 4)];
        memcpy(in.p + at, &bits, 4); /* the data section starts 8-byte aligned */
        char what[160];
        snprintf(what, sizeof what, "eval fuzz seed %llu: float at byte %zu set to 0x%08x",
                 (unsigned long long)seed, at, bits);
        eval_case(dir, &in, "non-finite", what);
        free(in.p);
    }
    /* and a few seeded edits of the header */
    for (long k = 0; k < 6; k++) {
        Input in;
        input_init(&in, &model, 1, rng_key(seed, (uint64_t)k + 1000000));
        in.region_only = 1;
        static void (*const header_edits[])(Input *) = {m_number, m_duplicate, m_string,
                                                        m_shift_offsets, m_set_byte};
        header_edits[below(&in, 5)](&in);
        char what[900];
        snprintf(what, sizeof what, "eval fuzz seed %llu case %ld: %s", (unsigned long long)seed, k,
                 in.log);
        eval_case(dir, &in, NULL, what);
        free(in.p);
    }
    free(model.p);
}
