/* json_check.c — the strict JSON checker (see json_check.h).
 *
 * A recursive-descent pass over RFC 8259's grammar (section numbers below are the RFC's). It
 * builds no tree: it only decodes object keys, into one arena, and puts each into one hash
 * set together with the id of its object, so a duplicate is found in constant expected time
 * however many keys an object has. The nesting frames remember the key (or array index) on
 * the way down, which names where a duplicate is ("duplicate key 'type' in
 * 'model.position'"). */
#include "json_check.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"

typedef struct {
    size_t off, len; /* bytes [off, off + len) of the arena */
} Span;

typedef struct {
    int is_object;
    size_t index; /* arrays: the element being checked */
    Span key;     /* objects: the key whose value is being checked */
    uint64_t id;  /* objects: tags the object's keys in the set */
} Frame;

typedef struct {
    uint64_t hash, object; /* object 0 marks an empty slot (ids start at 1) */
    Span key;
} Slot;

typedef struct {
    const unsigned char *s;
    size_t n, i; /* the text, its length, the cursor */
    int flags, depth;
    Frame frame[JSON_MAX_DEPTH];
    uint64_t objects; /* objects entered so far: the last id given */
    char *arena;      /* decoded keys */
    size_t arena_len, arena_cap;
    Slot *slot; /* open addressing; a power of two, at most half full */
    size_t n_slots, used;
    size_t *pos;
    char *err;
    size_t errlen;
} Checker;

static int check_value(Checker *c);

/* ---- errors ---- */

__attribute__((format(printf, 3, 4))) static int fail(Checker *c, size_t at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    *c->pos = at;
    return -1;
}

/* What stands at the cursor, for "expected X, got Y". */
static void what_is_here(const Checker *c, char *out, size_t n) {
    if (c->i >= c->n) {
        snprintf(out, n, "the end of the text");
        return;
    }
    unsigned char b = c->s[c->i];
    if (b == '\'')
        snprintf(out, n, "a single quote (JSON strings use double quotes)");
    else if (b >= 0x20 && b < 0x7F)
        snprintf(out, n, "'%c'", b);
    else
        snprintf(out, n, "byte 0x%02X", b);
}

static int expected(Checker *c, const char *what) {
    char got[64];
    what_is_here(c, got, sizeof got);
    return fail(c, c->i, "expected %s, got %s", what, got);
}

/* Decoded text as one printable line: control characters as \u00XX, cut (at a character
 * boundary, with "...") to fit n bytes, n >= 12. */
static void put_text(char *out, size_t n, const char *p, size_t len) {
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)p[i];
        /* a character takes at most 6 bytes here, so "..." and the NUL always fit */
        if ((b & 0xC0) != 0x80 && n - k < 12) {
            memcpy(out + k, "...", 3);
            k += 3;
            break;
        }
        if (b < 0x20 || b == 0x7F)
            k += (size_t)snprintf(out + k, n - k, "\\u%04X", b);
        else
            out[k++] = (char)b;
    }
    out[k] = 0;
}

/* The keys and indices leading to frame `depth` (excluded), dotted: "model.position". */
static void put_path(const Checker *c, int depth, char *out, size_t n) {
    size_t k = 0;
    out[0] = 0;
    for (int d = 0; d < depth && k < n; d++) {
        const Frame *f = &c->frame[d];
        char part[64];
        if (f->is_object)
            put_text(part, sizeof part, c->arena + f->key.off, f->key.len);
        else
            snprintf(part, sizeof part, "[%zu]", f->index);
        int dot = k > 0 && f->is_object;
        k += (size_t)snprintf(out + k, n - k, "%s%s", dot ? "." : "", part);
    }
}

static int duplicate(Checker *c, size_t at) {
    char key[96], path[160];
    const Frame *f = &c->frame[c->depth - 1];
    put_text(key, sizeof key, c->arena + f->key.off, f->key.len);
    if (c->depth == 1) return fail(c, at, "duplicate key '%s'", key);
    put_path(c, c->depth - 1, path, sizeof path);
    return fail(c, at, "duplicate key '%s' in '%s'", key, path);
}

/* ---- the key set ---- */

static void arena_put(Checker *c, const void *p, size_t k) {
    if (c->arena_len + k > c->arena_cap) {
        c->arena_cap = 2 * (c->arena_len + k) + 64;
        c->arena = realloc(c->arena, c->arena_cap);
        if (!c->arena) sys_error("out of memory checking JSON");
    }
    memcpy(c->arena + c->arena_len, p, k);
    c->arena_len += k;
}

/* FNV-1a over the bytes, seeded by the object, then a full-avalanche mix for the low bits
 * that index the table. */
