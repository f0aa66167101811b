/* test_config.c — the configuration: defaults, every error rule, --set, the round trip through
 * config_to_json, and the keys of every registered position method (tested by iterating the
 * registry, so a new method is covered by being registered). */
#include "test.h"

#include <stdlib.h>
#include <math.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../src/config/config.h"
#include "../src/position/position.h"
#include "../src/util/util.h"

/* The typed field of a core key, as a double (bools and ints included). */
static double mirror_num(const Config *c, const ConfigKey *k) {
    const char *field = (const char *)c + k->offset;
    return k->type == KEY_FLOAT ? *(const double *)field : *(const int *)field;
}

/* Parses text into a fresh config; the test fails loudly if it is rejected. */
static int parse_ok(Config *c, const char *text) {
    char err[512];
    int rc = config_from_text(c, text, "t.json", err, sizeof err);
    CHECK(rc == 0, "rejected %s: %s", text, err);
    return rc == 0;
}

/* Checks that text is rejected with a one-line message containing want (and the origin). */
static void expect_error(const char *text, const char *want) {
    Config c;
    char err[512] = "";
    int rc = config_from_text(&c, text, "t.json", err, sizeof err);
    CHECK(rc == -1, "accepted %s", text);
    if (rc == 0) {
        config_free(&c);
        return;
    }
    CHECK(strstr(err, want) != NULL, "%s: message '%s' lacks '%s'", text, err, want);
    CHECK(!strncmp(err, "t.json: ", 8), "message '%s' does not start with the origin", err);
    CHECK(!strchr(err, '\n'), "message '%s' has a line break", err);
}

/* Applies one --set and expects it to fail with a message containing want, leaving c as is. */
static void expect_set_error(Config *c, const char *assignment, const char *want) {
    char *before = config_to_json(c);
    char err[512] = "";
    CHECK(config_set(c, assignment, err, sizeof err) == -1, "--set %s accepted", assignment);
    CHECK(strstr(err, want) != NULL, "--set %s: message '%s' lacks '%s'", assignment, err, want);
    char *after = config_to_json(c);
    CHECK(!strcmp(before, after), "--set %s changed the config although it failed", assignment);
    free(before);
    free(after);
}

TEST(test_config_defaults) {
    Config c;
    if (!parse_ok(&c, "{}")) return;
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++) {
        const ConfigKey *k = &keys[i];
        if (!k->def) { /* optional: absent from the resolved tree */
            char *json = config_to_json(&c);
            const char *leaf = strrchr(k->name, '.') + 1;
            char quoted[64];
            snprintf(quoted, sizeof quoted, "\"%s\"", leaf);
            CHECK(!strstr(json, quoted), "%s: has no default but is in the resolved tree", k->name);
            free(json);
            continue;
        }
        cJSON *def = cJSON_Parse(k->def);
        CHECK(def != NULL, "%s: default %s is not JSON", k->name, k->def);
        if (!def) continue;
        if (k->type == KEY_STRING || k->type == KEY_ENUM)
            CHECK(!strcmp((const char *)&c + k->offset, def->valuestring), "%s: mirror '%s' != %s",
                  k->name, (const char *)&c + k->offset, k->def);
        else if (k->type == KEY_BOOL)
            CHECK(mirror_num(&c, k) == cJSON_IsTrue(def), "%s: bool mirror", k->name);
        else if (k->type != KEY_FLOAT_LIST) /* lists have no generic mirror */
            CHECK_CLOSE(mirror_num(&c, k), def->valuedouble, 0, k->name);
        cJSON_Delete(def);
    }
    CHECK(!strcmp(c.model.output.type, "full") && c.model.output.n_cutoffs == 2 &&
              c.model.output.cutoffs[0] == 20000 && c.model.output.cutoffs[1] == 60000,
          "output: full by default; the paper's cutoffs mirrored");
    CHECK(c.model.n_layers == 6 && c.model.d_model == 256 && c.model.n_heads == 8, "model shape");
    CHECK(!strcmp(c.model.activation, "gelu") && c.model.final_norm == 1, "gelu, final norm");
    CHECK(!strcmp(c.model.position, "sinusoidal"), "position %s", c.model.position);
    CHECK(c.train.lr == 5e-4 && c.train.beta2 == 0.98 && c.train.clip == 1.0, "optimizer");
    CHECK(!strcmp(c.data.dir, "data/wikitext-2") && !strcmp(c.data.test, "wiki.test.tokens"),
          "data");
    config_free(&c);
}

