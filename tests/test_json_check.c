/* test_json_check.c — the strict JSON checker: a table of texts RFC 8259 allows (each must
 * pass, and cJSON must parse it) and of texts it forbids or we refuse (each must fail with a
 * one-line message naming the problem, at the right byte), plus the linear-time key set. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../src/io/json_check.h"

static const char *valid[] = {
    "{}",
    "[]",
    " \t\r\n{ \"a\" : [ 1 , 2 ] } \n",
    "0",
    "-0",
    "-0.5e-3",
    "1E+400", /* RFC 8259 allows any magnitude; the config's range checks refuse it */
    "123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890",
    "\"\"",
    "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041 \\u00e9 \\u20AC\"",
    "\"\\ud83d\\ude00\"",       /* a surrogate pair */
    "\"\xc3\xa9\xe2\x82\xac\"", /* é € */
    "\"\xf0\x9f\x98\x80\"",     /* U+1F600 */
    "\"\xf4\x8f\xbf\xbf\"",     /* U+10FFFF, the last code point */
    "\"\xef\xbf\xbf\"",         /* U+FFFF is a noncharacter, not an error */
    "\"\x7f\"",                 /* DEL needs no escape */
    "true",
    "false",
    "null",
    "{\"a\": {\"a\": {\"a\": 1}}}", /* the same key in different objects */
    "[{\"a\": 1}, {\"a\": 2}]",
    "{\"a\": 1, \"A\": 2, \"a \": 3, \"\": 4}",
    "{\"\": {\"\": []}}",                /* found by libFuzzer: the empty key before any other */
    "{\"\\u00e9\": 1, \"e\\u0301\": 2}", /* no Unicode normalization: different keys */
};

static const struct {
    const char *text;
    size_t pos; /* where the error must be reported */
    const char *want;
} invalid[] = {
    {"", 0, "expected a value, got the end of the text"},
    {"   ", 3, "expected a value"},
    {"\xef\xbb\xbf{}", 0, "starts with a UTF-8 byte-order mark; save the file without one"},
    {"{} x", 3, "unexpected 'x' after the JSON value"},
    {"{}{}", 2, "unexpected '{' after the JSON value"},
    {"01", 0, "a number cannot have a leading zero"},
    {"[-01]", 1, "leading zero"},
    {"+1", 0, "a number cannot start with '+'"},
    {".5", 0, "a number cannot start with '.'"},
    {"1.", 2, "expected a digit after '.', got the end of the text"},
    {"1.e5", 2, "expected a digit after '.'"},
    {"-", 1, "expected a digit after '-'"},
    {"1e", 2, "expected a digit in the exponent"},
    {"1e+", 3, "expected a digit in the exponent"},
    {"NaN", 0, "NaN and Infinity are not JSON numbers"},
    {"[Infinity]", 1, "NaN and Infinity"},
    {"-Infinity", 1, "expected a digit after '-'"},
    {"0x10", 0, "hexadecimal numbers are not JSON"},
    {"[1 2]", 3, "expected ',' or ']', got '2'"},
    {"[1,]", 3, "trailing comma before ']'"},
    {"{\"a\":1,}", 7, "trailing comma before '}'"},
    {"{\"a\" 1}", 5, "expected ':' after the key, got '1'"},
    {"{a:1}", 1, "expected a string key, got 'a'"},
    {"{'a':1}", 1, "a single quote"},
    {"{\"a\":1", 6, "expected ',' or '}', got the end of the text"},
    {"[", 1, "expected a value, got the end of the text"},
    {"tru", 0, "expected true"},
    {"nul", 0, "expected null"},
    {"True", 0, "expected a value, got 'T'"},
    {"\"abc", 0, "unterminated string"},
    {"\"a\nb\"", 2, "unescaped control character 0x0A in a string"},
    {"\"a\tb\"", 2, "unescaped control character 0x09"},
    {"\"\\x\"", 1, "invalid escape '\\x'"},
    {"\"\\'\"", 1, "invalid escape '\\''"},
    {"\"\\u12\"", 1, "\\u must be followed by 4 hex digits"},
    {"\"\\u12G4\"", 1, "\\u must be followed by 4 hex digits"},
    {"\"F32\\u0000\"", 4, "\\u0000 is not allowed"},
    {"\"\\ud800\"", 1, "\\uD800 is the high half of a surrogate pair without a low half"},
    {"\"\\ud800\\u0041\"", 1, "without a low half"},
    {"\"\\ud800\\ud800\"", 1, "without a low half"},
    {"\"\\udc00\"", 1, "\\uDC00 is the low half of a surrogate pair without a high half"},
    {"\"\\ude00\\ud83d\"", 1, "low half"},
    {"\"\x80\"", 1, "invalid UTF-8: a stray continuation byte (byte 0x80)"},
    {"\"\xc0\xaf\"", 1, "invalid UTF-8: an overlong encoding (byte 0xC0)"},
    {"\"\xc1\xbf\"", 1, "an overlong encoding"},
    {"\"\xe0\x80\xaf\"", 1, "an overlong encoding (byte 0xE0)"},
    {"\"\xf0\x80\x80\xaf\"", 1, "an overlong encoding (byte 0xF0)"},
    {"\"\xed\xa0\x80\"", 1, "an encoded UTF-16 surrogate"},
    {"\"\xed\xbf\xbf\"", 1, "an encoded UTF-16 surrogate"},
    {"\"\xf4\x90\x80\x80\"", 1, "a code point above U+10FFFF (byte 0xF4)"},
    {"\"\xf5\x80\x80\x80\"", 1, "a byte UTF-8 never uses (byte 0xF5)"},
    {"\"\xff\"", 1, "never uses (byte 0xFF)"},
    {"\"\xc3\"", 1, "a character that ends early"},
    {"\"\xe2\x82\"", 1, "ends early"},
    {"\"\xe2\x82", 1, "ends early"},
    {"\"\xc3x\"", 1, "ends early"},
    {"\xc3\xa9", 0, "expected a value, got byte 0xC3"},
    {"{\"a\": 1, \"a\": 2}", 9, "duplicate key 'a'"},
    {"{\"a\": 1, \"\\u0061\": 2}", 9, "duplicate key 'a'"},
    {"{\"\\/\": 1, \"/\": 2}", 10, "duplicate key '/'"},
    {"{\"\\ud83d\\ude00\": 1, \"\xf0\x9f\x98\x80\": 2}", 20, "duplicate key '\xf0\x9f\x98\x80'"},
    {"{\"model\": {\"n_layers\": 6, \"n_layers\": 7}}", 26, "duplicate key 'n_layers' in 'model'"},
    {"{\"model\": {\"position\": {\"type\": \"alibi\", \"type\": \"t5\"}}}", 41,
     "duplicate key 'type' in 'model.position'"},
    {"[0, {\"x\": [{\"k\": 1, \"k\": 1}]}]", 20, "duplicate key 'k' in '[1].x[0]'"},
    {"{\"a\\nb\": 1, \"a\\nb\": 2}", 12, "duplicate key 'a\\u000Ab'"}, /* one line */
    {"{\"a\": {}, \"b\": {}, \"a\": 3}", 19, "duplicate key 'a'"},
    {"{\"\": 1, \"\": 2}", 8, "duplicate key ''"},
};

