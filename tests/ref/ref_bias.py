#!/usr/bin/python3
"""Independent PyTorch reference for trainshort's attention-bias position methods:
t5, alibi with trainable slopes and alibi_heads, kerple_log, fire.

Each method adds bias_l[h, i, j] to the scaled attention score q_i.k_j / sqrt(D) of layer l,
head h, query i, key j <= i (0-based positions). Formulas, from the papers:
  t5          rel_bias[bucket(i - j), h] (shared) or rel_bias[l, bucket(i - j), h] (per_layer);
              bucket = HF T5's _relative_position_bucket(bidirectional=False), in float32 torch
              ops as HF computes it (Raffel et al. 2020; HuggingFace modeling_t5.py).
  alibi       -m_h (i - j) for h < alibi_heads, 0 for the other heads; m = pos.slopes learned
              (Press et al. 2022, section 3; trainable slopes tried in its section 3).
  kerple_log  -r1 log(1 + r2 (i - j)), r = softplus(raw) per (layer, head)
              (Chi et al. 2022, the logarithmic CPD kernel).
  fire        f(psi(i - j) / (psi(max(i, |L_mult| init_L)) + 1e-6)), psi(x) = log(|c x| + 1),
              f = Linear(W -> H) o ReLU o Linear(1 -> W) per layer (Li et al. 2023, section 3.2
              and its appendix listing).

Writes tests/ref/fixtures/{t5,kerple,fire,alibi_trainable}_*.safetensors in the format of
tests/ref/README.md. Usage:
  /usr/bin/python3 tests/ref/ref_bias.py            # self-checks, then write the fixtures
  /usr/bin/python3 tests/ref/ref_bias.py --verify   # self-checks, then compare (exit 1 if different)

The position maths is written here; the layers (body(), given a bias per layer), the weights,
the tokens and the fixture format are reference.py's.
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

V, T = R.V_DEFAULT, R.SEQ_LEN  # the cases have reference.py's N_LAYERS, SEQ_LEN and BATCH

# name, activation, final_norm, H, C, F, position object
CASES = [
    ("t5_shared_gelu_h2", "gelu", True, 2, 16, 24,
     {"type": "t5", "num_buckets": 6, "max_distance": 7, "per_layer": False}),
    ("t5_per_layer_relu_h4", "relu", False, 4, 16, 24,
     {"type": "t5", "num_buckets": 8, "max_distance": 10, "per_layer": True}),
    ("alibi_trainable_heads3_swiglu_h4", "swiglu", True, 4, 16, 24,
     {"type": "alibi", "trainable_slopes": True, "slopes": [], "alibi_heads": 3}),
    ("kerple_log_gelu_h2", "gelu", True, 2, 16, 24, {"type": "kerple_log"}),
    ("fire_gelu_h2", "gelu", True, 2, 16, 24,
     {"type": "fire", "mlp_width": 8, "init_c": 0.1, "init_L": 5.0}),
]


def pos_shapes(cfg):
    m = cfg["model"]
    p, L, H = m["position"], m["n_layers"], m["n_heads"]
    if p["type"] == "t5":
        nb = p["num_buckets"]
        return [("pos.rel_bias", (L, nb, H) if p["per_layer"] else (nb, H))]
    if p["type"] == "alibi":
        return [("pos.slopes", (H,))] if p["trainable_slopes"] else []
    if p["type"] == "kerple_log":
        return [("pos.kerple.r1", (L, H)), ("pos.kerple.r2", (L, H))]
    if p["type"] == "fire":
        W = p["mlp_width"]
        return [("pos.fire.c", (L,)), ("pos.fire.L_mult", (L,)), ("pos.fire.w1", (L, W)),
                ("pos.fire.b1", (L, W)), ("pos.fire.w2", (L, H, W)), ("pos.fire.b2", (L, H))]
    raise ValueError(p["type"])


def shapes(cfg):
    return R.param_shapes(cfg, V) + pos_shapes(cfg)


def init_pos(cfg, gen):
    """Position tensors large enough that every one of them visibly changes the outputs."""
    m = cfg["model"]
    p, L, H = m["position"], m["n_layers"], m["n_heads"]
    out = {}
    for name, shape in pos_shapes(cfg):
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        if name == "pos.slopes":
            t = torch.tensor(R.alibi_slopes(H), dtype=torch.float64) * torch.exp(0.5 * z)
        elif name == "pos.fire.c":
            t = torch.tensor([0.4, -0.7], dtype=torch.float64)[:L]  # negative: |c| is used
        elif name == "pos.fire.L_mult":
            t = torch.tensor([0.9, -1.3], dtype=torch.float64)[:L]  # thr 4.5, 6.5 < T - 1
        elif name in ("pos.fire.w1", "pos.fire.b1"):
            t = z
        elif name == "pos.fire.w2":
            t = z / math.sqrt(shape[-1]) * 2.0
        else:
            t = 0.7 * z
        out[name] = t.to(torch.float32).to(torch.float64)
    return out


# ----------------------------------------------------------------------------- the biases


def t5_bucket(n, nb, maxd):
    """HF T5 _relative_position_bucket for n = query - key >= 0, bidirectional=False."""
    E = nb // 2
    large = E + (torch.log(n.float() / E) / math.log(maxd / E) * (nb - E)).to(torch.long)
    large = torch.min(large, torch.full_like(large, nb - 1))
    return torch.where(n < E, n, large)


def biases(P, cfg, Tn):
    """List over layers of the (H, Tn, Tn) bias (entries above the diagonal are masked later)."""
    m = cfg["model"]
    p, L, H = m["position"], m["n_layers"], m["n_heads"]
    i = torch.arange(Tn)[:, None]
    j = torch.arange(Tn)[None, :]
    n = (i - j).clamp(min=0)  # causal distance; j > i is masked anyway
    nf = n.to(torch.float64)
    if p["type"] == "t5":
        bk = t5_bucket(n, p["num_buckets"], p["max_distance"])
        tab = P["pos.rel_bias"]
        per = [tab[l] if p["per_layer"] else tab for l in range(L)]
        return [t[bk].permute(2, 0, 1) for t in per]  # (Tn,Tn,H) -> (H,Tn,Tn)
    if p["type"] == "alibi":
        k = p["alibi_heads"] or H
        mask = (torch.arange(H) < k).to(torch.float64)
        b = -(P["pos.slopes"] * mask)[:, None, None] * nf[None]
        return [b] * L
    if p["type"] == "kerple_log":
        sp = torch.nn.functional.softplus
        r1, r2 = sp(P["pos.kerple.r1"]), sp(P["pos.kerple.r2"])
        return [-r1[l][:, None, None] * torch.log1p(r2[l][:, None, None] * nf[None])
                for l in range(L)]
    if p["type"] == "fire":
        out = []
        pos = torch.arange(Tn, dtype=torch.float64)
        for l in range(L):
            c = P["pos.fire.c"][l]
            thr = torch.abs(P["pos.fire.L_mult"][l] * p["init_L"])
            norm = torch.log(torch.abs(c * torch.maximum(pos, thr)) + 1) + 1e-6  # (Tn,) per query
            x = torch.log(torch.abs(c * nf) + 1) / norm[:, None]
            hid = torch.relu(x[..., None] * P["pos.fire.w1"][l] + P["pos.fire.b1"][l])
            y = hid @ P["pos.fire.w2"][l].t() + P["pos.fire.b2"][l]  # (Tn,Tn,H)
            out.append(y.permute(2, 0, 1))
        return out
    raise ValueError(p["type"])


def forward(P, inputs, targets, cfg):
    """reference.py's model with no position term in the embedding and biases() on the scores."""
    x = P["tok_emb.weight"][inputs] * math.sqrt(cfg["model"]["d_model"])
    return R.lm_forward(x, P, targets, cfg, bias=biases(P, cfg, inputs.shape[1]))