TEST(test_config_values_and_mirrors) {
    Config c;
    if (!parse_ok(&c, "{\"model\": {\"n_layers\": 3, \"d_model\": 64.0, \"n_heads\": 4,"
                      " \"activation\": \"swiglu\", \"final_norm\": false,"
                      " \"position\": {\"type\": \"none\"}},"
                      " \"train\": {\"lr\": 1, \"schedule\": \"constant\", \"warmup\": 5000,"
                      " \"steps\": 10},"
                      " \"data\": {\"dir\": \"/tmp/x\"}}"))
        return;
    CHECK(c.model.n_layers == 3 && c.model.d_model == 64 && c.model.n_heads == 4, "shape");
    CHECK(!strcmp(c.model.activation, "swiglu") && c.model.final_norm == 0, "ffn");
    CHECK(!strcmp(c.model.position, "none"), "position %s", c.model.position);
    CHECK(c.train.lr == 1.0 && !strcmp(c.train.schedule, "constant"), "lr, schedule");
    CHECK(c.train.warmup == 5000 && c.train.steps == 10, "warmup may exceed steps");
    CHECK(!strcmp(c.data.dir, "/tmp/x") && !strcmp(c.data.train, "wiki.train.tokens"), "data");
    config_free(&c);
}

TEST(test_config_errors) {
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{\"modle\": {}}", "modle: unknown section (sections: model, train, data)"},
        {"{\"model\": {\"n_layer\": 6}}", "model.n_layer: unknown key (keys: n_layers, d_model"},
        {"{\"train\": {\"lr\": 1e-3, \"foo\": {\"bar\": 1}}}", "train.foo: unknown key"},
        {"{\"model\": {\"n_layers\": \"six\"}}",
         "model.n_layers: expected an integer, got \"six\""},
        {"{\"model\": {\"n_layers\": 2.5}}", "model.n_layers: expected an integer, got 2.5"},
        {"{\"model\": {\"n_layers\": 0}}", "model.n_layers: 0 is out of range [1, 256]"},
        {"{\"model\": {\"n_layers\": 257}}", "model.n_layers: 257 is out of range [1, 256]"},
        {"{\"model\": {\"dropout\": -0.1}}", "model.dropout: -0.1 is out of range [0, 0.99]"},
        {"{\"model\": {\"dropout\": 1e999}}", "model.dropout: inf is out of range"},
        {"{\"train\": {\"lr\": 0}}", "train.lr: 0 is out of range"},
        {"{\"train\": {\"beta2\": 1}}", "train.beta2: 1 is out of range"},
        {"{\"train\": {\"lr\": \"fast\"}}", "train.lr: expected a number, got \"fast\""},
        {"{\"model\": {\"final_norm\": 1}}", "model.final_norm: expected true or false, got 1"},
        {"{\"data\": {\"dir\": 5}}", "data.dir: expected a string, got 5"},
        {"{\"data\": {\"train\": \"\"}}", "data.train: \"\" is too short"},
        {"{\"model\": {\"activation\": \"tanh\"}}",
         "model.activation: expected one of relu|gelu|swiglu|glu|geglu, got \"tanh\""},
        {"{\"train\": {\"schedule\": 3}}", "train.schedule: expected one of cosine|"},
        {"{\"model\": {\"n_heads\": 8, \"n_kv_heads\": 3}}",
         "model.n_kv_heads (3) must divide model.n_heads (8)"},
        {"{\"model\": {\"n_kv_heads\": 0}}", "model.n_kv_heads: 0 is out of range [1, 1024]"},
        {"{\"model\": {\"n_kv_heads\": -2}}", "model.n_kv_heads: -2 is out of range [1, 1024]"},
        {"{\"model\": {\"norm_position\": \"post\"}}",
         "model.final_norm must be false with model.norm_position \"post\""},
        {"{\"model\": {\"norm_position\": \"deepnorm\", \"final_norm\": true}}",
         "model.final_norm must be false with model.norm_position \"deepnorm\""},
        {"{\"model\": {\"norm\": \"batchnorm\"}}",
         "model.norm: expected one of layernorm|rmsnorm, got \"batchnorm\""},
        {"{\"model\": {\"norm_position\": \"middle\"}}",
         "model.norm_position: expected one of pre|post|sandwich|deepnorm, got \"middle\""},
        {"{\"model\": {\"norm_eps\": 0}}", "model.norm_eps: 0 is out of range"},
        {"{\"model\": {\"position\": {\"type\": \"nope\"}}}",
         "model.position.type: expected one of "},
        {"{\"model\": {\"d_model\": 250}}",
         "model.d_model (250) must be divisible by model.n_heads (8)"},
        {"{\"model\": 5}", "model: expected an object, got 5"},
        {"{\"model\": {\"position\": \"alibi\"}}",
         "model.position: expected an object, got \"alibi\""},
        {"{\"model.n_layers\": 6}", "a key name cannot contain '.'"},
        {"{\"Model\": {}}", "Model: unknown section"},
        {"[1, 2]", "expected a JSON object at the top level, got [1,2]"},
        {"{\"model\": {\"position\": {\"type\": \"sinusoidal\", \"zzz\": 1}}}",
         "model.position.zzz: unknown key for position type 'sinusoidal' (keys: type"},
        {"{\"model\": {\"output\": {\"type\": \"softmax\"}}}",
         "model.output.type: expected one of full|adaptive, got \"softmax\""},
        {"{\"model\": {\"output\": {\"cutoffs\": [100, 50]}}}",
         "model.output.cutoffs[1]: 50 does not increase (previous 100)"},
        {"{\"model\": {\"output\": {\"cutoffs\": [100, 100]}}}",
         "model.output.cutoffs[1]: 100 does not increase"},
        {"{\"model\": {\"output\": {\"cutoffs\": [10.5]}}}",
         "model.output.cutoffs[0]: expected an integer, got 10.5"},
        {"{\"model\": {\"output\": {\"cutoffs\": [0]}}}",
         "model.output.cutoffs[0]: 0 is out of range [1, "},
        {"{\"model\": {\"output\": {\"cutoffs\": \"20000\"}}}",
         "model.output.cutoffs: expected a list of numbers, got \"20000\""},
        {"{\"model\": {\"output\": {\"cutoffs\": [1, 2, 3, 4, 5, 6, 7, 8]}}}",
         "model.output.cutoffs: more than 7 cutoffs"},
        {"{\"model\": {\"d_model\": 16, \"n_heads\": 2, \"output\": {\"type\": \"adaptive\", "
         "\"factor\": 4, \"cutoffs\": [10, 20, 30]}}}",
         "model.output.cutoffs: cluster 3 would have d_model / factor^3 = 0 dimensions (d_model "
         "16, factor 4)"},
        {"{\"model\": {\"output\": {\"tie\": 1}}}", "model.output.tie: expected true or false"},
        {"{\"model\": {\"output\": {\"cutof\": []}}}",
         "model.output.cutof: unknown key (keys: type, cutoffs, factor, tie, dropout)"},
        {"{\"data\": {\"vocab\": 3}}", "data.vocab: expected a string, got 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].json, cases[i].want);

    char long_dir[2100] = "{\"data\": {\"dir\": \"";
    memset(long_dir + strlen(long_dir), 'a', 2000);
    strcat(long_dir, "\"}}");
    expect_error(long_dir, "data.dir: \"aaaa");
    expect_error(long_dir, "is too long (2000 bytes, at most 1023)");
}

/* Every numeric core key rejects a value just outside its range, naming key and range. */
TEST(test_config_ranges_of_every_key) {
    Config c;
    if (!parse_ok(&c, "{}")) return;
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++) {
        const ConfigKey *k = &keys[i];
        if (k->type != KEY_INT && k->type != KEY_FLOAT) continue;
        double step = k->type == KEY_INT ? 1 : 0.5 * (k->max - k->min) + 1;
        char set[128], want[128];
        snprintf(set, sizeof set, "%s=%.17g", k->name, k->min - step);
        snprintf(want, sizeof want, "%s: ", k->name);
        expect_set_error(&c, set, want);
        expect_set_error(&c, set, "is out of range");
        snprintf(set, sizeof set, "%s=%.17g", k->name, k->max + step);
        expect_set_error(&c, set, "is out of range");
    }
    config_free(&c);
}

