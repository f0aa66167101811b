#!/usr/bin/python3
"""Independent PyTorch reference for trainshort's `learned` position method.

Absolute learned position embeddings (GPT-2's wpe, fairseq's LearnedPositionalEmbedding): a
table P of shape (max_positions, C); the token at 0-based offset t of a segment gets
x[t] = tok_emb[token] * sqrt(C) + P[t], before the first layer. Nothing else changes.

Writes tests/ref/fixtures/learned_gelu.safetensors in the format of tests/ref/README.md, with
the table stored as `pos.weight` and its gradient as `expect.grad.pos.weight`. The table has more
rows (12) than the case has positions (T = 9), so the fixture also pins down that rows beyond
the segment get exactly zero gradient.

Usage:
  /usr/bin/python3 tests/ref/ref_learned.py            # self-checks, then write the fixture
  /usr/bin/python3 tests/ref/ref_learned.py --verify   # self-checks, then compare (exit 1 if different)

The position table is written here; the layers, the weights, the tokens and the fixture format
are reference.py's.
"""
import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

NAME = "learned_gelu"
V, N_LAYERS, T, B = 37, 2, 9, 2
MAX_POS = 12


def make_config(H=2, C=16, F=24, seq_len=T, batch=B, max_pos=MAX_POS, act="gelu"):
    return R.make_config({"type": "learned", "max_positions": max_pos}, act, True, H, C, F,
                         n_layers=N_LAYERS, seq_len=seq_len, batch=batch)


def shapes(cfg, V):
    m = cfg["model"]
    return R.param_shapes(cfg, V) + [("pos.weight", (m["position"]["max_positions"], m["d_model"]))]


def init(cfg, V, gen):
    P = R.init_params(cfg, V, gen)
    # std 1: a position term as large as the scaled token term (tok_emb std 0.5 * sqrt(16) = 2),
    # so a wrong row or a missing addition shows in every output
    z = torch.randn(shapes(cfg, V)[-1][1], generator=gen, dtype=torch.float64)
    P["pos.weight"] = z.to(torch.float32).to(torch.float64)
    return P


def forward(P, inputs, targets, cfg):
    """reference.py's model with the table's first T rows added to the embedding."""
    Tn = inputs.shape[1]
    assert Tn <= P["pos.weight"].shape[0], "learned positions stop at max_positions"
    x = P["tok_emb.weight"][inputs] * math.sqrt(cfg["model"]["d_model"]) + P["pos.weight"][:Tn][None, :, :]
    return R.lm_forward(x, P, targets, cfg)


def build(cfg=None):
    return R.build(NAME, cfg or make_config(), V, init, forward)


def fixture_bytes(built):
    name, cfg, P, leaves, inputs, targets, out = built
    desc = R.describe(name, cfg, V, position=f"learned absolute positions ({MAX_POS} rows, T={T})")
    return R.fixture_bytes([k for k, _ in shapes(cfg, V)], P, leaves, inputs, targets, out, cfg, V,
                           desc)


def selfcheck():
    # 1. autograd against finite differences on a tiny model, every parameter and the table
    cfg = make_config(H=2, C=8, F=10, seq_len=6, max_pos=8)
    gen = torch.Generator().manual_seed(R.case_seed("gradcheck-" + NAME))
    P = init(cfg, 11, gen)
    inputs, targets = R.make_tokens(cfg, 11, gen)
    names = [k for k, _ in shapes(cfg, 11)]
    leaves = tuple(P[k].clone().requires_grad_(True) for k in names)
    f = lambda *ts: forward(dict(zip(names, ts)), inputs, targets, cfg)["loss"]
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)
    print("selfcheck: gradcheck ok (tiny learned model)")

    _, cfg, P, leaves, inputs, targets, out = build()
    # 2. the embedding, written out element by element
    W, Pw = P["tok_emb.weight"], P["pos.weight"]
    for b in range(B):
        for t in range(T):
            for c in range(16):
                want = W[inputs[b, t], c].item() * 4.0 + Pw[t, c].item()
                assert abs(out["embed"][b, t, c].item() - want) < 1e-12
    # 3. the table's gradient: row t sums d loss / d embed over the batch; rows >= T are zero
    g = leaves["pos.weight"].grad
    assert g[T:].abs().max().item() == 0.0 and g[:T].abs().min().item() > 0.0
    # 4. positions matter: shifting the table by one row changes the logits visibly
    P2 = dict(P)
    P2["pos.weight"] = torch.roll(P["pos.weight"], 1, dims=0)
    d = (forward(P2, inputs, targets, cfg)["logits"] - out["logits"].detach()).abs().max().item()
    assert d > 1e-2, d
    # 5. causality: changing the last token leaves the earlier positions' logits unchanged
    in2 = inputs.clone()
    in2[:, -1] = (in2[:, -1] + 1) % V
    o2 = forward(P, in2, targets, cfg)["logits"]
    assert (o2[:, :-1] - out["logits"].detach()[:, :-1]).abs().max().item() < 1e-12
    print(f"selfcheck: {NAME}: loss {out['loss'].item():.9f}; embedding exact; rows >= T get zero "
          f"gradient; shifting the table by one row moves the logits by {d:.3g}; causal")
    assert fixture_bytes(build()) == fixture_bytes(build())
    print("selfcheck: fixture bytes are deterministic")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", action="store_true", help="compare with the committed fixture")
    args = ap.parse_args()
    torch.set_num_threads(1)
    selfcheck()
    files = {NAME + ".safetensors": fixture_bytes(build())}
    return 1 if R.write_or_verify(files, args.verify) else 0


if __name__ == "__main__":
    sys.exit(main())