static uint64_t key_hash(const char *p, size_t len, uint64_t object) {
    uint64_t h = 0xcbf29ce484222325ull ^ object;
    for (size_t k = 0; k < len; k++) h = (h ^ (unsigned char)p[k]) * 0x100000001b3ull;
    return hash64(h);
}

static void grow(Checker *c) {
    size_t n = c->n_slots ? 2 * c->n_slots : 64;
    Slot *s = xcalloc(n, sizeof *s);
    for (size_t k = 0; k < c->n_slots; k++) {
        if (!c->slot[k].object) continue;
        size_t j = c->slot[k].hash & (n - 1);
        while (s[j].object) j = (j + 1) & (n - 1);
        s[j] = c->slot[k];
    }
    free(c->slot);
    c->slot = s;
    c->n_slots = n;
}

/* Adds the key just decoded into f->key to f's object; a duplicate is an error at byte at. */
static int add_key(Checker *c, const Frame *f, size_t at) {
    if (2 * (c->used + 1) > c->n_slots) grow(c);
    const char *p = c->arena + f->key.off;
    uint64_t h = key_hash(p, f->key.len, f->id);
    size_t mask = c->n_slots - 1, j = h & mask;
    for (; c->slot[j].object; j = (j + 1) & mask) {
        const Slot *s = &c->slot[j];
        if (s->hash == h && s->object == f->id && s->key.len == f->key.len &&
            !memcmp(c->arena + s->key.off, p, f->key.len))
            return duplicate(c, at);
    }
    c->slot[j] = (Slot){h, f->id, f->key};
    c->used++;
    return 0;
}

/* ---- strings (section 7) ---- */

static size_t bad_utf8(Checker *c, const char *what, unsigned char b) {
    fail(c, c->i, "invalid UTF-8: %s (byte 0x%02X)", what, b);
    return 0;
}

/* The length of the valid multi-byte UTF-8 character at the cursor (RFC 3629 section 4: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0 after failing. */
static size_t utf8_length(Checker *c) {
    const unsigned char *p = c->s + c->i;
    size_t left = c->n - c->i, k = 4;
    unsigned char b = p[0], lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (b < 0xC0) return bad_utf8(c, "a stray continuation byte", b);
    if (b < 0xC2) return bad_utf8(c, "an overlong encoding", b);
    if (b > 0xF4) return bad_utf8(c, "a byte UTF-8 never uses", b);
    if (b < 0xE0) k = 2;
    if (b >= 0xE0 && b < 0xF0) k = 3;
    if (b == 0xE0) lo = 0xA0; /* E0 80..9F would be overlong */
    if (b == 0xED) hi = 0x9F; /* ED A0..BF would be a surrogate */
    if (b == 0xF0) lo = 0x90; /* F0 80..8F would be overlong */
    if (b == 0xF4) hi = 0x8F; /* F4 90.. would be above U+10FFFF */
    for (size_t j = 1; j < k; j++)
        if (j >= left || (p[j] & 0xC0) != 0x80)
            return bad_utf8(c, "a character that ends early", b);
    if (p[1] >= lo && p[1] <= hi) return k;
    return bad_utf8(c,
                    b == 0xED   ? "an encoded UTF-16 surrogate"
                    : b == 0xF4 ? "a code point above U+10FFFF"
                                : "an overlong encoding",
                    b);
}

static void put_utf8(Checker *c, unsigned u) {
    unsigned char b[4];
    size_t k;
    if (u < 0x80)
        b[0] = (unsigned char)u, k = 1;
    else if (u < 0x800)
        b[0] = (unsigned char)(0xC0 | u >> 6), b[1] = (unsigned char)(0x80 | (u & 0x3F)), k = 2;
    else if (u < 0x10000)
        b[0] = (unsigned char)(0xE0 | u >> 12), b[1] = (unsigned char)(0x80 | (u >> 6 & 0x3F)),
        b[2] = (unsigned char)(0x80 | (u & 0x3F)), k = 3;
    else
        b[0] = (unsigned char)(0xF0 | u >> 18), b[1] = (unsigned char)(0x80 | (u >> 12 & 0x3F)),
        b[2] = (unsigned char)(0x80 | (u >> 6 & 0x3F)), b[3] = (unsigned char)(0x80 | (u & 0x3F)),
        k = 4;
    arena_put(c, b, k);
}

/* The 4 hex digits at byte at into *u; -1 if there are not 4. */
static int hex4(const Checker *c, size_t at, unsigned *u) {
    *u = 0;
    if (at > c->n || c->n - at < 4) return -1;
    for (size_t k = at; k < at + 4; k++) {
        unsigned char h = c->s[k];
        unsigned v = h >= '0' && h <= '9'   ? h - '0'
                     : h >= 'a' && h <= 'f' ? h - 'a' + 10
                     : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                            : 16;
        if (v == 16) return -1;
        *u = *u << 4 | v;
    }
    return 0;
}