/* A text json_check refuses: the message is "t.json:<line>:<column>: " and then what. */
static void expect_json_error(const char *text, const char *where, const char *want) {
    Config c;
    char err[512] = "", prefix[64];
    int rc = config_from_text(&c, text, "t.json", err, sizeof err);
    CHECK(rc == -1, "accepted %s", text);
    if (rc == 0) {
        config_free(&c);
        return;
    }
    snprintf(prefix, sizeof prefix, "t.json:%s: ", where);
    CHECK(!strncmp(err, prefix, strlen(prefix)), "%s: message '%s' does not start with '%s'", text,
          err, prefix);
    CHECK(strstr(err, want) != NULL, "%s: message '%s' lacks '%s'", text, err, want);
    CHECK(!strchr(err, '\n'), "message '%s' has a line break", err);
}

TEST(test_config_malformed_json) {
    expect_json_error("{\n  \"model\": {\n    \"n_layers\": six\n  }\n}", "3:17",
                      "expected a value, got 's'");
    expect_json_error("{\"model\": {}", "1:13", "expected ',' or '}', got the end of the text");
    expect_json_error("{} trailing", "1:4", "unexpected 't' after the JSON value");
    expect_json_error("", "1:1", "expected a value, got the end of the text");
    expect_json_error("{\"model\": {\"n_layers\": 2,}}", "1:26", "trailing comma before '}'");
    expect_json_error("{\"train\": {\"lr\": NaN}}", "1:18", "NaN and Infinity are not JSON");
    expect_json_error("{\"train\": {\"lr\": .5}}", "1:18", "a number cannot start with '.'");
    expect_json_error("{\"train\": {\"lr\": 1.}}", "1:20", "expected a digit after '.'");
    expect_json_error("{\"train\": {\"lr\": +1}}", "1:18", "a number cannot start with '+'");
    expect_json_error("{\"data\": {\"dir\": \"a\tb\"}}", "1:20", "unescaped control character");
}

