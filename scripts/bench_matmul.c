/* bench_matmul.c — the matrix products of the reference model (6 layers, d_model 256, d_ff
 * 1024, 8 sequences of 256 tokens = 2,048 rows, full softmax over 33,278 words) timed through
 * OpenBLAS sgemm, oneDNN's float32 matmul and oneDNN's bf16 x bf16 -> f32 matmul, on the same
 * host in one run: the measurements issue 19 (bf16 training) starts from.
 *
 * Each product is C (M, N) = op(A) op(B) in one of the three layouts a linear layer needs:
 *   fwd   out = in W^T        A (M, K) row-major, B = W (N, K) row-major
 *   dinp  din = dout W        A (M, K), B (K, N)
 *   dw    dW = dout^T in      A stored (K, M) (transposed), B (K, N)
 * A primitive is created once per shape and reused, as a training step would; the timed loop
 * runs each product until 0.5 s have passed (after one warm-up call) and prints one JSON line
 * per product and engine: {"shape", "layout", "M", "N", "K", "engine", "gflops", "impl"},
 * after two rows of the instruction peaks (peak_rows below).
 * Built and run by scripts/bench_matmul.sh. */
#include <cblas.h>
#include <immintrin.h>
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { FWD, DINP, DW } Layout;
static const char *layout_name[] = {"fwd", "dinp", "dw"};

typedef struct {
    const char *name;
    int M, N, K;
    Layout layout;
} Shape;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die_dnnl(dnnl_status_t s, const char *what) {
    if (s == dnnl_success) return;
    fprintf(stderr, "bench_matmul: %s failed (oneDNN status %d)\n", what, (int)s);
    exit(1);
}

static void *alloc(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_matmul: out of memory\n");
        exit(1);
    }
    memset(p, 0, bytes);
    return p;
}

/* Round to nearest even, as the bf16 path would convert activations (finite inputs only: the
 * benchmark has no NaN). */
static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static void fill(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

/* Calls fn(ctx) until 0.5 s have passed after a warm-up call; returns GFLOP/s. */
static double timed(void (*fn)(void *), void *ctx, double flops) {
    fn(ctx);
    int reps = 0;
    double t0 = now(), t;
    do {
        fn(ctx);
        reps++;
        t = now() - t0;
    } while (t < 0.5);
    return flops * reps / t / 1e9;
}

typedef struct {
    const Shape *s;
    const float *a, *b;
    float *c;
} Sgemm;

static void run_sgemm(void *p) {
    const Sgemm *g = p;
    const Shape *s = g->s;
    if (s->layout == FWD)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->M, s->N, s->K, 1.0f, g->a, s->K,
                    g->b, s->K, 0.0f, g->c, s->N);
    else if (s->layout == DINP)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->M, s->N, s->K, 1.0f, g->a, s->K,
                    g->b, s->N, 0.0f, g->c, s->N);
    else
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->M, s->N, s->K, 1.0f, g->a, s->M,
                    g->b, s->N, 0.0f, g->c, s->N);
}

typedef struct {
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_exec_arg_t args[3];
} Dnnl;

static void run_dnnl(void *p) {
    Dnnl *d = p;
    die_dnnl(dnnl_primitive_execute(d->prim, d->stream, 3, d->args), "execute");
    die_dnnl(dnnl_stream_wait(d->stream), "stream wait");
}

/* A oneDNN matmul of shape s with inputs of type dt (f32 or bf16) and an f32 output; the
 * layouts are expressed as memory tags, so no data is transposed. Returns GFLOP/s and the
 * implementation oneDNN chose (impl, n bytes), or -1 when oneDNN has none for this CPU. */
