/* params.h — the one table of learnable tensors.
 *
 * Parameters, gradients and both AdamW moments are four buffers with one layout: tensor k
 * occupies [offset, offset + numel) in each. The table is computed from the config in one
 * place (model_declare), and allocation, checkpoint names, AdamW, weight decay, the gradient
 * norm and the gradient checks all loop over it — adding a tensor is adding one row. */
#ifndef PARAMS_H
#define PARAMS_H

#include <stddef.h>

#define MAX_TENSORS 1024
#define MAX_DIMS    4

typedef struct {
    char name[64]; /* PyTorch-style name, e.g. "layers.3.attn.qkv.weight" */
    int ndim;
    size_t shape[MAX_DIMS]; /* row-major; a linear layer's weight is (out, in) */
    size_t numel, offset;   /* in floats, offset into the shared buffers (64-byte aligned) */
    int decay;              /* 1: AdamW weight decay applies (matrices); 0: biases, gains, pos */
} TensorSpec;

typedef struct {
    TensorSpec t[MAX_TENSORS];
    int n;
    size_t total; /* floats, including alignment padding */
} ParamTable;

/* Appends a tensor; returns its index. ndim 1..4; dims are given as size_t. */
int param_add(ParamTable *pt, const char *name, int decay, int ndim, ...);
int param_find(const ParamTable *pt, const char *name); /* -1 if absent */
size_t param_count(const ParamTable *pt);               /* learnable scalars, without padding */

#endif