TEST(test_config_rejects_bom) {
    expect_json_error("\xef\xbb\xbf{}", "1:1",
                      "starts with a UTF-8 byte-order mark; save the file without one");
}

TEST(test_config_rejects_leading_zero_number) {
    expect_json_error("{\"train\": {\"steps\": 01}}", "1:21",
                      "a number cannot have a leading zero");
    expect_json_error("{\"train\": {\"lr\": -01e-3}}", "1:18", "leading zero");
    expect_json_error("{\"train\": {\"steps\": 0x10}}", "1:21", "hexadecimal");
}

/* cJSON keeps both copies and lookups see the first; the checker refuses the text, at any
 * depth, comparing keys after decoding their escapes. */
TEST(test_config_rejects_duplicate_key) {
    expect_json_error("{\"model\": {\"n_layers\": 6, \"n_layers\": 7}}", "1:27",
                      "duplicate key 'n_layers' in 'model'");
    expect_json_error("{\n  \"train\": {\"lr\": 1e-3},\n  \"train\": {\"steps\": 5}\n}", "3:3",
                      "duplicate key 'train'");
    expect_json_error("{\"model\": {\"position\": {\"type\": \"alibi\", \"typ\\u0065\": \"t5\"}}}",
                      "1:42", "duplicate key 'type' in 'model.position'");
}

TEST(test_config_rejects_invalid_utf8) {
    expect_json_error("{\"data\": {\"dir\": \"caf\xe9\"}}", "1:22",
                      "invalid UTF-8: a character that ends early (byte 0xE9)");
    expect_json_error("{\"data\": {\"dir\": \"\xc0\xaf\"}}", "1:19", "overlong");
    expect_json_error("{\"data\": {\"dir\": \"\xed\xa0\x80\"}}", "1:19", "surrogate");
    expect_json_error("{\"data\": {\"dir\": \"\\udc00\"}}", "1:19", "surrogate pair");
    /* columns count characters: the byte after "été" is column 22, byte 23 */
    expect_json_error("{\"data\": {\"dir\": \"\xc3\xa9t\xc3\xa9\xff\"}}", "1:22",
                      "UTF-8 never uses (byte 0xFF)");
}

/* "a\u0000b" would reach the C string "a": refused, like a raw NUL in a file. */
TEST(test_config_rejects_nul_in_string) {
    expect_json_error("{\"data\": {\"dir\": \"data\\u0000/x\"}}", "1:23", "\\u0000 is not allowed");
    const char *dir = test_tmpdir("test_config_rejects_nul_in_string");
    char path[600], err[512], want[700];
    snprintf(path, sizeof path, "%s/x.json", dir);
    CHECK(write_file_atomic(path, "{\n  \0}", 6) == 0, "write %s", path);
    Config c;
    CHECK(config_from_file(&c, path, err, sizeof err) == -1, "a NUL byte accepted");
    snprintf(want, sizeof want, "%s:2:3: expected a string key, got byte 0x00", path);
    CHECK(!strcmp(err, want), "message '%s', expected '%s'", err, want);
}

