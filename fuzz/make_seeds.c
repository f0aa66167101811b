/* make_seeds.c — writes the checkpoint-like seed of the safetensors fuzz corpus (make fuzz;
 * the tensors are in tests/fuzz_common.h). Usage: make_seeds OUT.safetensors */
#include <stdio.h>

#include "../tests/fuzz_common.h"

int main(int argc, char **argv) {
    char err[512];
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT.safetensors\n", argv[0]);
        return 2;
    }
    if (fuzz_write_seed(argv[1], err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    return 0;
}
