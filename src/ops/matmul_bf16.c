/* matmul_bf16.c — bfloat16 x bfloat16 -> float32 matrix products through oneDNN's matmul
 * primitive (Debian's libdnnl, the library PyTorch's CPU autocast uses), for the bf16
 * precision of issue 19. Debian's OpenBLAS has no bf16 GEMM; oneDNN's runs on AVX512-BF16's
 * vdpbf16ps at about twice the float32 rate (scripts/bench_matmul.sh).
 *
 * A primitive is specific to its shape, layout and whether it accumulates, and creating one
 * costs far more than a small product, so each is created at its first use and kept in the
 * engine's cache with memory objects whose data pointers are swapped per call: a training step
 * after the first creates and allocates nothing. The layouts are expressed as oneDNN memory
 * tags (row-major "ab" or its transpose "ba"), so nothing is transposed or copied. */
#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "ops.h"

typedef struct {
    int M, N, K, accumulate;
    MatmulLayout layout;
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
} Entry;

struct Bf16Matmul {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    Entry *e;
    int n, cap;
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

Bf16Matmul *bf16_matmul_create(void) {
    Bf16Matmul *m = xcalloc(1, sizeof *m);
    check(dnnl_engine_create(&m->engine, dnnl_cpu, 0), "engine creation");
    check(dnnl_stream_create(&m->stream, m->engine, dnnl_stream_default_flags), "stream creation");
    return m;
}

void bf16_matmul_free(Bf16Matmul *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        dnnl_memory_destroy(m->e[i].a);
        dnnl_memory_destroy(m->e[i].b);
        dnnl_memory_destroy(m->e[i].c);
        dnnl_primitive_destroy(m->e[i].prim);
    }
    free(m->e);
    dnnl_stream_destroy(m->stream);
    dnnl_engine_destroy(m->engine);
    free(m);
}

/* The primitive of one product, its memory objects without data (set per call). */
static Entry create(Bf16Matmul *m, int M, int N, int K, MatmulLayout layout, int accumulate) {
    Entry e = {M, N, K, accumulate, layout, NULL, NULL, NULL, NULL};
    dnnl_dims_t ad = {M, K}, bd = {K, N}, cd = {M, N};
    dnnl_memory_desc_t amd, bmd, cmd;
    check(dnnl_memory_desc_init_by_tag(&amd, 2, ad, dnnl_bf16, layout == MM_DW ? dnnl_ba : dnnl_ab),
          "A descriptor");
    check(
        dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_bf16, layout == MM_FWD ? dnnl_ba : dnnl_ab),
        "B descriptor");
    check(dnnl_memory_desc_init_by_tag(&cmd, 2, cd, dnnl_f32, dnnl_ab), "C descriptor");
    dnnl_matmul_desc_t md;
    check(dnnl_matmul_desc_init(&md, &amd, &bmd, NULL, &cmd), "matmul descriptor");
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po;
    check(dnnl_primitive_attr_create(&attr), "attribute");
    check(dnnl_post_ops_create(&po), "post-ops");
    if (accumulate) check(dnnl_post_ops_append_sum(po, 1.0f), "sum post-op"); /* C += */
    check(dnnl_primitive_attr_set_post_ops(attr, po), "post-ops attribute");
    dnnl_primitive_desc_t pd;
    check(dnnl_primitive_desc_create(&pd, &md, attr, m->engine, NULL), "matmul primitive");
    check(dnnl_primitive_create(&e.prim, pd), "matmul primitive");
    check(dnnl_memory_create(&e.a, &amd, m->engine, DNNL_MEMORY_NONE), "A memory");
    check(dnnl_memory_create(&e.b, &bmd, m->engine, DNNL_MEMORY_NONE), "B memory");
    check(dnnl_memory_create(&e.c, &cmd, m->engine, DNNL_MEMORY_NONE), "C memory");
    dnnl_primitive_desc_destroy(pd);
    dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return e;
}

static Entry *lookup(Bf16Matmul *m, int M, int N, int K, MatmulLayout layout, int accumulate) {
    for (int i = 0; i < m->n; i++) {
        Entry *e = &m->e[i];
        if (e->M == M && e->N == N && e->K == K && e->layout == layout &&
            e->accumulate == accumulate)
            return e;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 16;
        m->e = realloc(m->e, (size_t)m->cap * sizeof *m->e);
        if (!m->e) sys_error("out of memory growing the oneDNN primitive cache");
    }
    m->e[m->n] = create(m, M, N, K, layout, accumulate);
    return &m->e[m->n++];
}

void bf16_matmul(Bf16Matmul *m, float *C, const uint16_t *A, const uint16_t *B, int M, int N, int K,
                 MatmulLayout layout, int accumulate) {
    Entry *e = lookup(m, M, N, K, layout, accumulate);
    check(dnnl_memory_set_data_handle(e->a, (void *)A), "A data");
    check(dnnl_memory_set_data_handle(e->b, (void *)B), "B data");
    check(dnnl_memory_set_data_handle(e->c, C), "C data");
    dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    check(dnnl_primitive_execute(e->prim, m->stream, 3, args), "matmul");
    check(dnnl_stream_wait(m->stream), "matmul");
}

int bf16_matmul_cached(const Bf16Matmul *m) {
    return m->n;
}