TEST(test_config_failure_leaves_config_untouched) {
    Config c;
    if (!parse_ok(&c, "{\"model\": {\"n_layers\": 3}}")) return;
    cJSON *json = c.json;
    char err[512];
    CHECK(config_from_text(&c, "{\"model\": {\"n_layers\": 0}}", "t.json", err, sizeof err) == -1,
          "accepted n_layers 0");
    CHECK(c.json == json && c.model.n_layers == 3, "a failed parse changed the config");
    config_free(&c);
    CHECK(c.json == NULL, "config_free leaves json NULL");
}

TEST(test_config_file) {
    const char *dir = test_tmpdir("test_config_file");
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/x.json", dir);
    Config c;
    CHECK(config_from_file(&c, path, err, sizeof err) == -1, "missing file accepted");
    CHECK(strstr(err, path) && strstr(err, "cannot read"), "message: %s", err);

    const char *bad = "{\"model\": {\"n_layers\": \"six\"}}";
    CHECK(write_file_atomic(path, bad, strlen(bad)) == 0, "write %s", path);
    CHECK(config_from_file(&c, path, err, sizeof err) == -1, "bad file accepted");
    char want[700];
    snprintf(want, sizeof want, "%s: model.n_layers: expected an integer, got \"six\"", path);
    CHECK(!strcmp(err, want), "message '%s', expected '%s'", err, want);

    const char *good = "{\"train\": {\"steps\": 7}}";
    CHECK(write_file_atomic(path, good, strlen(good)) == 0, "write %s", path);
    CHECK(config_from_file(&c, path, err, sizeof err) == 0, "good file rejected: %s", err);
    CHECK(c.train.steps == 7, "steps %d", c.train.steps);
    config_free(&c);
}