/* Valid texts pass, and cJSON parses every one of them. */
TEST(test_json_check_accepts_rfc8259) {
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        char err[256] = "";
        size_t pos = 0;
        int rc = json_check(valid[i], strlen(valid[i]), 0, &pos, err, sizeof err);
        CHECK(rc == 0, "%s: rejected at byte %zu: %s", valid[i], pos, err);
        cJSON *j = cJSON_ParseWithLength(valid[i], strlen(valid[i]));
        CHECK(j != NULL, "%s: json_check accepts it but cJSON does not", valid[i]);
        cJSON_Delete(j);
    }
}

TEST(test_json_check_rejects_each_violation) {
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        const char *t = invalid[i].text;
        char err[256] = "";
        size_t pos = 12345;
        int rc = json_check(t, strlen(t), 0, &pos, err, sizeof err);
        CHECK(rc == -1, "accepted %s", t);
        CHECK(strstr(err, invalid[i].want) != NULL, "%s: message '%s' lacks '%s'", t, err,
              invalid[i].want);
        CHECK(pos == invalid[i].pos, "%s: error at byte %zu, expected %zu (%s)", t, pos,
              invalid[i].pos, err);
        CHECK(!strchr(err, '\n') && !strchr(err, '\r'), "%s: message has a line break", t);
    }
}

TEST(test_json_check_counts_only) {
    static const char *counts[] = {"[0, 1, 9007199254740993]", "{\"a\": [12, 0]}"};
    static const char *not_counts[] = {"[1.0]", "[-1]", "[1e3]", "[-0]", "[0.5]"};
    char err[256];
    size_t pos;
    const char *where = "{\"a\": {\"shape\": [2, 2.5]}}";
    CHECK(json_check(where, strlen(where), JSON_COUNTS, &pos, err, sizeof err) == -1 &&
              strstr(err, "number 2.5 in 'a.shape[1]' is not"),
          "the message names where the number is: %s", err);
    for (size_t i = 0; i < sizeof counts / sizeof *counts; i++)
        CHECK(json_check(counts[i], strlen(counts[i]), JSON_COUNTS, &pos, err, sizeof err) == 0,
              "%s: %s", counts[i], err);
    for (size_t i = 0; i < sizeof not_counts / sizeof *not_counts; i++) {
        const char *t = not_counts[i];
        CHECK(json_check(t, strlen(t), JSON_COUNTS, &pos, err, sizeof err) == -1, "accepted %s", t);
        CHECK(strstr(err, "in '[0]' is not a plain unsigned integer") && pos == 1, "%s: %s at %zu",
              t, err, pos);
        CHECK(json_check(t, strlen(t), 0, &pos, err, sizeof err) == 0, "%s without the flag", t);
    }
}