/* \uXXXX at the cursor, with the low half of a surrogate pair after a high half. */
static int check_u_escape(Checker *c, Span *key) {
    size_t at = c->i;
    unsigned u, lo;
    if (hex4(c, at + 2, &u)) return fail(c, at, "\\u must be followed by 4 hex digits");
    c->i += 6;
    if (u == 0) return fail(c, at, "\\u0000 is not allowed: a NUL would cut the string short");
    if (u >= 0xDC00 && u <= 0xDFFF)
        return fail(c, at, "\\u%04X is the low half of a surrogate pair without a high half", u);
    if (u >= 0xD800 && u <= 0xDBFF) {
        int paired = c->n - c->i >= 6 && c->s[c->i] == '\\' && c->s[c->i + 1] == 'u' &&
                     !hex4(c, c->i + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF;
        if (!paired)
            return fail(c, at, "\\u%04X is the high half of a surrogate pair without a low half",
                        u);
        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        c->i += 6;
    }
    if (key) put_utf8(c, u);
    return 0;
}

static int check_escape(Checker *c, Span *key) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    unsigned char e = c->i + 1 < c->n ? c->s[c->i + 1] : 0;
    const char *hit = e ? strchr(from, e) : NULL;
    if (e == 'u') return check_u_escape(c, key);
    if (!hit) {
        if (e >= 0x20 && e < 0x7F) return fail(c, c->i, "invalid escape '\\%c'", e);
        return fail(c, c->i, "invalid escape: a backslash before %s",
                    c->i + 1 < c->n ? "a control or non-ASCII byte" : "the end of the text");
    }
    if (key) arena_put(c, &to[hit - from], 1);
    c->i += 2;
    return 0;
}

/* An ASCII byte that stands for itself in a string. */
static int is_plain(unsigned char b) {
    return b >= 0x20 && b < 0x80 && b != '"' && b != '\\';
}

/* The string whose opening quote is at the cursor. With key, its decoded bytes go to the
 * arena and *key spans them. */
static int check_string(Checker *c, Span *key) {
    size_t start = c->i++;
    if (key) key->off = c->arena_len;
    for (;;) {
        if (c->i >= c->n) return fail(c, start, "unterminated string");
        unsigned char b = c->s[c->i];
        size_t at = c->i, k = 1;
        if (b == '"') break;
        if (b == '\\') {
            if (check_escape(c, key)) return -1;
            continue;
        }
        if (b < 0x20) return fail(c, at, "unescaped control character 0x%02X in a string", b);
        if (b >= 0x80 && !(k = utf8_length(c))) return -1;
        while (b < 0x80 && at + k < c->n && is_plain(c->s[at + k])) k++; /* the rest of a run */
        if (key) arena_put(c, c->s + at, k);
        c->i += k;
    }
    c->i++;
    if (key) key->len = c->arena_len - key->off;
    return 0;
}

/* ---- numbers and literals (sections 6 and 3) ---- */

static int is_digit(const Checker *c) {
    return c->i < c->n && c->s[c->i] >= '0' && c->s[c->i] <= '9';
}

static int is_byte(const Checker *c, char b) {
    return c->i < c->n && c->s[c->i] == (unsigned char)b;
}

static void skip_digits(Checker *c) {
    while (is_digit(c)) c->i++;
}

static int check_number(Checker *c) {
    size_t start = c->i;
    if (is_byte(c, '-')) c->i++;
    if (!is_digit(c)) return expected(c, "a digit after '-'");
    if (is_byte(c, '0')) {
        c->i++;
        if (is_digit(c)) return fail(c, start, "a number cannot have a leading zero");
        if (is_byte(c, 'x') || is_byte(c, 'X'))
            return fail(c, start, "hexadecimal numbers are not JSON");
    }
    skip_digits(c);
    if (is_byte(c, '.')) {
        c->i++;
        if (!is_digit(c)) return expected(c, "a digit after '.'");
        skip_digits(c);
    }
    if (is_byte(c, 'e') || is_byte(c, 'E')) {
        c->i++;
        if (is_byte(c, '+') || is_byte(c, '-')) c->i++;
        if (!is_digit(c)) return expected(c, "a digit in the exponent");
        skip_digits(c);
    }
    size_t len = c->i - start, plain = 0;
    while (plain < len && c->s[start + plain] >= '0' && c->s[start + plain] <= '9') plain++;
    if (!(c->flags & JSON_COUNTS) || plain == len) return 0;
    char path[160];
    put_path(c, c->depth, path, sizeof path);
    return fail(c, start, "number %.*s%s in '%s' is not a plain unsigned integer",
                (int)(len < 24 ? len : 24), (const char *)c->s + start, len < 24 ? "" : "...",
                *path ? path : "(the top level)");
}