TEST(test_config_set) {
    Config c;
    if (!parse_ok(&c, "{}")) return;
    char err[512];
    static const char *ok[] = {
        "train.lr=3e-4",   "model.activation=relu",   "model.activation=\"swiglu\"",
        "data.dir=2024",   "model.final_norm=false",  "train.steps=5",
        "model.n_heads=4", "model.position.type=none"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK(config_set(&c, ok[i], err, sizeof err) == 0, "--set %s: %s", ok[i], err);
    CHECK(c.train.lr == 3e-4 && c.train.steps == 5 && c.model.n_heads == 4, "numbers");
    CHECK(!strcmp(c.model.activation, "swiglu") && !c.model.final_norm, "ffn");
    CHECK(!strcmp(c.data.dir, "2024"), "a string key takes the bare text: %s", c.data.dir);
    CHECK(!strcmp(c.model.position, "none"), "position %s", c.model.position);

    expect_set_error(&c, "train.lr", "expected key=value");
    expect_set_error(&c, "=3", "is not a dotted key");
    expect_set_error(&c, "train..lr=3", "is not a dotted key");
    expect_set_error(&c, "train.lr=fast", "--set train.lr=fast: train.lr: expected a number");
    expect_set_error(&c, "train.lr_max=1", "train.lr_max: unknown key (keys: seq_len");
    expect_set_error(&c, "trian.lr=1", "trian: unknown section");
    expect_set_error(&c, "train.lr.x=1", "train.lr.x: unknown key (train.lr is not a section)");
    expect_set_error(&c, "model.n_heads=7", "model.d_model (256) must be divisible");
    expect_set_error(&c, "model.position.offset=3", "unknown key for position type 'none'");
    expect_set_error(&c, "model.activation=tanh", "expected one of relu|gelu|swiglu|glu|geglu");
    config_free(&c);
}

/* Every registered method: its defaults appear in the resolved tree, a wrong type for each of
 * its keys is rejected naming the key, and switching methods with --set drops the old keys. */
TEST(test_config_position_methods) {
    char err[512], text[256];
    for (int i = 0; i < pos_count(); i++) {
        const PosMethod *m = pos_at(i);
        snprintf(text, sizeof text, "{\"model\": {\"position\": {\"type\": \"%s\"}}}", m->name);
        Config c;
        if (!parse_ok(&c, text)) continue;
        CHECK(!strcmp(c.model.position, m->name), "%s: mirror %s", m->name, c.model.position);
        CHECK(c.model.pos_method == m, "%s: model.pos_method is not its registry entry", m->name);
        const cJSON *pos = cJSON_GetObjectItem(cJSON_GetObjectItem(c.json, "model"), "position");
        CHECK(cJSON_GetArraySize(pos) >= 1, "%s: position object", m->name);
        for (int j = 0; j < m->n_keys; j++) {
            const ConfigKey *k = &m->keys[j];
            const cJSON *v = cJSON_GetObjectItem(pos, k->name);
            if (!k->def) {
                CHECK(v == NULL, "%s.%s: optional key without default is absent", m->name, k->name);
                continue;
            }
            cJSON *def = cJSON_Parse(k->def);
            CHECK(def && v && cJSON_Compare(def, v, 1), "%s.%s: default %s not in the tree",
                  m->name, k->name, k->def);
            cJSON_Delete(def);
            if (k->type == KEY_INT || k->type == KEY_FLOAT)
                CHECK_CLOSE(config_pos_num(&c, k->name), v->valuedouble, 0, k->name);
            if (k->type == KEY_BOOL)
                CHECK(config_pos_bool(&c, k->name) == cJSON_IsTrue(v), "%s", k->name);
            if (k->type == KEY_STRING || k->type == KEY_ENUM)
                CHECK(!strcmp(config_pos_str(&c, k->name), v->valuestring), "%s", k->name);

            char bad[256], want[128];
            snprintf(bad, sizeof bad,
                     "{\"model\": {\"position\": {\"type\": \"%s\", \"%s\": {\"x\": 1}}}}", m->name,
                     k->name);
            snprintf(want, sizeof want, "model.position.%s: expected", k->name);
            expect_error(bad, want);
        }
        /* Switching to another method leaves exactly that method's defaulted keys. */
        const PosMethod *other = pos_at((i + 1) % pos_count());
        snprintf(text, sizeof text, "model.position.type=%s", other->name);
        CHECK(config_set(&c, text, err, sizeof err) == 0, "%s: %s", text, err);
        CHECK(!strcmp(c.model.position, other->name), "switched to %s", c.model.position);
        CHECK(c.model.pos_method == other, "switched to %s: model.pos_method not updated",
              other->name);
        pos = cJSON_GetObjectItem(cJSON_GetObjectItem(c.json, "model"), "position");
        int n_def = 1;
        for (int j = 0; j < other->n_keys; j++) n_def += other->keys[j].def != NULL;
        CHECK(cJSON_GetArraySize(pos) == n_def, "%s: %d position keys, expected %d", other->name,
              cJSON_GetArraySize(pos), n_def);
        config_free(&c);
    }
}

/* Re-setting the same position type keeps the method's keys; switching away and back resets
 * them to their defaults. Tested on every numeric key of every registered method. */
TEST(test_config_set_position_type) {
    char err[512], text[256];
    for (int i = 0; i < pos_count(); i++) {
        const PosMethod *m = pos_at(i), *other = pos_at((i + 1) % pos_count());
        for (int j = 0; j < m->n_keys; j++) {
            const ConfigKey *k = &m->keys[j];
            if ((k->type != KEY_INT && k->type != KEY_FLOAT) || !k->def) continue;
            Config c;
            snprintf(text, sizeof text, "{\"model\": {\"position\": {\"type\": \"%s\"}}}", m->name);
            if (!parse_ok(&c, text)) continue;
            double def = config_pos_num(&c, k->name);
            /* a value other than the default that the method accepts: a check hook may object
             * to extreme values (alibi_heads > n_heads, ...), but then it must name the key */
            double cands[] = {k->max, k->min, def + 1, def * 2, def / 2}, val = def;
            int ok = 0;
            for (size_t ci = 0; !ok && ci < sizeof cands / sizeof *cands; ci++) {
                if (cands[ci] == def || cands[ci] < k->min || cands[ci] > k->max) continue;
                if (k->type == KEY_INT && cands[ci] != floor(cands[ci])) continue;
                val = cands[ci];
                snprintf(text, sizeof text, "model.position.%s=%.17g", k->name, val);
                ok = config_set(&c, text, err, sizeof err) == 0;
                CHECK(ok || strstr(err, k->name), "%s: the rejection does not name the key: %s",
                      text, err);
            }
            if (ok) {
                snprintf(text, sizeof text, "model.position.type=%s", m->name);
                CHECK(config_set(&c, text, err, sizeof err) == 0, "%s: %s", text, err);
                CHECK(config_pos_num(&c, k->name) == val, "%s.%s: same type kept %g", m->name,
                      k->name, config_pos_num(&c, k->name));
                snprintf(text, sizeof text, "model.position.type=%s", other->name);
                CHECK(config_set(&c, text, err, sizeof err) == 0, "%s: %s", text, err);
                snprintf(text, sizeof text, "model.position.type=%s", m->name);
                CHECK(config_set(&c, text, err, sizeof err) == 0, "%s: %s", text, err);
                CHECK(m == other || config_pos_num(&c, k->name) == def,
                      "%s.%s: %g after switching away and back, default %g", m->name, k->name,
                      config_pos_num(&c, k->name), def);
            }
            config_free(&c);
        }
    }
}

/* config_to_json is itself a config that parses back to the same text. */
TEST(test_config_round_trip) {
    static const char *texts[] = {
        "{}",
        "{\"train\": {\"lr\": 0.001, \"min_lr\": 1e-5, \"beta2\": 0.999999}, \"model\": "
        "{\"init_std\": 0.1, \"d_model\": 96, \"n_heads\": 3}, \"data\": {\"dir\": \"a "
        "\\\"b\\\"\"}}",
    };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        Config a, b;
        if (!parse_ok(&a, texts[t])) continue;
        char *ja = config_to_json(&a);
        if (parse_ok(&b, ja)) {
            char *jb = config_to_json(&b);
            CHECK(!strcmp(ja, jb), "round trip changed\n%s\ninto\n%s", ja, jb);
            CHECK(!memcmp(&a.model, &b.model, sizeof a.model) &&
                      !memcmp(&a.train, &b.train, sizeof a.train) &&
                      !memcmp(&a.data, &b.data, sizeof a.data),
                  "typed fields differ after the round trip");
            free(jb);
            config_free(&b);
        }
        free(ja);
        config_free(&a);
    }
    /* Every method's resolved tree round-trips too. */
    for (int i = 0; i < pos_count(); i++) {
        char text[128];
        snprintf(text, sizeof text, "{\"model\": {\"position\": {\"type\": \"%s\"}}}",
                 pos_at(i)->name);
        Config a, b;
        if (!parse_ok(&a, text)) continue;
        char *ja = config_to_json(&a);
        if (parse_ok(&b, ja)) {
            char *jb = config_to_json(&b);
            CHECK(!strcmp(ja, jb), "%s: round trip changed the text", pos_at(i)->name);
            free(jb);
            config_free(&b);
        }
        free(ja);
        config_free(&a);
    }
}

