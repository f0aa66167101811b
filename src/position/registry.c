/* registry.c — the one table of position methods. Adding a method: write src/position/<name>.c
 * defining `const PosMethod pos_<name>` and add the line X(<name>) to POSITION_METHODS below;
 * its declaration and its table entry both come from that line. */
#include "position.h"

#include <limits.h>
#include <string.h>

#define POSITION_METHODS(X)                                                                        \
    X(none)                                                                                        \
    X(sinusoidal)                                                                                  \
    X(alibi)                                                                                       \
    X(rotary)                                                                                      \
    X(xpos)                                                                                        \
    X(learned)                                                                                     \
    X(t5)                                                                                          \
    X(kerple_log)                                                                                  \
    X(fire)

#define DECLARE(name) extern const PosMethod pos_##name;
#define ENTRY(name)   &pos_##name,
POSITION_METHODS(DECLARE)
static const PosMethod *const methods[] = {POSITION_METHODS(ENTRY)};
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

int pos_max_positions(const PosMethod *m, const Config *c) {
    return m->max_positions ? m->max_positions(c) : INT_MAX;
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