static int check_word(Checker *c, const char *word) {
    size_t k = strlen(word);
    if (c->n - c->i < k || memcmp(c->s + c->i, word, k)) return fail(c, c->i, "expected %s", word);
    c->i += k;
    return 0;
}

/* ---- structure (sections 2, 4, 5) ---- */

static void skip_space(Checker *c) {
    while (c->i < c->n &&
           (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' || c->s[c->i] == '\r'))
        c->i++;
}

/* Steps over the '[' or '{' at the cursor into a new frame. */
static Frame *enter(Checker *c, int is_object) {
    if (c->depth == JSON_MAX_DEPTH) {
        fail(c, c->i, "nesting deeper than %d levels", JSON_MAX_DEPTH);
        return NULL;
    }
    Frame *f = &c->frame[c->depth++];
    *f = (Frame){is_object, 0, {0, 0}, is_object ? ++c->objects : 0};
    c->i++;
    return f;
}

/* Steps over close if it is at the cursor, leaving the frame: an empty array or object. */
static int closes(Checker *c, char close) {
    skip_space(c);
    if (!is_byte(c, close)) return 0;
    c->i++;
    c->depth--;
    return 1;
}

/* After a member or element: 0 and past the ',' if another follows, 1 and past the closing
 * bracket at the end, -1 on anything else. */
static int next_member(Checker *c, char close, const char *what) {
    if (closes(c, close)) return 1;
    if (!is_byte(c, ',')) return expected(c, what);
    c->i++;
    skip_space(c);
    if (is_byte(c, close)) return fail(c, c->i, "trailing comma before '%c'", close);
    return 0;
}

static int check_array(Checker *c) {
    Frame *f = enter(c, 0);
    if (!f) return -1;
    if (closes(c, ']')) return 0;
    for (;; f->index++) {
        if (check_value(c)) return -1;
        int rc = next_member(c, ']', "',' or ']'");
        if (rc) return rc < 0 ? -1 : 0;
    }
}

static int check_object(Checker *c) {
    Frame *f = enter(c, 1);
    if (!f) return -1;
    if (closes(c, '}')) return 0;
    for (;;) {
        size_t at = c->i;
        if (!is_byte(c, '"')) return expected(c, "a string key");
        if (check_string(c, &f->key) || add_key(c, f, at)) return -1;
        skip_space(c);
        if (!is_byte(c, ':')) return expected(c, "':' after the key");
        c->i++;
        if (check_value(c)) return -1;
        int rc = next_member(c, '}', "',' or '}'");
        if (rc) return rc < 0 ? -1 : 0;
    }
}

static int check_value(Checker *c) {
    skip_space(c);
    unsigned char b = c->i < c->n ? c->s[c->i] : 0;
    const char *rest = (const char *)c->s + c->i;
    size_t left = c->n - c->i;
    if (b == '{') return check_object(c);
    if (b == '[') return check_array(c);
    if (b == '"') return check_string(c, NULL);
    if (b == 't') return check_word(c, "true");
    if (b == 'f') return check_word(c, "false");
    if (b == 'n') return check_word(c, "null");
    if (b == '-' || (b >= '0' && b <= '9')) return check_number(c);
    if (b == '+' || b == '.') return fail(c, c->i, "a number cannot start with '%c'", b);
    if ((left >= 3 && !memcmp(rest, "NaN", 3)) || (left >= 8 && !memcmp(rest, "Infinity", 8)))
        return fail(c, c->i, "NaN and Infinity are not JSON numbers");
    return expected(c, "a value");
}

/* ---- public ---- */

int json_check(const char *text, size_t len, int flags, size_t *pos, char *err, size_t errlen) {
    Checker *c = xcalloc(1, sizeof *c);
    c->s = (const unsigned char *)text;
    c->n = len;
    c->flags = flags;
    c->pos = pos;
    c->err = err;
    c->errlen = errlen;
    /* never NULL, even for a text whose only key is "": NULL + 0 is undefined */
    c->arena_cap = 256;
    c->arena = malloc(c->arena_cap);
    if (!c->arena) sys_error("out of memory checking JSON");
    int rc;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        rc = fail(c, 0, "starts with a UTF-8 byte-order mark; save the file without one");
    else
        rc = check_value(c);
    skip_space(c);
    if (!rc && c->i < c->n) {
        char got[64];
        what_is_here(c, got, sizeof got);
        rc = fail(c, c->i, "unexpected %s after the JSON value", got);
    }
    free(c->arena);
    free(c->slot);
    free(c);
    return rc;
}

void json_line_col(const char *text, size_t pos, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos; i++) {
        if (text[i] == '\n')
            ++*line, *col = 1;
        else if (((unsigned char)text[i] & 0xC0) != 0x80)
            ++*col;
    }
}