/* Appends the dotted paths of tree's leaves, depth first, to paths[*n]. */
static void leaf_paths(const cJSON *tree, const char *prefix, char paths[][128], int *n, int max) {
    for (const cJSON *c = tree->child; c && *n < max; c = c->next) {
        char path[128];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", c->string);
        if (cJSON_IsObject(c))
            leaf_paths(c, path, paths, n, max);
        else
            snprintf(paths[(*n)++], 128, "%s", path);
    }
}

/* The resolved tree lists the sections and keys in table order (a position method's own keys
 * follow model.position.type and are not in the core table). */
TEST(test_config_key_order) {
    Config c;
    if (!parse_ok(&c, "{\"data\": {\"test\": \"t\"}, \"train\": {}, \"model\": {\"d_ff\": 8}}"))
        return;
    int n, n_paths = 0, i = 0;
    const ConfigKey *keys = config_keys(&n);
    static char paths[256][128];
    leaf_paths(c.json, "", paths, &n_paths, 256);
    for (int p = 0; p < n_paths; p++) {
        int core = 0;
        for (int k = 0; k < n && !core; k++) core = !strcmp(paths[p], keys[k].name);
        if (!core) continue;
        while (i < n && !keys[i].def && strcmp(paths[p], keys[i].name)) i++; /* optional, absent */
        CHECK(i < n && !strcmp(paths[p], keys[i].name), "key %d is %s, expected %s", i, paths[p],
              i < n ? keys[i].name : "(none)");
        i++;
    }
    CHECK(i == n, "the tree holds %d of the %d core keys", i, n);
    config_free(&c);
}

TEST(test_config_docs) {
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    config_write_docs(f);
    fclose(f);
    int n;
    const ConfigKey *keys = config_keys(&n);
    for (int i = 0; i < n; i++) {
        char want[128];
        snprintf(want, sizeof want, "| `%s` |", keys[i].name);
        CHECK(strstr(doc, want) != NULL, "docs lack %s", want);
    }
    for (int i = 0; i < pos_count(); i++) {
        const PosMethod *m = pos_at(i);
        char want[128];
        snprintf(want, sizeof want, "### %s\n", m->name);
        CHECK(strstr(doc, want) != NULL, "docs lack method %s", m->name);
        for (int j = 0; j < m->n_keys; j++) {
            snprintf(want, sizeof want, "| `model.position.%s` |", m->keys[j].name);
            CHECK(strstr(doc, want) != NULL, "docs lack %s", want);
        }
    }
    CHECK(strstr(doc, "relu, gelu, swiglu") != NULL, "enum choices");
    free(doc);
}

