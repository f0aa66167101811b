/* fuzz_safetensors.c — libFuzzer target for the safetensors loader (make fuzz).
 *
 * Each input is a whole file for st_open_buffer. A refusal must be a one-line message naming
 * the file; an acceptance must pass st_sound (every tensor inside the data section, readable,
 * the data section covered exactly). A violated rule aborts, as do the sanitizers' reports, so
 * libFuzzer keeps the input. The same checks run, seeded, in make test (tests/test_fuzz.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    char err[1024] = "", why[256] = "";
    StFile *f = st_open_buffer(buf, size, "fuzz", err, sizeof err);
    if (!f && !(one_line(err) && !strncmp(err, "fuzz: ", 6))) {
        fprintf(stderr, "bad refusal: '%s'\n", err);
        abort();
    }
    if (f && !st_sound(f, buf, size, why, sizeof why)) {
        fprintf(stderr, "accepted an unsound file: %s\n", why);
        abort();
    }
    st_close(f);
    return 0;
}
