#!/usr/bin/python3
"""bench_vs_torch.py — the reference model of scripts/bench_train.sh, trained in PyTorch, timed.

Called by scripts/bench_vs_torch.sh, which alternates it with ./train on the same host; run it
with Debian's /usr/bin/python3 (torch 1.13). The model is written here from the description in
README.md ("Speed"), not shared with tests/ref/:
  6 layers, d_model C = 256, 8 heads, d_ff 1024, GELU (erf), pre-LN with a final LayerNorm,
  dropout 0.1 on the embedding and on each residual branch (attention and activation dropout 0,
  as in configs/wt2-sinusoidal-L256.json), fairseq's sinusoidal table (all sines then all
  cosines, positions from 2) added to the sqrt(C)-scaled embedding, the output layer tied to the
  embedding (no bias), full softmax over V = 33,278 words, L = 256, batch 8, AdamW (lr 1e-3,
  weight decay 0.01 on matrices only, as ./train), gradient clipping at norm 1.0.
Attention is explicit matmuls with a masked softmax: torch 1.13 has no
F.scaled_dot_product_attention.

Input: random token ids in [0, V), a fresh (B, L + 1) batch each step (inputs are the first L,
targets the last L). Speed does not depend on the data, so WikiText-2 is not read.

Timing follows bench_train.sh: --steps N in all, the first --warmup W untimed; tokens_per_s is
(N - W) * B * L over the wall time of steps W+1..N. flops_per_token is passed in (from ./train's
start-up summary) so the torch and trainshort rows use the same count; gflops = tokens_per_s *
flops_per_token.

Prints one JSON line:
  {"name": "torch-fp32", "tokens_per_s": ..., "gflops": ..., "flops_per_token": ..., "torch": "1.13.0a0"}
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

V, L, B = 33278, 256, 8
C, H, FF, N_LAYERS, DROPOUT = 256, 8, 1024, 6, 0.1
SIN_OFFSET = 2  # fairseq numbers positions from padding_idx + 1 (src/position/sinusoidal.c)


def sinusoidal_table(rows, c):
    """(rows, c): pe[p][k] = sin(p w_k), pe[p][c/2 + k] = cos(p w_k), w_k = 10000^(-k/(c/2-1))."""
    half = c // 2
    w = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    ang = torch.arange(rows, dtype=torch.float32)[:, None] * w[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class Block(nn.Module):
    """Pre-LN decoder block: x + drop(attn(LN(x))), then x + drop(fc2(gelu(fc1(LN(x)))))."""

    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(C)
        self.qkv = nn.Linear(C, 3 * C)
        self.proj = nn.Linear(C, C)
        self.ln2 = nn.LayerNorm(C)
        self.fc1 = nn.Linear(C, FF)
        self.fc2 = nn.Linear(FF, C)
        self.drop = nn.Dropout(DROPOUT)

    def forward(self, x, mask):
        b, t, _ = x.shape
        d = C // H
        # (b, t, 3C) -> three (b, H, t, d)
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, H, d).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
        scores = scores.masked_fill(mask, float("-inf"))  # mask: True above the diagonal
        a = torch.matmul(torch.softmax(scores, dim=-1), v)  # (b, H, t, d)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, C)))
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, C)
        nn.init.normal_(self.emb.weight, std=C ** -0.5)  # as ./train: scaled input has unit variance
        self.register_buffer("pe", sinusoidal_table(L + SIN_OFFSET, C)[SIN_OFFSET:])
        self.register_buffer("mask", torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1))
        self.drop = nn.Dropout(DROPOUT)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYERS))
        self.ln_f = nn.LayerNorm(C)

    def forward(self, ids, targets):
        t = ids.shape[1]
        x = self.drop(self.emb(ids) * math.sqrt(C) + self.pe[:t])
        mask = self.mask[:t, :t]
        for blk in self.blocks:
            x = blk(x, mask)
        logits = F.linear(self.ln_f(x), self.emb.weight)  # tied output layer, (b, t, V)
        return F.cross_entropy(logits.view(-1, V), targets.reshape(-1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--flops-per-token", type=float, required=True,
                    help="training FLOPs per token, as ./train reports for this model")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--name", default=None, help='row name (default "torch-<precision>")')
    args = ap.parse_args()
    if not 0 < args.warmup < args.steps:
        ap.error("need 0 < --warmup < --steps (the warm-up steps are not timed)")

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = Model()
    # weight decay on matrices only (./train's table marks biases, norm gains and biases no-decay)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    model.train()

    t0 = None
    for step in range(args.steps):
        if step == args.warmup:
            t0 = time.perf_counter()
        batch = torch.randint(0, V, (B, L + 1))
        opt.zero_grad(set_to_none=True)
        if args.precision == "bf16":
            # the standard mixed-precision recipe: autocast the forward and the loss; master
            # weights, gradients and AdamW stay float32
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(batch[:, :-1], batch[:, 1:])
        else:
            loss = model(batch[:, :-1], batch[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if not math.isfinite(loss.item()):  # .item() also makes the step's work complete here
            sys.exit(f"bench_vs_torch.py: loss {loss.item()} at step {step + 1}")
    dt = time.perf_counter() - t0

    tps = (args.steps - args.warmup) * B * L / dt
    print(json.dumps({"name": args.name or f"torch-{args.precision}", "tokens_per_s": round(tps, 1),
                      "gflops": round(tps * args.flops_per_token / 1e9, 1),
                      "flops_per_token": round(args.flops_per_token), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