/* The strict checker must not refuse anything we ship or have written: every config under
 * configs/ (the presets are reproduce.py's, not configs), every resolved config.json and
 * base-config.json under results/ and the test fixtures. */
TEST(test_config_every_shipped_config_loads) {
    char out[OUT_LEN];
    int rc =
        sh(out, "find configs results tests/fixtures -name '*.json' ! -path 'configs/presets/*' "
                "\\( -path 'configs/*' -o -name '*config.json' \\) | sort");
    CHECK(rc == 0, "find: %s", out);
    int n = 0;
    for (char *p = strtok(out, "\n"); p; p = strtok(NULL, "\n"), n++) {
        Config c;
        char err[1024] = "";
        int ok = config_from_file(&c, p, err, sizeof err) == 0;
        CHECK(ok, "%s: %s", p, err);
        if (ok) config_free(&c);
    }
    CHECK(n >= 50, "only %d configs found", n);
}

/* --set values go through the same checker: strict JSON where they are JSON, a bare string
 * otherwise, and a bare string must be text that config.json can hold. */
TEST(test_config_set_strict_values) {
    Config c;
    if (!parse_ok(&c, "{}")) return;
    char err[512];
    /* 01 is not JSON, so it is the string "01", which train.steps refuses */
    expect_set_error(&c, "train.steps=01", "train.steps: expected an integer, got \"01\"");
    expect_set_error(&c, "train.lr=.5", "train.lr: expected a number, got \".5\"");
    expect_set_error(&c, "train.lr=NaN", "train.lr: expected a number, got \"NaN\"");
    expect_set_error(&c, "model.output={\"type\": \"full\", \"type\": \"adaptive\"}",
                     "invalid JSON value at character 18: duplicate key 'type'");
    expect_set_error(&c, "model.output.cutoffs=[1, 2,]",
                     "invalid JSON value at character 7: trailing comma before ']'");
    expect_set_error(&c, "data.dir=caf\xe9", "the value is not text: invalid UTF-8");
    /* a string key takes a JSON string, or else the bare text, never a truncated string */
    CHECK(config_set(&c, "model.activation=\"relu\"", err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(c.model.activation, "relu"), "activation %s", c.model.activation);
    CHECK(config_set(&c, "data.dir=\"a\\u0000b\"", err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(c.data.dir, "\"a\\u0000b\""), "data.dir %s", c.data.dir);
    CHECK(config_set(&c, "data.dir=caf\xc3\xa9", err, sizeof err) == 0, "%s", err);
    CHECK(config_set(&c, "model.output={\"type\": \"full\"}", err, sizeof err) == 0, "%s", err);
    config_free(&c);
}

/* A --set list is checked between keys once, after its last assignment: it may pass through a
 * state that only a later assignment makes valid, and a list that ends invalid changes nothing. */
TEST(test_config_set_list_checks_keys_together) {
    Config c;
    if (!parse_ok(&c, "{}")) return;
    char err[512];
    const char *post[] = {"model.norm_position=post", "model.final_norm=false"};
    CHECK(config_set_list(&c, post, 2, err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(c.model.norm_position, "post") && !c.model.final_norm, "post list not applied");
    const char *heads[] = {"model.d_model=30", "model.n_heads=5", "model.n_kv_heads=1"};
    CHECK(config_set_list(&c, heads, 3, err, sizeof err) == 0, "%s", err);
    CHECK(c.model.d_model == 30 && c.model.n_heads == 5 && c.model.n_kv_heads == 1, "heads list");
    const char *bad[] = {"model.final_norm=true", "train.lr=1e-3"};
    CHECK(config_set_list(&c, bad, 2, err, sizeof err) != 0 &&
              strstr(err, "model.final_norm must be false") && !c.model.final_norm &&
              c.train.lr != 1e-3,
          "an invalid list: rc, message '%s', or the config changed", err);
    const char *typo[] = {"model.n_heads=two", "model.norm_position=pre"};
    CHECK(config_set_list(&c, typo, 2, err, sizeof err) != 0 && strstr(err, "model.n_heads"),
          "a type error inside the list: '%s'", err);
    config_free(&c);
}
