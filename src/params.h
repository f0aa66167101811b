/* params.h — the one table of learnable tensors.
 *
 * Parameters, gradients and both AdamW moments are four buffers with one layout: tensor k
 * occupies [offset, offset + numel) in each. The table is computed from the config in one
 * place (model_spec_init), and allocation, checkpoint names, AdamW, weight decay, the gradient
 * norm and the gradient checks all loop over it — adding a tensor is adding one row.
 * The rows are a growing array (10 to 18 per layer, so no fixed count fits every documented
 * depth): a table starts as {0}, is filled by param_add and released by param_free; copying a
 * ParamTable by value would share its rows, so pass it by pointer. */
#ifndef PARAMS_H
#define PARAMS_H

#include <stddef.h>

#define MAX_DIMS 4

/* How model_init fills a tensor (docs at the top of model.c). The kind is set where the tensor
 * is declared, so initialization never guesses from a name. */
typedef enum {
    INIT_ZEROS,    /* biases */
    INIT_ONES,     /* norm gains */
    INIT_NORMAL,   /* normal(0, std) */
    INIT_RESIDUAL, /* normal(0, std / sqrt(2 n_layers)): a matrix writing into the residual
                    * stream (GPT-2's rule) */
    INIT_SCALED,   /* rows from `row` on normal(0, std * gain), the rows before normal(0, std):
                    * DeepNorm's beta on whole matrices (row 0) and on the v third of qkv */
    INIT_POS,      /* set by the position method's init() hook */
} InitKind;

typedef struct {
    InitKind kind;
    double std;  /* INIT_NORMAL, INIT_RESIDUAL, INIT_SCALED */
    double gain; /* INIT_SCALED */
    size_t row;  /* INIT_SCALED: the first scaled row */
} ParamInit;

#define PARAM_ZEROS                  ((ParamInit){INIT_ZEROS, 0.0, 0.0, 0})
#define PARAM_ONES                   ((ParamInit){INIT_ONES, 0.0, 0.0, 0})
#define PARAM_NORMAL(std)            ((ParamInit){INIT_NORMAL, (std), 0.0, 0})
#define PARAM_RESIDUAL(std)          ((ParamInit){INIT_RESIDUAL, (std), 0.0, 0})
#define PARAM_SCALED(std, gain, row) ((ParamInit){INIT_SCALED, (std), (gain), (row)})
#define PARAM_POS                    ((ParamInit){INIT_POS, 0.0, 0.0, 0})

typedef struct {
    char name[64]; /* PyTorch-style name, e.g. "layers.3.attn.qkv.weight" */
    int ndim;
    size_t shape[MAX_DIMS]; /* row-major; a linear layer's weight is (out, in) */
    size_t numel, offset;   /* in floats, offset into the shared buffers (64-byte aligned) */
    int decay;              /* 1: AdamW weight decay applies (matrices); 0: biases, gains, pos */
    ParamInit init;
} TensorSpec;

typedef struct {
    TensorSpec *t; /* n rows, room for cap */
    int n, cap;
    size_t total; /* floats, including alignment padding */
} ParamTable;

/* Appends a tensor; returns its index. ndim 1..4; dims are given as size_t. */
int param_add(ParamTable *pt, const char *name, int decay, ParamInit init, int ndim, ...);
int param_find(const ParamTable *pt, const char *name); /* -1 if absent */
size_t param_count(const ParamTable *pt);               /* learnable scalars, without padding */
void param_free(ParamTable *pt);                        /* releases the rows; pt becomes {0} */

#endif
