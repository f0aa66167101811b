/* gemm.c — the one matrix product every layer outside attention calls, with cblas_sgemm's
 * row-major interface, on one of three engines (train.matmul, train.precision):
 *
 *   GEMM_OPENBLAS     cblas_sgemm, float32 (the default; a NULL Gemm means this engine)
 *   GEMM_ONEDNN_F32   oneDNN's matmul primitive in float32 (Debian's libdnnl, the library
 *                     PyTorch's CPU matmuls use); faster than OpenBLAS on some of this
 *                     model's shapes (scripts/bench_matmul.sh)
 *   GEMM_ONEDNN_BF16  oneDNN's bf16 x bf16 -> f32 matmul (AVX512-BF16's vdpbf16ps): both inputs
 *                     rounded to bfloat16, float32 accumulation and output
 *
 * In bf16 an input that lies inside the model's parameters is read from their bf16 copy at the
 * same offset (params16, refreshed once per optimizer step), so a weight is never converted per
 * call; any other input (an activation, a gradient) is rounded into this Gemm's scratch where it
 * is used. The scratch grows to the largest operand seen, which happens in a run's first pass.
 *
 * A oneDNN primitive is specific to its shape, strides, alpha and whether it accumulates, and
 * creating one costs far more than a small product, so each is created at its first use and
 * kept with memory objects whose data pointers are swapped per call: after the first step of a
 * pass nothing is created or allocated. Strides are oneDNN memory descriptors, so a transposed
 * or strided operand is read in place. */
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "ops.h"

typedef struct {
    int M, N, K, ta, tb, lda, ldb, ldc, accumulate;
    float alpha;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} Entry;

/* A bf16 operand rounded at use: its buffer grows to the largest operand. */
typedef struct {
    uint16_t *p;
    size_t cap;
} Buf16;

struct Gemm {
    GemmEngine engine;
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    Entry *e;
    int n, cap;
    uintptr_t p0, p1; /* the parameters' address range [p0, p1) (bf16) */
    const uint16_t *params16;
    int rows1_bf16; /* gemm_rows1_bf16 */
    Buf16 a16, b16;
};

static void check(dnnl_status_t s, const char *what) {
    if (s != dnnl_success) sys_error("oneDNN: %s failed (status %d)", what, (int)s);
}

/* TRAINSHORT_NO_BF16=1 answers as a CPU without it would, so the tests reach that error path
 * on any machine. */
int bf16_cpu_supported(void) {
    const char *off = getenv("TRAINSHORT_NO_BF16");
    if (off && *off && strcmp(off, "0")) return 0;
    return __builtin_cpu_supports("avx512bf16") != 0;
}

const char *gemm_engine_name(GemmEngine e) {
    return e == GEMM_ONEDNN_BF16 ? "onednn-bf16" : e == GEMM_ONEDNN_F32 ? "onednn-f32" : "openblas";
}

Gemm *gemm_create(GemmEngine engine, const float *params, const uint16_t *params16,
                  size_t n_params) {
    Gemm *g = xcalloc(1, sizeof *g);
    g->engine = engine;
    g->p0 = (uintptr_t)params;
    g->p1 = (uintptr_t)(params + n_params);
    g->params16 = params16;
    if (engine != GEMM_OPENBLAS) {
        check(dnnl_engine_create(&g->eng, dnnl_cpu, 0), "engine creation");
        check(dnnl_stream_create(&g->stream, g->eng, dnnl_stream_default_flags), "stream creation");
    }
    return g;
}

void gemm_free(Gemm *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        dnnl_memory_destroy(g->e[i].a);
        dnnl_memory_destroy(g->e[i].b);
        dnnl_memory_destroy(g->e[i].c);
        dnnl_primitive_destroy(g->e[i].prim);
    }
    free(g->e);
    free(g->a16.p);
    free(g->b16.p);
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->eng) dnnl_engine_destroy(g->eng);
    free(g);
}

int gemm_primitives(const Gemm *g) {
    return g ? g->n : 0;
}

/* A (rows x cols) matrix with row stride ld, stored transposed when t: dims (rows, cols) of the
 * product's view, strides of the storage. */
static void desc(dnnl_memory_desc_t *md, int rows, int cols, int t, int ld, dnnl_data_type_t dt,
                 const char *what) {
    dnnl_dims_t dims = {rows, cols}, strides = {t ? 1 : ld, t ? ld : 1};
    check(dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides), what);
}

static Entry create(const Gemm *g, Entry e) {
    const dnnl_data_type_t in = g->engine == GEMM_ONEDNN_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t amd, bmd, cmd;
    desc(&amd, e.M, e.K, e.ta, e.lda, in, "A descriptor");
    desc(&bmd, e.K, e.N, e.tb, e.ldb, in, "B descriptor");
    desc(&cmd, e.M, e.N, 0, e.ldc, dnnl_f32, "C descriptor");
    dnnl_matmul_desc_t md;
    check(dnnl_matmul_desc_init(&md, &amd, &bmd, NULL, &cmd), "matmul descriptor");
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po;
    check(dnnl_primitive_attr_create(&attr), "attribute");
    if (e.alpha != 1.0f)
        check(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &e.alpha), "alpha");
    check(dnnl_post_ops_create(&po), "post-ops");
    if (e.accumulate) check(dnnl_post_ops_append_sum(po, 1.0f), "sum post-op"); /* C += */
    check(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops attribute");
    dnnl_primitive_desc_t pd;
    check(dnnl_primitive_desc_create(&pd, &md, attr, g->eng, NULL), "matmul primitive");
    check(dnnl_primitive_create(&e.prim, pd), "matmul primitive");
    check(dnnl_memory_create(&e.a, &amd, g->eng, DNNL_MEMORY_NONE), "A memory");
    check(dnnl_memory_create(&e.b, &bmd, g->eng, DNNL_MEMORY_NONE), "B memory");
    check(dnnl_memory_create(&e.c, &cmd, g->eng, DNNL_MEMORY_NONE), "C memory");
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return e;
}

