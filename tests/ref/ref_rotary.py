#!/usr/bin/python3
"""Independent PyTorch reference for trainshort's rotary family: `rotary` (RoPE, with the PI,
NTK-aware, dynamic-NTK and YaRN context extensions) and `xpos`.

Writes tests/ref/fixtures/rotary_*.safetensors and xpos_*.safetensors in the format of
reference.py (tests/ref/README.md), which tests/test_ref.c checks automatically.

Usage: /usr/bin/python3 tests/ref/ref_rotary.py [--verify]

The position maths is written here from the papers, not from the C code, and deliberately in a
different form: interleaved RoPE as complex multiplication (RoFormer sec. 3.4.2), half pairing
with GPT-NeoX's rotate_half, xPos with un-centred positions (the C code centres them; scores
only depend on n - m). The rest of the model is reference.py's.
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import (V_DEFAULT, arch_selfcheck, case_seed, describe,  # noqa: E402
                       fixture_bytes, init_params, lm_forward, make_tokens, naive_loss_logits,
                       param_shapes, spec_config, write_or_verify)
from reference import build_case as reference_build_case  # noqa: E402


# ----------------------------------------------------------------------------- position maths


def rope_freqs(pos, d_rot, T, orig_len):
    """Angular frequency per pair (d_rot/2,) and the q/k magnitude factor, for a segment of
    length T. Formulas: RoFormer (theta_k = base^(-2k/d)); PI (Chen et al. 2023: m -> m/s);
    NTK-aware (base * s^(d/(d-2))); dynamic NTK (s = max(1, T/L)); YaRN (Peng et al. 2023,
    sec. 3.2 ramp over r = L/lambda, sec. 3.4 sqrt(1/t) = 0.1 ln s + 1 on q and on k)."""
    base = float(pos.get("base", 10000.0))
    scaling = pos.get("scaling", "none")
    s = float(pos.get("factor", 1.0))
    if scaling == "dynamic-ntk":
        s = max(1.0, T / orig_len)
    if scaling in ("ntk", "dynamic-ntk"):
        base = base * s ** (d_rot / (d_rot - 2))
    theta = base ** (-torch.arange(0, d_rot, 2, dtype=torch.float64) / d_rot)
    mag = 1.0
    if scaling == "pi":
        theta = theta / s
    elif scaling == "yarn":
        alpha, beta = float(pos.get("yarn_alpha", 1.0)), float(pos.get("yarn_beta", 32.0))
        r = orig_len / (2 * math.pi / theta)  # turns of each frequency over the original length
        gamma = ((r - alpha) / (beta - alpha)).clamp(0.0, 1.0)
        theta = (1 - gamma) * theta / s + gamma * theta
        mag = 0.1 * math.log(s) + 1.0
    return theta, mag


def rope(x, pos, cfg):
    """x: (B, H, T, D). Rotates the first rotary_dim dims of every head by position."""
    B, H, T, D = x.shape
    d_rot = pos.get("rotary_dim", 0) or D
    orig_len = pos.get("orig_len", 0) or cfg["train"]["seq_len"]
    theta, mag = rope_freqs(pos, d_rot, T, orig_len)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * theta[None, :]  # (T, d_rot/2)
    xr, rest = x[..., :d_rot], x[..., d_rot:]
    if pos.get("rotary_pairing", "interleaved") == "interleaved":
        z = torch.complex(xr[..., 0::2], xr[..., 1::2]) * torch.polar(torch.ones_like(ang), ang)
        out = torch.stack([z.real, z.imag], dim=-1).flatten(-2)
    else:
        cos, sin = torch.cos(ang).repeat(1, 2), torch.sin(ang).repeat(1, 2)
        x1, x2 = xr[..., :d_rot // 2], xr[..., d_rot // 2:]
        out = xr * cos + torch.cat([-x2, x1], dim=-1) * sin
    return torch.cat([out * mag, rest], dim=-1)


def xpos(x, pos, downscale):
    """Sun et al. 2022: interleaved RoPE, and pair k scaled by zeta_k^(n/scale_base) (q) or
    zeta_k^(-n/scale_base) (k, downscale), zeta_k = (2k/D + gamma)/(1 + gamma)."""
    B, H, T, D = x.shape
    p = dict(pos)
    p["scaling"] = "none"
    out = rope(x, {"base": p.get("base", 10000.0)}, {"train": {"seq_len": T}})
    gamma, sb = float(p.get("xpos_gamma", 0.4)), float(p.get("xpos_scale_base", 512.0))
    zeta = (torch.arange(0, D, 2, dtype=torch.float64) / D + gamma) / (1 + gamma)
    n = torch.arange(T, dtype=torch.float64)[:, None]
    scale = zeta[None, :] ** ((-n if downscale else n) / sb)  # (T, D/2)
    return out * scale.repeat_interleave(2, dim=1)


def naive_rope(vec, t, base=10000.0):
    """Plain interleaved RoPE of one head's vector at position t, pair by pair (RoFormer eq. 34),
    in plain floats: the rotation naive_loss_logits() applies to queries and keys."""
    D, out = len(vec), list(vec)
    for kk in range(D // 2):
        a = t * base ** (-2.0 * kk / D)
        x0, x1 = vec[2 * kk], vec[2 * kk + 1]
        out[2 * kk] = x0 * math.cos(a) - x1 * math.sin(a)
        out[2 * kk + 1] = x0 * math.sin(a) + x1 * math.cos(a)
    return out


# ----------------------------------------------------------------------------- the model


def forward(P, inputs, targets, cfg):
    """reference.py's model with no position term in the embedding and the queries and keys of
    every layer rotated."""
    pos = cfg["model"]["position"]
    if pos["type"] == "rotary":
        rotate = lambda q, k: (rope(q, pos, cfg), rope(k, pos, cfg))  # noqa: E731
    elif pos["type"] == "xpos":
        rotate = lambda q, k: (xpos(q, pos, False), xpos(k, pos, True))  # noqa: E731
    else:
        raise ValueError(pos["type"])
    x = P["tok_emb.weight"][inputs] * math.sqrt(cfg["model"]["d_model"])
    return lm_forward(x, P, targets, cfg, rotate=rotate)


# ----------------------------------------------------------------------------- cases

# name, position object, activation, final_norm, n_heads, d_model, d_ff[, architecture keys]
CASES = [
    ("rotary_interleaved_gelu_final_h2", {"type": "rotary"}, "gelu", True, 2, 16, 24),
    ("rotary_half_dim4_swiglu_nofinal_h2",
     {"type": "rotary", "rotary_dim": 4, "rotary_pairing": "half"}, "swiglu", False, 2, 16, 24),
    # orig_len 256 with D = 8: r = 40.7, 4.07, 0.41, 0.04 turns, so the ramp is 1, inside, 0, 0
    ("rotary_yarn4_relu_final_h2",
     {"type": "rotary", "scaling": "yarn", "factor": 4, "orig_len": 256}, "relu", True, 2, 16, 24),
    ("rotary_pi2_gelu_nofinal_h4", {"type": "rotary", "scaling": "pi", "factor": 2}, "gelu",
     False, 4, 16, 24),
    ("rotary_ntk3_half_relu_final_h2",
     {"type": "rotary", "scaling": "ntk", "factor": 3, "rotary_pairing": "half"}, "relu", True,
     2, 16, 24),
    # T = 9 > orig_len 4: the segment's factor is 2.25
    ("rotary_dynntk_gelu_final_h2", {"type": "rotary", "scaling": "dynamic-ntk", "orig_len": 4},
     "gelu", True, 2, 16, 24),
    # scale_base 16 instead of 512 so that the decay over 9 positions is visible
    ("xpos_sb16_gelu_final_h2", {"type": "xpos", "xpos_scale_base": 16}, "gelu", True, 2, 16, 24),
    # shared KV heads: q rotates its 4 heads, k its Hkv heads (reference.py's body())
    ("rotary_mqa_relu_final_h4", {"type": "rotary"}, "relu", True, 4, 16, 24, {"n_kv_heads": 1}),
    ("rotary_gqa2_gelu_final_h4", {"type": "rotary"}, "gelu", True, 4, 16, 24, {"n_kv_heads": 2}),
]


def build_case(spec, V=V_DEFAULT):
    return reference_build_case(spec, V, fwd=forward)


def case_bytes(built, V=V_DEFAULT):
    name, cfg, P, leaves, inputs, targets, out = built
    desc = describe(name, cfg, V, position="position " + json.dumps(cfg["model"]["position"]))
    return fixture_bytes([k for k, _ in param_shapes(cfg, V)], P, leaves, inputs, targets, out,
                         cfg, V, desc)


# ----------------------------------------------------------------------------- self-checks


def selfcheck():
    g = torch.Generator().manual_seed(7)
    cfg = {"train": {"seq_len": 12}}
    x = torch.randn(1, 1, 12, 8, generator=g, dtype=torch.float64)
    y = torch.randn(1, 1, 12, 8, generator=g, dtype=torch.float64)
    plain = rope(x, {"type": "rotary"}, cfg)
    # 1. scaling at factor 1 is plain RoPE
    for sc in ("pi", "ntk", "yarn", "dynamic-ntk"):
        assert torch.allclose(rope(x, {"scaling": sc, "factor": 1}, cfg), plain, atol=1e-14), sc
    # 2. rotation preserves norms; scores depend on i - j only (same vector at every position)
    assert torch.allclose(plain.norm(dim=-1), x.norm(dim=-1))
    xs, ys = x[..., :1, :].expand(1, 1, 12, 8), y[..., :1, :].expand(1, 1, 12, 8)
    for p in ({"type": "rotary"}, {"rotary_pairing": "half", "rotary_dim": 4}):
        sc = rope(xs, p, cfg) @ rope(ys, p, cfg).transpose(-1, -2)
        for d in range(-11, 12):
            diag = torch.diagonal(sc[0, 0], d)
            assert (diag - diag[0]).abs().max() < 1e-12, (p, d)
    xq, xk = xpos(xs, {}, False), xpos(ys, {}, True)
    sc = xq @ xk.transpose(-1, -2)
    for d in range(-11, 12):
        diag = torch.diagonal(sc[0, 0], d)
        assert (diag - diag[0]).abs().max() < 1e-12, d
    # 3. the complex form equals the explicit rotation (RoFormer eq. 34) on one pair
    th = 10000.0 ** (-2 * 1 / 8)
    a = 5 * th
    r = plain[0, 0, 5]
    assert abs(r[2] - (x[0, 0, 5, 2] * math.cos(a) - x[0, 0, 5, 3] * math.sin(a))) < 1e-14
    assert abs(r[3] - (x[0, 0, 5, 2] * math.sin(a) + x[0, 0, 5, 3] * math.cos(a))) < 1e-14
    # 4. YaRN: the ramp is 1 / inside / 0 for the case's frequencies
    th, mag = rope_freqs({"scaling": "yarn", "factor": 4}, 8, 9, 256)
    th0 = 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    ratio = (th / th0).tolist()
    assert abs(ratio[0] - 1) < 1e-15 and 0.25 < ratio[1] < 1 and abs(ratio[2] - 0.25) < 1e-15
    assert abs(mag - (0.1 * math.log(4) + 1)) < 1e-15
    # 5. gradcheck of the position maths
    for p in ({"type": "rotary", "scaling": "yarn", "factor": 4, "orig_len": 256},
              {"type": "rotary", "rotary_pairing": "half", "rotary_dim": 4}):
        xx = x.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: rope(t, p, cfg), (xx,))
    xx = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: xpos(t, {"xpos_scale_base": 16}, True), (xx,))
    # 6. every case: finite, deterministic, and its position settings visibly matter: the
    #    logits move by > 1e-2 against plain RoPE (plain RoPE itself: against half pairing)
    for spec in CASES:
        name, cfg, P, leaves, inputs, targets, out = built = build_case(spec)
        assert math.isfinite(out["loss"].item())
        assert case_bytes(built) == case_bytes(build_case(spec)), name
        c2 = json.loads(json.dumps(cfg))
        plain = {"type": "rotary"}
        c2["model"]["position"] = plain if cfg["model"]["position"] != plain else \
            {"type": "rotary", "rotary_pairing": "half"}
        e = (forward(P, inputs, targets, c2)["logits"] - out["logits"].detach()).abs().max().item()
        assert e > 1e-2, (name, e)
        print(f"selfcheck: {name}: max|dlogits| against {c2['model']['position']}: {e:.3g}")
        if len(spec) > 7:  # architecture variants: reference.py's checks of them
            arch_selfcheck(built, forward)
    # 7. plain RoPE (all variants) against the scalar model with naive_rope(), and gradcheck of
    #    the whole tiny model for the shared-KV cases
    for spec in CASES:
        if spec[1] != {"type": "rotary"}:
            continue
        name, cfg, P, leaves, inputs, targets, out = build_case(spec)
        nl, nlog = naive_loss_logits(P, inputs.tolist(), targets.tolist(), cfg, rotate=naive_rope)
        dlog = (torch.tensor(nlog, dtype=torch.float64) - out["logits"].detach()).abs().max().item()
        assert abs(nl - out["loss"].item()) < 1e-10 and dlog < 1e-10, (name, dlog)
        msg = f"selfcheck: {name}: naive forward agrees (|dlogits| {dlog:.1e})"
        if len(spec) > 7:
            tcfg = spec_config(spec, d_model=8, d_ff=10, seq_len=6, batch=2)
            gen = torch.Generator().manual_seed(case_seed("gradcheck-" + name))
            TP = init_params(tcfg, 11, gen)
            ti, tt = make_tokens(tcfg, 11, gen)
            names = [k for k, _ in param_shapes(tcfg, 11)]
            assert torch.autograd.gradcheck(
                lambda *ts: forward(dict(zip(names, ts)), ti, tt, tcfg)["loss"],
                tuple(TP[k].clone().requires_grad_(True) for k in names), eps=1e-6, atol=1e-7,
                rtol=1e-5), name
            msg += "; gradcheck of the tiny model ok"
        print(msg)
    print("selfcheck: ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", action="store_true", help="compare with committed fixtures, write nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    selfcheck()
    files = {}
    for spec in CASES:
        built = build_case(spec)
        files[spec[0] + ".safetensors"] = data = case_bytes(built)
        print(f"{spec[0]:40s} loss {built[6]['loss'].item():.9f}  ({len(data)} bytes)")
    return 1 if write_or_verify(files, args.verify) else 0


if __name__ == "__main__":
    sys.exit(main())