static double bench_dnnl(dnnl_engine_t eng, dnnl_stream_t stream, const Shape *s,
                         dnnl_data_type_t dt, const void *a, const void *b, float *c, char *impl,
                         size_t n) {
    dnnl_dims_t ad = {s->M, s->K}, bd = {s->K, s->N}, cd = {s->M, s->N};
    dnnl_memory_desc_t amd, bmd, cmd;
    die_dnnl(dnnl_memory_desc_init_by_tag(&amd, 2, ad, dt, s->layout == DW ? dnnl_ba : dnnl_ab),
             "A desc");
    die_dnnl(dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dt, s->layout == FWD ? dnnl_ba : dnnl_ab),
             "B desc");
    die_dnnl(dnnl_memory_desc_init_by_tag(&cmd, 2, cd, dnnl_f32, dnnl_ab), "C desc");
    dnnl_matmul_desc_t md;
    die_dnnl(dnnl_matmul_desc_init(&md, &amd, &bmd, NULL, &cmd), "matmul desc");
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL);
    if (st == dnnl_unimplemented) return -1.0;
    die_dnnl(st, "primitive desc");
    const char *info = NULL;
    die_dnnl(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info), "impl query");
    snprintf(impl, n, "%s", info ? info : "?");
    Dnnl d = {.stream = stream};
    die_dnnl(dnnl_primitive_create(&d.prim, pd), "primitive");
    dnnl_memory_t am, bm, cm;
    die_dnnl(dnnl_memory_create(&am, &amd, eng, (void *)a), "A memory");
    die_dnnl(dnnl_memory_create(&bm, &bmd, eng, (void *)b), "B memory");
    die_dnnl(dnnl_memory_create(&cm, &cmd, eng, c), "C memory");
    d.args[0] = (dnnl_exec_arg_t){DNNL_ARG_SRC, am};
    d.args[1] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, bm};
    d.args[2] = (dnnl_exec_arg_t){DNNL_ARG_DST, cm};
    double g = timed(run_dnnl, &d, 2.0 * s->M * s->N * s->K);
    dnnl_memory_destroy(am), dnnl_memory_destroy(bm), dnnl_memory_destroy(cm);
    dnnl_primitive_destroy(d.prim);
    dnnl_primitive_desc_destroy(pd);
    return g;
}

static void row(const Shape *s, const char *engine, double gflops, const char *impl) {
    printf("{\"shape\": \"%s\", \"layout\": \"%s\", \"M\": %d, \"N\": %d, \"K\": %d, "
           "\"engine\": \"%s\", \"gflops\": %.1f, \"impl\": \"%s\"}\n",
           s->name, layout_name[s->layout], s->M, s->N, s->K, engine, gflops, impl);
    fflush(stdout);
}

/* ---- the instruction peaks: what any kernel on this host can reach ----
 * Twelve independent accumulator chains of one instruction on every thread, long enough for
 * throughput (not latency) to bound them: vfmadd231ps does 16 multiply-adds (32 FLOP) per
 * instruction, vdpbf16ps 32 (64 FLOP). Their ratio is the most bf16 can gain over float32 on
 * this CPU: about 2 where vdpbf16ps issues as often as an FMA, 1 or less where it does not
 * (seen: 2 cores of one host ran it at half the FMA's rate, so bf16 products were slower). */
static volatile float peak_sink;
#define CHAINS(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)
#define DECL(k)    __m512 a##k = _mm512_set1_ps(seed * (float)(k));
#define ADD(k)     sum = _mm512_add_ps(sum, a##k);
#define FMA(k)     a##k = _mm512_fmadd_ps(x, y, a##k);
#define DP(k)      a##k = _mm512_dpbf16_ps(a##k, xb, yb);

/* One thread's chains: FMAs, or (bf16) dot products, which need the instruction set's target
 * so that this file also builds, and runs its other rows, on a CPU without AVX512-BF16. */
static float fma_chains(float seed, long iters) {
    CHAINS(DECL)
    const __m512 x = _mm512_set1_ps(1e-7f), y = _mm512_set1_ps(seed);
    for (long i = 0; i < iters; i++) {
        CHAINS(FMA)
    }
    __m512 sum = _mm512_setzero_ps();
    CHAINS(ADD)
    return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx512bf16"))) static float dp_chains(float seed, long iters) {
    CHAINS(DECL)
    const __m512 x = _mm512_set1_ps(1e-7f), y = _mm512_set1_ps(seed);
    const __m512bh xb = _mm512_cvtne2ps_pbh(x, x), yb = _mm512_cvtne2ps_pbh(y, y);
    for (long i = 0; i < iters; i++) {
        CHAINS(DP)
    }
    __m512 sum = _mm512_setzero_ps();
    CHAINS(ADD)
    return _mm512_reduce_add_ps(sum);
}

