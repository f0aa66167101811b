/* json_check.h — the strict JSON checker run before cJSON on every JSON text a user gives us
 * (config files, --set values, the header of a safetensors file).
 *
 * cJSON is lenient where leniency hides a mistake or lets one file mean two things: it keeps
 * both copies of a duplicate key (lookups see the first), ends a string at an escaped NUL
 * ("F32\u0000" reads as "F32", and two names differing after the NUL become one), reads 01 and
 * 1. as numbers, skips a byte-order mark and every byte below 0x20 as whitespace, and passes
 * invalid UTF-8 through. json_check accepts exactly the JSON texts of RFC 8259, minus three
 * things none of our inputs needs: the escape \u0000, duplicate keys in an object (compared
 * after decoding, so "a" and "\u0061" are the same key) and nesting deeper than
 * JSON_MAX_DEPTH. Every text it accepts, cJSON parses, and to the tree the text means.
 *
 * Time and memory are linear in the text: keys go into one hash set, tagged by their object. */
#ifndef JSON_CHECK_H
#define JSON_CHECK_H

#include <stddef.h>

/* cJSON refuses 1000 levels; no input of ours needs more than a handful. */
#define JSON_MAX_DEPTH 256

/* Flags. JSON_COUNTS: every number must be a plain unsigned integer (digits only), as in a
 * safetensors header, whose only numbers are shapes and offsets. */
enum { JSON_COUNTS = 1 };

/* 0 if text[0, len) is one strict JSON text. Otherwise -1, *pos = the byte offset of the
 * problem and err = one line saying what it is, without the position ("duplicate key 'lr' in
 * 'train'"); keys quoted in it have their control characters escaped. */
int json_check(const char *text, size_t len, int flags, size_t *pos, char *err, size_t errlen);

/* The 1-based line and column (counted in UTF-8 characters) of byte pos of text. */
void json_line_col(const char *text, size_t pos, int *line, int *col);

#endif