# ----------------------------------------------------------------------------- cases


def init(cfg, Vn, gen):
    P = R.init_params(cfg, Vn, gen)
    P.update(init_pos(cfg, gen))
    return P


def build(spec):
    name, act, fin, H, C, F, pos = spec
    return R.build(name, R.make_config(pos, act, fin, H, C, F), V, init, forward)


def case_bytes(built):
    name, cfg, P, leaves, inputs, targets, out = built
    desc = R.describe(name, cfg, V, position="position " + json.dumps(cfg["model"]["position"]))
    return R.fixture_bytes([k for k, _ in shapes(cfg)], P, leaves, inputs, targets, out, cfg, V,
                           desc + " (tests/ref/ref_bias.py)")


# ----------------------------------------------------------------------------- self-checks


def selfcheck():
    # T5 buckets: the table of alibi-paper-facts.md section 5 (32 buckets, max distance 128)
    n = torch.arange(0, 2000)
    bk = t5_bucket(n, 32, 128)
    firsts = {b: int(n[bk == b][0]) for b in range(32)}
    want = dict(enumerate(range(16)))
    want.update({16: 16, 17: 19, 18: 21, 19: 24, 20: 27, 21: 31, 22: 35, 23: 40, 24: 46, 25: 52,
                 26: 59, 27: 67, 28: 77, 29: 87, 30: 99, 31: 113})
    assert firsts == want, firsts
    print("selfcheck: T5 bucket boundaries match the HF table (last bucket from 113)")

    # every case: autograd agrees with finite differences (small model), the bias matters, and
    # every position tensor gets a non-zero gradient
    for spec in CASES:
        name, act, fin, H, C, F, pos = spec
        cfg = R.make_config(pos, act, fin, H, 8, 10, seq_len=8, batch=2)
        gen = torch.Generator().manual_seed(R.case_seed("gradcheck-" + name))
        P = init(cfg, 11, gen)
        inputs, targets = torch.randint(0, 11, (2, 8), generator=gen), torch.randint(0, 11, (2, 8), generator=gen)
        names = [k for k, _ in pos_shapes(cfg)]
        leaves = tuple(P[k].clone().requires_grad_(True) for k in names)

        def f(*ts):
            Q = dict(P)
            Q.update(zip(names, ts))
            return forward(Q, inputs, targets, cfg)["loss"]

        assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-5), name
        built = build(spec)
        for k in names:
            # FIRE's output bias b2 adds a constant to a whole softmax row: gradient exactly 0
            if k != "pos.fire.b2":
                assert built[3][k].grad.abs().max().item() > 1e-4, (name, k)
        print(f"selfcheck: {name}: gradcheck of the position tensors ok; loss {built[6]['loss'].item():.6f}")
    # alibi: head 3 (>= alibi_heads) gets no bias and no slope gradient
    built = build(CASES[2])
    assert built[3]["pos.slopes"].grad[3].item() == 0.0
    # fire: the per-query normalizer matters (rows beyond the threshold exist in the case)
    cfg = build(CASES[4])[1]
    assert abs(cfg["model"]["position"]["init_L"] * 0.9) < T - 1
    print("selfcheck: alibi_heads and FIRE threshold cases exercise what they should")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify", action="store_true")
    args = ap.parse_args()
    selfcheck()
    files = {spec[0] + ".safetensors": case_bytes(build(spec)) for spec in CASES}
    sys.exit(1 if R.write_or_verify(files, args.verify) else 0)


if __name__ == "__main__":
    main()