static double peak_loop(int bf16, long iters) {
    double flops = 0.0;
#pragma omp parallel reduction(+ : flops)
    {
        const float seed = 1.0f + 1e-3f * (float)omp_get_thread_num();
        const float total = bf16 ? dp_chains(seed, iters) : fma_chains(seed, iters);
#pragma omp critical
        peak_sink += total; /* keeps the chains alive */
        flops += 12.0 * (double)iters * (bf16 ? 64.0 : 32.0);
    }
    return flops;
}

static void peak_rows(int has_bf16) {
    const char *names[2] = {"vfmadd231ps-f32", "vdpbf16ps-bf16"};
    for (int bf16 = 0; bf16 < 1 + has_bf16; bf16++) {
        peak_loop(bf16, 1000000); /* warm-up: clocks up */
        double t = now(), f = peak_loop(bf16, 50000000);
        printf("{\"shape\": \"peak\", \"engine\": \"%s\", \"threads\": %d, \"gflops\": %.1f}\n",
               names[bf16], omp_get_max_threads(), f / (now() - t) / 1e9);
    }
    if (!has_bf16)
        fprintf(stderr, "bench_matmul: no vdpbf16ps row: this CPU has no AVX512-BF16; the "
                        "onednn-bf16 rows below are oneDNN's own choice for such a CPU\n");
}

int main(void) {
    /* N = 2048 rows per step; the output layer in XENT_CHUNK = 256-row chunks */
    static const Shape shapes[] = {
        {"qkv", 2048, 768, 256, FWD},     {"qkv", 2048, 256, 768, DINP},
        {"qkv", 768, 256, 2048, DW},      {"proj", 2048, 256, 256, FWD},
        {"proj", 2048, 256, 256, DINP},   {"proj", 256, 256, 2048, DW},
        {"fc1", 2048, 1024, 256, FWD},    {"fc1", 2048, 256, 1024, DINP},
        {"fc1", 1024, 256, 2048, DW},     {"fc2", 2048, 256, 1024, FWD},
        {"fc2", 2048, 1024, 256, DINP},   {"fc2", 256, 1024, 2048, DW},
        {"logits", 256, 33278, 256, FWD}, {"logits", 256, 256, 33278, DINP},
        {"logits", 33278, 256, 256, DW},
    };
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    die_dnnl(dnnl_engine_create(&eng, dnnl_cpu, 0), "engine");
    die_dnnl(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags), "stream");
    fprintf(stderr, "bench_matmul: %d OpenMP threads, oneDNN %d.%d\n", omp_get_max_threads(),
            dnnl_version()->major, dnnl_version()->minor);
    peak_rows(__builtin_cpu_supports("avx512bf16"));
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const Shape *s = &shapes[i];
        size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N;
        float *a = alloc(na * 4), *b = alloc(nb * 4), *c = alloc(nc * 4);
        uint16_t *a16 = alloc(na * 2), *b16 = alloc(nb * 2);
        fill(a, na, 1), fill(b, nb, 2);
        for (size_t k = 0; k < na; k++) a16[k] = to_bf16(a[k]);
        for (size_t k = 0; k < nb; k++) b16[k] = to_bf16(b[k]);
        char impl[256];
        Sgemm g = {s, a, b, c};
        row(s, "openblas-f32", timed(run_sgemm, &g, 2.0 * s->M * s->N * s->K), "sgemm");
        double f = bench_dnnl(eng, stream, s, dnnl_f32, a, b, c, impl, sizeof impl);
        row(s, "onednn-f32", f, impl);
        double h = bench_dnnl(eng, stream, s, dnnl_bf16, a16, b16, c, impl, sizeof impl);
        if (h >= 0.0)
            row(s, "onednn-bf16", h, impl);
        else
            fprintf(stderr, "bench_matmul: %s %s: oneDNN has no bf16 matmul on this CPU\n", s->name,
                    layout_name[s->layout]);
        free(a), free(b), free(c), free(a16), free(b16);
    }
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
    return 0;
}