static Entry *lookup(Gemm *g, Entry key) {
    for (int i = 0; i < g->n; i++) {
        const Entry *e = &g->e[i];
        if (e->M == key.M && e->N == key.N && e->K == key.K && e->ta == key.ta && e->tb == key.tb &&
            e->lda == key.lda && e->ldb == key.ldb && e->ldc == key.ldc &&
            e->accumulate == key.accumulate && e->alpha == key.alpha)
            return &g->e[i];
    }
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 16;
        g->e = realloc(g->e, (size_t)g->cap * sizeof *g->e);
        if (!g->e) sys_error("out of memory growing the oneDNN primitive cache");
    }
    g->e[g->n] = create(g, key);
    return &g->e[g->n++];
}

/* The bf16 form of a stored (rows x cols, row stride ld) float32 operand: the parameters' bf16
 * copy when it lies inside them (same offset and stride), else rounded into b (compact: *ld
 * becomes cols). */
static const uint16_t *bf16_operand(const Gemm *g, Buf16 *b, const float *x, int rows, int cols,
                                    int *ld) {
    const uintptr_t lo = (uintptr_t)x, hi = (uintptr_t)(x + (size_t)(rows - 1) * *ld + cols);
    if (g->params16 && lo >= g->p0 && hi <= g->p1) return g->params16 + (x - (const float *)g->p0);
    const size_t n = (size_t)rows * cols;
    if (n > b->cap) {
        free(b->p);
        b->p = xcalloc(n, sizeof *b->p);
        b->cap = n;
    }
    if (*ld == cols) {
        bf16_from_f32(b->p, x, n);
    } else {
        const int src_ld = *ld;
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                b->p[(size_t)r * cols + c] = bf16_round(x[(size_t)r * src_ld + c]);
    }
    *ld = cols;
    return b->p;
}

void gemm_rows1_bf16(Gemm *g, const uint16_t *params16) {
    if (g->engine != GEMM_OPENBLAS) sys_error("internal: gemm_rows1_bf16 on a oneDNN engine");
    g->params16 = params16;
    g->rows1_bf16 = 1;
}

/* y (N) = alpha B a + beta y, B (N x K, row stride ldb) in bf16, widened in registers. */
static void gemv_bf16(int N, int K, float alpha, const float *a, const uint16_t *B, int ldb,
                      float beta, float *y) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const uint16_t *b = B + (size_t)n * ldb;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int k = 0; k < K; k++) s += a[k] * bf16_to_float(b[k]);
        y[n] = alpha * s + (beta != 0.0f ? beta * y[n] : 0.0f);
    }
}

void gemm(Gemm *g, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    if (g && g->rows1_bf16 && M == 1 && N > 0 && K > 0 && !ta && tb && (uintptr_t)B >= g->p0 &&
        (uintptr_t)(B + (size_t)(N - 1) * ldb + K) <= g->p1) {
        gemv_bf16(N, K, alpha, A, g->params16 + (B - (const float *)g->p0), ldb, beta, C);
        return;
    }
    if (!g || g->engine == GEMM_OPENBLAS) {
        /* One row (a decode step of generation): OpenBLAS's sgemm packs the whole of B for
         * it, which took half of a decode step's time; sgemv reads B once. C = op(A) op(B)
         * is then y = op(B)^T a, a being A's one row (A's column, stride lda, when ta). */
        if (M == 1 && K > 0)
            cblas_sgemv(CblasRowMajor, tb ? CblasNoTrans : CblasTrans, tb ? N : K, tb ? K : N,
                        alpha, B, ldb, A, ta ? lda : 1, beta, C, 1);
        else
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                        tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                        ldc);
        return;
    }
    if (beta != 0.0f && beta != 1.0f) sys_error("internal: oneDNN gemm with beta %g", beta);
    if (M == 0 || N == 0) return;
    if (K == 0) { /* an empty sum: C = 0, or unchanged when accumulating, as cblas_sgemm */
        if (beta == 0.0f)
            for (int r = 0; r < M; r++) memset(C + (size_t)r * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    const void *a = A, *b = B;
    if (g->engine == GEMM_ONEDNN_BF16) {
        /* the stored shapes: A is (M, K), or (K, M) transposed; B (K, N) or (N, K) */
        a = bf16_operand(g, &g->a16, A, ta ? K : M, ta ? M : K, &lda);
        b = bf16_operand(g, &g->b16, B, tb ? N : K, tb ? K : N, &ldb);
    }
    Entry *e = lookup(g, (Entry){.M = M,
                                 .N = N,
                                 .K = K,
                                 .ta = ta,
                                 .tb = tb,
                                 .lda = lda,
                                 .ldb = ldb,
                                 .ldc = ldc,
                                 .accumulate = beta != 0.0f,
                                 .alpha = alpha});
    check(dnnl_memory_set_data_handle(e->a, (void *)a), "A data");
    check(dnnl_memory_set_data_handle(e->b, (void *)b), "B data");
    check(dnnl_memory_set_data_handle(e->c, C), "C data");
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    check(dnnl_primitive_execute(e->prim, g->stream, 3, args), "matmul");
    check(dnnl_stream_wait(g->stream), "matmul");
}
