/* fuzz_config.c — libFuzzer target for json_check and the config parser (make fuzz).
 *
 * Each input is tried three ways:
 *   1. json_check against cJSON: whatever the checker accepts, cJSON must parse, to a tree with
 *      no duplicate key in any object, that cJSON prints back as text the checker accepts;
 *   2. as a config file (config_from_text): a refusal is one line starting with the origin, an
 *      acceptance passes config_sound;
 *   3. as a --set assignment on configs/quick.json: the same, and a refusal leaves the config
 *      as it was.
 * A violated rule aborts, as do the sanitizers' reports. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../tests/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

__attribute__((noreturn)) static void broken(const char *what, const char *detail) {
    fprintf(stderr, "%s: %s\n", what, detail);
    abort();
}

/* Pairwise, which is fine for fuzzer-sized inputs: the check the hash set replaces. */
static int has_duplicate(const cJSON *v) {
    for (const cJSON *a = v->child; a; a = a->next) {
        for (const cJSON *b = a->next; cJSON_IsObject(v) && b; b = b->next)
            if (!strcmp(a->string, b->string)) return 1;
        if (has_duplicate(a)) return 1;
    }
    return 0;
}

static void check_against_cjson(const char *text, size_t size) {
    char err[1024] = "";
    size_t pos = SIZE_MAX;
    if (json_check(text, size, 0, &pos, err, sizeof err)) {
        if (pos > size || !one_line(err)) broken("bad json_check error", err);
        return;
    }
    cJSON *tree = cJSON_ParseWithLength(text, size);
    if (!tree) broken("json_check accepted what cJSON refuses", text);
    if (has_duplicate(tree)) broken("json_check missed a duplicate key", text);
    char *printed = cJSON_PrintUnformatted(tree);
    if (json_check(printed, strlen(printed), 0, &pos, err, sizeof err))
        broken("cJSON printed text json_check refuses", err);
    cJSON_free(printed);
    cJSON_Delete(tree);
}

static void check_config_text(const char *text) {
    Config c;
    char err[1024] = "", why[1200] = "";
    if (config_from_text(&c, text, "fuzz.json", err, sizeof err)) {
        if (!one_line(err) || strncmp(err, "fuzz.json", 9)) broken("bad config error", err);
        return;
    }
    if (!config_sound(&c, why, sizeof why)) broken("accepted an invalid config", why);
    config_free(&c);
}

static void check_config_set(const char *assignment) {
    static char *base;
    char err[1024] = "", why[1200] = "";
    Config c;
    if (!base) {
        if (config_from_file(&c, "configs/quick.json", err, sizeof err))
            broken("run from the repository root", err);
        base = config_to_json(&c);
        config_free(&c);
    }
    if (config_from_text(&c, base, "base", err, sizeof err)) broken("base", err);
    if (config_set(&c, assignment, err, sizeof err) == 0) {
        if (!config_sound(&c, why, sizeof why)) broken("--set made an invalid config", why);
    } else {
        char *after = config_to_json(&c);
        if (!one_line(err) || strncmp(err, "--set ", 6)) broken("bad --set error", err);
        if (strcmp(after, base)) broken("a failed --set changed the config", assignment);
        free(after);
    }
    config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    check_against_cjson(text, size);
    check_config_text(text); /* up to the first NUL, as a C string */
    check_config_set(text);
    free(text);
    return 0;
}
