/* cli_util.c — see cli_util.h. */
#include "cli_util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/util/util.h"
#include "test.h"

void write_text(const char *path, const char *text) {
    if (write_file_atomic(path, text, strlen(text))) sys_error("cannot write %s", path);
}

/* Puts a JSON value at a dotted path ("model.position.type=alibi"); a value that is not JSON is
 * a string. */
static void json_put(cJSON *root, const char *assignment) {
    char key[256];
    const char *eq = strchr(assignment, '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - assignment), assignment);
    cJSON *node = root;
    char *part = key, *dot;
    while ((dot = strchr(part, '.'))) {
        *dot = 0;
        cJSON *child = cJSON_GetObjectItemCaseSensitive(node, part);
        node = child ? child : cJSON_AddObjectToObject(node, part);
        part = dot + 1;
    }
    cJSON *v = cJSON_Parse(eq + 1);
    cJSON_DeleteItemFromObjectCaseSensitive(node, part);
    cJSON_AddItemToObject(node, part, v ? v : cJSON_CreateString(eq + 1));
}

void write_config(const char *path, const char *dir, const char *const *overrides) {
    cJSON *c = cJSON_Parse("{\"model\": {\"n_layers\": 1, \"d_model\": 16, \"n_heads\": 2, "
                           "\"d_ff\": 32, \"position\": {\"type\": \"sinusoidal\"}},"
                           "\"train\": {\"seq_len\": 16, \"batch\": 2, \"steps\": 12, "
                           "\"warmup\": 2, \"log_every\": 1, \"eval_every\": 4, \"threads\": 1}}");
    char data[600];
    snprintf(data, sizeof data, "data.dir=%s/data", dir);
    json_put(c, data);
    for (int i = 0; overrides && overrides[i]; i++) json_put(c, overrides[i]);
    char *text = cJSON_Print(c);
    write_text(path, text);
    free(text);
    cJSON_Delete(c);
}

void write_diverging_config(const char *path, const char *dir, int ckpt_every) {
    char every[64];
    snprintf(every, sizeof every, "train.ckpt_every=%d", ckpt_every);
    const char *over[] = {"train.lr=10",        "train.weight_decay=10",
                          "train.clip=0",       "train.warmup=0",
                          "train.steps=200",    every,
                          "train.eval_every=0", NULL};
    write_config(path, dir, over);
}

int train_run(const char *dir, char *out) {
    int rc = sh(out, "./train --config %s/cfg.json --out %s/run", dir, dir);
    CHECK(rc == 0, "training %s failed (status %d): %s", dir, rc, out);
    return rc == 0;
}

int trained_scratch(const char *name, char *dir, size_t n, char *out,
                    const char *const *overrides) {
    char path[600];
    cli_scratch(name, dir, n);
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    write_config(path, dir, overrides);
    return train_run(dir, out);
}

int log_column(const char *path, const char *key, double *by_step, int max_step) {
    for (int s = 0; s <= max_step; s++) by_step[s] = NAN;
    size_t len;
    char *text = read_file(path, &len);
    if (!text) return -1;
    int rows = 0;
    for (char *line = strtok(text, "\n"); line && rows >= 0; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        if (!cJSON_IsObject(o) || !cJSON_IsNumber(step))
            rows = -1;
        else if (v) {
            int s = step->valueint;
            if (s >= 0 && s <= max_step) by_step[s] = v->valuedouble;
            rows++;
        }
        cJSON_Delete(o);
    }
    free(text);
    return rows;
}

cJSON *st_header(const char *path, size_t *data_at) {
    size_t len;
    unsigned char *buf = (unsigned char *)read_file(path, &len);
    uint64_t h = 0;
    for (int i = 0; buf && len >= 8 && i < 8; i++) h |= (uint64_t)buf[i] << (8 * i);
    cJSON *j = buf && len >= 8 && h <= len - 8
                   ? cJSON_ParseWithLength((const char *)buf + 8, (size_t)h)
                   : NULL;
    free(buf);
    if (data_at) *data_at = 8 + (size_t)h;
    return j;
}

long meta_step(const char *path) {
    cJSON *h = st_header(path, NULL);
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(h, "__metadata__"), "step"));
    long step = s ? atol(s) : -1;
    cJSON_Delete(h);
    return step;
}
