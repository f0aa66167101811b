/* describe.c — ./train --describe and --list-positions: the binary's own answers (resolved
 * config, registry, parameter count, FLOPs) for scripts that would otherwise copy them. */
#include "describe.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "model.h"
#include "params.h"
#include "position/position.h"
#include "util/util.h"

static cJSON *method_object(const PosMethod *m) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", m->name);
    cJSON_AddStringToObject(o, "label", m->label);
    cJSON_AddStringToObject(o, "color", m->color);
    cJSON_AddStringToObject(o, "summary", m->summary);
    return o;
}

static void print_line(FILE *f, cJSON *o) {
    char *line = cJSON_PrintUnformatted(o);
    if (!line) sys_error("out of memory writing JSON");
    fprintf(f, "%s\n", line);
    cJSON_free(line);
    cJSON_Delete(o);
}

void describe_list_positions(FILE *f) {
    for (int i = 0; i < pos_count(); i++) print_line(f, method_object(pos_at(i)));
}

static void add_flops(cJSON *flops, const Config *cfg, int V, int T) {
    char key[16];
    snprintf(key, sizeof key, "%d", T);
    if (!cJSON_GetObjectItemCaseSensitive(flops, key))
        cJSON_AddNumberToObject(flops, key, model_flops_per_token(cfg, V, T));
}

void describe_write(FILE *f, const Config *cfg, int V, const int *lengths, int n) {
    cJSON *o = cJSON_CreateObject();
    char *text = config_to_json(cfg);
    cJSON *c = cJSON_Parse(text);
    free(text);
    if (!c) sys_error("out of memory describing the config");
    cJSON_AddItemToObject(o, "config", c);
    ModelSpec s;
    model_spec_init(&s, cfg, V);
    cJSON_AddNumberToObject(o, "vocab_size", V);
    cJSON_AddNumberToObject(o, "params", (double)param_count(&s.pt));
    model_spec_free(&s);
    const int L = cfg->train.seq_len;
    cJSON_AddNumberToObject(o, "train_flops_per_token", 3 * model_flops_per_token(cfg, V, L));
    cJSON *flops = cJSON_AddObjectToObject(o, "flops_per_token");
    add_flops(flops, cfg, V, L);
    for (int i = 0; i < n; i++) add_flops(flops, cfg, V, lengths[i]);
    cJSON *methods = cJSON_AddArrayToObject(o, "methods");
    for (int i = 0; i < pos_count(); i++) cJSON_AddItemToArray(methods, method_object(pos_at(i)));
    print_line(f, o);
}
