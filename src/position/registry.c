/* registry.c — the one table of position methods. Adding a method: write src/position/<name>.c
 * defining `const PosMethod pos_<name>` and add one line to the table below. */
#include "position.h"

#include <string.h>

extern const PosMethod pos_none, pos_sinusoidal, pos_alibi;
extern const PosMethod pos_rotary, pos_xpos;
extern const PosMethod pos_learned;
extern const PosMethod pos_t5, pos_kerple_log, pos_fire;

static const PosMethod *const methods[] = {
    &pos_none,    &pos_sinusoidal, &pos_alibi,      &pos_rotary, &pos_xpos,
    &pos_learned, &pos_t5,         &pos_kerple_log, &pos_fire,
};
#define N_METHODS ((int)(sizeof methods / sizeof methods[0]))

int pos_count(void) {
    return N_METHODS;
}
const PosMethod *pos_at(int i) {
    return i >= 0 && i < N_METHODS ? methods[i] : NULL;
}

const PosMethod *pos_find(const char *name) {
    for (int i = 0; i < N_METHODS; i++)
        if (strcmp(methods[i]->name, name) == 0) return methods[i];
    return NULL;
}

const char *pos_names(void) {
    static char names[512];
    if (!names[0])
        for (int i = 0; i < N_METHODS; i++) {
            if (i) strcat(names, "|");
            strcat(names, methods[i]->name);
        }
    return names;
}
