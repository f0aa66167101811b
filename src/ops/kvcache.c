/* kvcache.c — the paged key/value cache of generation (ops.h has the layout).
 *
 * The pool is one calloc'd array: glibc serves a large calloc with fresh zero pages from mmap,
 * so a block costs memory only once a sequence writes into it, and the resident size grows one
 * block at a time although the pool's size is fixed when it is created. Free blocks are a stack,
 * so a block just returned is the next one handed out (its pages are already resident). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/util.h"
#include "ops.h"

void kv_pool_init(KvPool *p, int L, int Hkv, int D, KvDtype dtype, int n_blocks, int n_seqs) {
    memset(p, 0, sizeof *p);
    p->L = L;
    p->Hkv = Hkv;
    p->D = D;
    p->dtype = dtype;
    p->n_blocks = p->n_free = n_blocks;
    p->n_seqs = n_seqs;
    p->max_table = n_blocks;
    p->block_elems = (size_t)L * 2 * Hkv * KV_BLOCK * D;
    p->elem_bytes = dtype == KV_BF16 ? sizeof(uint16_t) : sizeof(float);
    p->data = calloc((size_t)n_blocks * p->block_elems, p->elem_bytes);
    if (!p->data)
        sys_error("out of memory: a KV cache of %d blocks needs %.1f MB", n_blocks,
                  (double)n_blocks * p->block_elems * p->elem_bytes / 1e6);
    p->free_ids = xcalloc((size_t)n_blocks, sizeof(int));
    /* pushed in reverse, so block 0 is handed out first */
    for (int i = 0; i < n_blocks; i++) p->free_ids[i] = n_blocks - 1 - i;
    p->seqs = xcalloc((size_t)n_seqs, sizeof(KvSeq));
    p->pass_pos0 = xcalloc((size_t)n_seqs, sizeof(int));
    for (int s = 0; s < n_seqs; s++) p->seqs[s].table = xcalloc((size_t)n_blocks, sizeof(int));
}

void kv_pool_free(KvPool *p) {
    for (int s = 0; s < p->n_seqs; s++) free(p->seqs[s].table);
    free(p->seqs);
    free(p->pass_pos0);
    free(p->free_ids);
    free(p->data);
    memset(p, 0, sizeof *p);
}

int kv_reserve(KvPool *p, int s, int n, char *err, size_t en) {
    KvSeq *q = &p->seqs[s];
    const int need = (n + KV_BLOCK - 1) / KV_BLOCK - q->first_block - q->n_blocks;
    if (need <= 0) return 0;
    if (need > p->n_free) {
        snprintf(err, en,
                 "KV cache exhausted: %d more blocks of %d positions needed for position %d, "
                 "%d of %d free",
                 need, KV_BLOCK, n - 1, p->n_free, p->n_blocks);
        return -1;
    }
    for (int i = 0; i < need; i++) q->table[q->n_blocks++] = p->free_ids[--p->n_free];
    if (p->n_blocks - p->n_free > p->peak_used) p->peak_used = p->n_blocks - p->n_free;
    return 0;
}

void kv_evict_before(KvPool *p, int s, int pos) {
    KvSeq *q = &p->seqs[s];
    int drop = pos / KV_BLOCK - q->first_block; /* blocks wholly below pos */
    if (drop <= 0) return;
    if (drop > q->n_blocks) drop = q->n_blocks;
    for (int i = 0; i < drop; i++) p->free_ids[p->n_free++] = q->table[i];
    memmove(q->table, q->table + drop, sizeof(int) * (size_t)(q->n_blocks - drop));
    q->n_blocks -= drop;
    q->first_block += drop;
}

void kv_release(KvPool *p, int s) {
    KvSeq *q = &p->seqs[s];
    for (int i = q->n_blocks - 1; i >= 0; i--) p->free_ids[p->n_free++] = q->table[i];
    q->n_blocks = q->first_block = q->len = 0;
}

/* The start of kv head g's keys (values: half = 1) of layer l in the block holding pos. */
static void *block_part(const KvPool *p, int s, int l, int g, int pos, int half) {
    const KvSeq *q = &p->seqs[s];
    const int k = pos / KV_BLOCK - q->first_block;
    if (k < 0 || k >= q->n_blocks)
        sys_error("internal: position %d of KV sequence %d is not held", pos, s);
    const size_t head = (size_t)KV_BLOCK * p->D;
    const size_t elem = (size_t)q->table[k] * p->block_elems +
                        ((size_t)l * 2 + (size_t)half) * p->Hkv * head + (size_t)g * head;
    return p->data + elem * p->elem_bytes;
}

void *kv_block_keys(const KvPool *p, int s, int l, int g, int pos) {
    return block_part(p, s, l, g, pos, 0);
}

void *kv_block_values(const KvPool *p, int s, int l, int g, int pos) {
    return block_part(p, s, l, g, pos, 1);
}

float kv_get(const KvPool *p, const void *part, size_t i) {
    return p->dtype == KV_BF16 ? bf16_to_float(((const uint16_t *)part)[i])
                               : ((const float *)part)[i];
}

void kv_put(const KvPool *p, void *part, size_t i, float x) {
    if (p->dtype == KV_BF16)
        ((uint16_t *)part)[i] = bf16_round(x);
    else
        ((float *)part)[i] = x;
}

int kv_dtype_parse(const char *name) {
    return !strcmp(name, "f32") ? KV_F32 : !strcmp(name, "bf16") ? KV_BF16 : -1;
}

const char *kv_dtype_name(KvDtype t) {
    return t == KV_BF16 ? "bf16" : "f32";
}