/* A text is exactly its len bytes: what follows is not read, and a NUL inside is a byte. */
TEST(test_json_check_length_bounds) {
    char err[256];
    size_t pos;
    CHECK(json_check("[1]garbage", 3, 0, &pos, err, sizeof err) == 0, "prefix of 3 bytes: %s", err);
    CHECK(json_check("[12", 2, 0, &pos, err, sizeof err) == -1 && pos == 2, "[1 is cut");
    CHECK(json_check("\"a\0b\"", 5, 0, &pos, err, sizeof err) == -1 && pos == 2,
          "a raw NUL in a string: %s", err);
    CHECK(strstr(err, "control character 0x00"), "message: %s", err);
    CHECK(json_check("{}\0", 3, 0, &pos, err, sizeof err) == -1 && pos == 2, "a NUL after {}");
    CHECK(strstr(err, "unexpected byte 0x00 after the JSON value"), "message: %s", err);
}

static void nested(char *buf, int depth) {
    for (int i = 0; i < depth; i++) buf[i] = '[';
    for (int i = 0; i < depth; i++) buf[depth + i] = ']';
    buf[2 * depth] = 0;
}

TEST(test_json_check_depth_limit) {
    static char buf[2 * (JSON_MAX_DEPTH + 1) + 1];
    char err[256];
    size_t pos;
    nested(buf, JSON_MAX_DEPTH);
    CHECK(json_check(buf, strlen(buf), 0, &pos, err, sizeof err) == 0, "depth %d: %s",
          JSON_MAX_DEPTH, err);
    nested(buf, JSON_MAX_DEPTH + 1);
    CHECK(json_check(buf, strlen(buf), 0, &pos, err, sizeof err) == -1, "depth %d accepted",
          JSON_MAX_DEPTH + 1);
    CHECK(strstr(err, "nesting deeper than 256 levels") && pos == JSON_MAX_DEPTH, "%s at %zu", err,
          pos);
}

/* 60,000 keys in one object, then one duplicate at the end: found, and in linear time (the
 * runner's timing column shows it; a quadratic check takes seconds here). */
TEST(test_json_check_60000_keys) {
    size_t cap = 60000 * 24 + 64, n = 0;
    char *t = malloc(cap);
    t[n++] = '{';
    for (int i = 0; i < 60000; i++)
        n += (size_t)sprintf(t + n, "%s\"key.%d\":%d", i ? "," : "", i, i);
    char err[256];
    size_t pos;
    CHECK(json_check(t, n + sprintf(t + n, "}"), 0, &pos, err, sizeof err) == 0, "%s", err);
    size_t at = n + 1;
    n += (size_t)sprintf(t + n, ",\"key.\\u0031\":1}");
    CHECK(json_check(t, n, 0, &pos, err, sizeof err) == -1, "the duplicate 'key.1' was missed");
    CHECK(strstr(err, "duplicate key 'key.1'") && pos == at, "%s at %zu, expected %zu", err, pos,
          at);
    free(t);
}

TEST(test_json_check_line_col) {
    const char *t = "{\n  \"lr\": 1,\n  \"\xc3\xa9t\xc3\xa9\": 2, \"lr\": 3\n}";
    char err[256];
    size_t pos;
    CHECK(json_check(t, strlen(t), 0, &pos, err, sizeof err) == -1, "duplicate accepted");
    int line, col;
    json_line_col(t, pos, &line, &col);
    CHECK(line == 3 && col == 13, "duplicate at %d:%d, expected 3:13 (characters, not bytes)", line,
          col);
    json_line_col(t, 0, &line, &col);
    CHECK(line == 1 && col == 1, "byte 0 is 1:1, got %d:%d", line, col);
}

/* A long key is cut in the message, at a character boundary. */
TEST(test_json_check_long_key_message) {
    char t[1200] = "{\"", err[200];
    size_t n = 2, pos;
    for (int i = 0; i < 200; i++) n += (size_t)sprintf(t + n, "\xc3\xa9");
    strcpy(t + n, "\":1}");
    char *dup = malloc(2 * strlen(t) + 8);
    sprintf(dup, "%.*s,%s", (int)strlen(t) - 1, t, t + 1);
    CHECK(json_check(dup, strlen(dup), 0, &pos, err, sizeof err) == -1, "duplicate accepted");
    CHECK(strstr(err, "...'") != NULL && strlen(err) < sizeof err - 1, "message: %s", err);
    char *dots = strstr(err, "...");
    CHECK(dots && (unsigned char)dots[-1] == 0xA9, "cut inside a character: %s", err);
    free(dup);
}
