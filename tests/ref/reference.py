#!/usr/bin/python3
"""Independent PyTorch reference for trainshort's model (forward + backward).

Writes tests/ref/fixtures/<case>.safetensors and tests/ref/fixtures/alibi_slopes.json.
Everything is computed in float64 from float32-rounded weights and stored as F32 (token ids I32).

Usage (run from anywhere; paths are relative to this file):
  /usr/bin/python3 tests/ref/reference.py              # self-checks, then (re)write all fixtures
  /usr/bin/python3 tests/ref/reference.py --verify     # self-checks, then compare with committed files
  /usr/bin/python3 tests/ref/reference.py --no-selfcheck
  /usr/bin/python3 tests/ref/reference.py --deepnorm-table   # DeepNorm alpha, beta per depth
  /usr/bin/python3 tests/ref/reference.py --check CKPT.safetensors [--data FIXTURE.safetensors] [--seed S]
      load a safetensors file written by the C code (tensor names as in README.md, "__metadata__"
      holding "config"), and print the loss on the inputs/targets found in the file, else in
      --data, else on random tokens.

The model is written directly from the equations in tests/ref/README.md; it shares no code
with trainshort.
"""
import argparse
import json
import math
import os
import struct
import sys
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXDIR = os.path.join(HERE, "fixtures")
LN_EPS = 1e-5
SIN_OFFSET = 2

# ----------------------------------------------------------------------------- safetensors I/O

_DT = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8")}


def safetensors_bytes(tensors, metadata):
    """tensors: list of (name, dtype-string, np.ndarray) in file order. Returns the file bytes."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for name, dt, arr in tensors:
        assert name not in header, name
        a = np.array(arr, dtype=_DT[dt], order="C")  # (ascontiguousarray would make 0-d 1-d)
        b = a.tobytes(order="C")
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((-(8 + len(h))) % 8)  # data starts 8-byte aligned
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def read_safetensors(path):
    """Returns (dict name -> np.ndarray, metadata dict or {}). Keeps file order of names."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    base = 8 + n
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        dt = info["dtype"]
        if dt not in _DT:
            raise SystemExit(f"{path}: tensor {name}: unsupported dtype {dt}")
        b, e = info["data_offsets"]
        a = np.frombuffer(raw[base + b:base + e], dtype=_DT[dt]).reshape(info["shape"])
        out[name] = a.copy()
    return out, meta


# ----------------------------------------------------------------------------- model pieces


def alibi_slopes(n):
    """ALiBi head slopes (Press et al.): geometric 2^(-8/n) ... for n a power of two; otherwise
    the slopes of the largest power of two c <= n, then every other slope of the 2c list."""
    assert n >= 1
    def pow2(m):
        return [2.0 ** (-8.0 * (h + 1) / m) for h in range(m)]
    if n & (n - 1) == 0:
        return pow2(n)
    c = 1 << (n.bit_length() - 1)
    return pow2(c) + alibi_slopes(2 * c)[0::2][:n - c]


def sinusoidal_table(n_pos, dim):
    """fairseq SinusoidalPositionalEmbedding.get_embedding layout (dim even): sin half, cos half."""
    assert dim % 2 == 0 and dim >= 4
    half = dim // 2
    k = torch.arange(half, dtype=torch.float64)
    w = torch.exp(-k * (math.log(10000.0) / (half - 1)))
    p = torch.arange(n_pos, dtype=torch.float64)[:, None] * w[None, :]
    return torch.cat([torch.sin(p), torch.cos(p)], dim=1)


def layer_norm(x, w, b, eps=LN_EPS):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)  # biased
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rms_norm(x, w, eps=LN_EPS):
    """Zhang & Sennrich 2019, eps inside the square root; no mean subtraction, no bias."""
    return x / torch.sqrt((x ** 2).mean(dim=-1, keepdim=True) + eps) * w


def linear(x, w, b):
    return x @ w.t() + b


def gelu_erf(u):
    return 0.5 * u * (1.0 + torch.erf(u / math.sqrt(2.0)))


def silu(u):
    return u * torch.sigmoid(u)


# the gated FFNs (Shazeer 2020): fc2(phi(gate h) * fc1 h), phi applied to the gate branch
GATES = {"glu": torch.sigmoid, "geglu": gelu_erf, "swiglu": silu}
NORMS = ("layernorm", "rmsnorm")
PLACEMENTS = ("pre", "post", "sandwich", "deepnorm")


def arch(cfg):
    """The architecture choices of cfg["model"] with their defaults: (norm, placement, eps,
    n_kv_heads). A bad value is an error naming its key, as trainshort's config check words it."""
    m = cfg["model"]
    norm, place = m.get("norm", "layernorm"), m.get("norm_position", "pre")
    eps, H = float(m.get("norm_eps", LN_EPS)), m["n_heads"]
    Hkv = m.get("n_kv_heads", H)
    if norm not in NORMS:
        raise ValueError(f"model.norm: {norm!r} is not one of {', '.join(NORMS)}")
    if place not in PLACEMENTS:
        raise ValueError(f"model.norm_position: {place!r} is not one of {', '.join(PLACEMENTS)}")
    if place in ("post", "deepnorm") and m["final_norm"]:
        raise ValueError(f"model.final_norm must be false with model.norm_position {place!r}")
    if not isinstance(Hkv, int) or Hkv < 1 or H % Hkv:
        raise ValueError(f"model.n_kv_heads: {Hkv!r} must be at least 1 and divide "
                         f"model.n_heads {H}")
    if m["activation"] not in ("relu", "gelu") and m["activation"] not in GATES:
        raise ValueError(f"model.activation: unknown {m['activation']!r}")
    return norm, place, eps, Hkv


def deepnorm_alpha(n_layers):
    """DeepNet (Wang et al. 2022), decoder-only: the residual weight alpha = (2N)^(1/4)."""
    return (2.0 * n_layers) ** 0.25


def deepnorm_beta(n_layers):
    """DeepNet, decoder-only: the init gain beta = (8N)^(-1/4) of v, attn.proj and the FFN."""
    return (8.0 * n_layers) ** -0.25


def norm_shapes(name, C, cfg):
    """The tensors of the norm `name` (e.g. "layers.0.ln1"): RMSNorm has a gain only."""
    if arch(cfg)[0] == "rmsnorm":
        return [(name + ".weight", (C,))]
    return [(name + ".weight", (C,)), (name + ".bias", (C,))]


def apply_norm(x, P, name, cfg):
    norm, _, eps, _ = arch(cfg)
    if norm == "rmsnorm":
        return rms_norm(x, P[name + ".weight"], eps)
    return layer_norm(x, P[name + ".weight"], P[name + ".bias"], eps)


def sublayer(x, f, P, name, cfg):
    """One residual sub-block with its norm `name` in the configured placement (README.md,
    "Architecture variants"); f is the attention or FFN sub-block. No dropout here."""
    place = arch(cfg)[1]
    if place == "pre":
        return x + f(apply_norm(x, P, name, cfg))
    if place == "post":
        return apply_norm(x + f(x), P, name, cfg)
    if place == "sandwich":  # CogView: the branch output is normalised before it is added
        return x + apply_norm(f(apply_norm(x, P, name, cfg)), P, name + "_post", cfg)
    return apply_norm(deepnorm_alpha(cfg["model"]["n_layers"]) * x + f(x), P, name, cfg)


def param_shapes(cfg, V):
    m = cfg["model"]
    C, F, N, H = m["d_model"], m["d_ff"], m["n_layers"], m["n_heads"]
    _, place, _, Hkv = arch(cfg)
    QKV = (H + 2 * Hkv) * (C // H)  # q of H heads, then k and v of Hkv heads each
    shapes = [("tok_emb.weight", (V, C))]
    for i in range(N):
        p = f"layers.{i}."
        shapes += norm_shapes(p + "ln1", C, cfg)
        shapes += [(p + "attn.qkv.weight", (QKV, C)), (p + "attn.qkv.bias", (QKV,)),
                   (p + "attn.proj.weight", (C, C)), (p + "attn.proj.bias", (C,))]
        if place == "sandwich":
            shapes += norm_shapes(p + "ln1_post", C, cfg)
        shapes += norm_shapes(p + "ln2", C, cfg)
        shapes += [(p + "ffn.fc1.weight", (F, C)), (p + "ffn.fc1.bias", (F,))]
        if m["activation"] in GATES:
            shapes += [(p + "ffn.gate.weight", (F, C)), (p + "ffn.gate.bias", (F,))]
        shapes += [(p + "ffn.fc2.weight", (C, F)), (p + "ffn.fc2.bias", (C,))]
        if place == "sandwich":
            shapes += norm_shapes(p + "ln2_post", C, cfg)
    if m["final_norm"]:
        shapes += norm_shapes("ln_f", C, cfg)
    return shapes


def body(x, P, cfg, bias=None, rotate=None):
    """The layers (steps 3 and 4 of README.md) on the embedded input x (B,T,C), for every
    reference script, in any norm, placement, FFN and KV-head variant. rotate(q, k) -> (q, k), if
    given, transforms each layer's queries (B,H,T,D) and keys (B,Hkv,T,D); bias[l], if given, is
    added to layer l's scaled scores, shape (H,T,T), per query head (entries above the diagonal
    are masked anyway). Returns each layer's output (B,T,C), the final hidden state (B,T,C,
    after N_f if final_norm) and each layer's attention probabilities (B,H,T,T), detached."""
    m = cfg["model"]
    C, H, N = m["d_model"], m["n_heads"], m["n_layers"]
    Hkv = arch(cfg)[3]
    D = C // H
    B, T, _ = x.shape
    act = m["activation"]
    causal = torch.arange(T)[None, :] <= torch.arange(T)[:, None]  # (T,T): j <= i
    hidden, attn = [], []
    for l in range(N):
        p = f"layers.{l}."

        def attention(h):
            qkv = linear(h, P[p + "attn.qkv.weight"], P[p + "attn.qkv.bias"])  # (B,T,(H+2Hkv)D)
            # (B,T,nh*D) -> (B,nh,T,D): head hd owns columns hd*D..(hd+1)*D of its third
            def heads(lo, nh):
                return qkv[..., lo * D:(lo + nh) * D].reshape(B, T, nh, D).transpose(1, 2)
            q, k, v = heads(0, H), heads(H, Hkv), heads(H + Hkv, Hkv)
            if rotate is not None:
                q, k = rotate(q, k)
            if Hkv != H:  # query head hd reads kv head hd // (H / Hkv): contiguous groups
                k, v = (t.repeat_interleave(H // Hkv, dim=1) for t in (k, v))
            s = q @ k.transpose(-1, -2) / math.sqrt(D)
            if bias is not None:
                s = s + bias[l]
            s = s.masked_fill(~causal, float("-inf"))
            a = torch.softmax(s, dim=-1)
            attn.append(a.detach())
            o = (a @ v).transpose(1, 2).reshape(B, T, C)
            return linear(o, P[p + "attn.proj.weight"], P[p + "attn.proj.bias"])

        def ffn(h2):
            u = linear(h2, P[p + "ffn.fc1.weight"], P[p + "ffn.fc1.bias"])
            if act == "relu":
                g = torch.relu(u)
            elif act == "gelu":
                g = gelu_erf(u)
            else:
                g = GATES[act](linear(h2, P[p + "ffn.gate.weight"], P[p + "ffn.gate.bias"])) * u
            return linear(g, P[p + "ffn.fc2.weight"], P[p + "ffn.fc2.bias"])

        x = sublayer(x, attention, P, p + "ln1", cfg)
        x = sublayer(x, ffn, P, p + "ln2", cfg)
        hidden.append(x)
    if m["final_norm"]:
        x = apply_norm(x, P, "ln_f", cfg)
    return hidden, x, attn


def lm_forward(embed, P, targets, cfg, bias=None, rotate=None):
    """body() on the embedded input, then step 5: the tied output and the mean cross-entropy.
    Returns the dict forward() returns."""
    hidden, final, attn = body(embed, P, cfg, bias, rotate)
    logits = final @ P["tok_emb.weight"].t()
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, targets[..., None])[..., 0]
    loss = (lse - picked).mean()
    return {"logits": logits, "loss": loss, "embed": embed, "hidden": hidden, "final": final,
            "attn": attn}


def add_positions(x, cfg):
    """Step 2 of README.md on x (B,T,C): sinusoidal positions added for `sinusoidal`; `none` and
    `alibi` add nothing here."""
    pos = cfg["model"]["position"]
    _, T, C = x.shape
    if pos["type"] == "sinusoidal":
        off = pos.get("offset", SIN_OFFSET)
        return x + sinusoidal_table(T + off, C)[off:off + T][None, :, :]
    if pos["type"] not in ("none", "alibi"):
        raise ValueError(f"unknown position type {pos['type']!r}")
    return x


def alibi_biases(cfg, T, slopes=None):
    """body()'s bias for the position types of this file: -m_h (i - j), (H,T,T), in every layer
    for `alibi` (slopes: m instead of alibi_slopes(H)), zeros for the others."""
    m = cfg["model"]
    H = m["n_heads"]
    if m["position"]["type"] == "alibi":
        dist = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).to(torch.float64)  # i - j
        sl = torch.tensor(slopes if slopes is not None else alibi_slopes(H), dtype=torch.float64)
        bias = -sl[:, None, None] * dist[None, :, :]
    else:
        bias = torch.zeros(H, T, T, dtype=torch.float64)
    return [bias] * m["n_layers"]


def forward(P, inputs, targets, cfg, slopes_override=None):
    """P: dict name -> float64 tensor. inputs/targets: (B,T) int64. Returns dict with
    logits (B,T,V), loss (scalar), embed (B,T,C), hidden list of (B,T,C), final (B,T,C),
    attn list of (B,H,T,T)."""
    m = cfg["model"]
    C, H = m["d_model"], m["n_heads"]
    assert (C // H) * H == C
    x = add_positions(P["tok_emb.weight"][inputs] * math.sqrt(C), cfg)
    bias = alibi_biases(cfg, inputs.shape[1], slopes_override)
    return lm_forward(x, P, targets, cfg, bias=bias)


# ----------------------------------------------------------------------------- a second, naive forward
# Scalar loops in plain Python floats (math module), no torch: used only to cross-check forward().


def naive_ln(vec, w, b, eps=LN_EPS):
    mu = sum(vec) / len(vec)
    var = sum((t - mu) ** 2 for t in vec) / len(vec)
    r = 1.0 / math.sqrt(var + eps)
    return [(vec[c] - mu) * r * w[c] + b[c] for c in range(len(vec))]


def naive_norm(vec, W, name, cfg):
    """The norm `name` of one position: LayerNorm, or RMSNorm's
    vec / sqrt(mean(vec^2) + eps) * g."""
    norm, _, eps, _ = arch(cfg)
    if norm == "layernorm":
        return naive_ln(vec, W[name + ".weight"], W[name + ".bias"], eps)
    r = 1.0 / math.sqrt(sum(t * t for t in vec) / len(vec) + eps)
    return [vec[c] * r * W[name + ".weight"][c] for c in range(len(vec))]


def naive_lin(vec, w, b):
    return [sum(w[o][c] * vec[c] for c in range(len(vec))) + b[o] for o in range(len(w))]


def naive_softmax(v):
    mx = max(v)
    e = [math.exp(a - mx) for a in v]
    z = sum(e)
    return [a / z for a in e]


def naive_add_sinusoidal(e, t):
    """e += pe[t + SIN_OFFSET] (step 2 of README.md) for the embedding e of position t."""
    half = len(e) // 2
    p = t + SIN_OFFSET
    for kk in range(half):
        w = math.exp(-kk * math.log(10000.0) / (half - 1))
        e[kk] += math.sin(p * w)
        e[half + kk] += math.cos(p * w)


def naive_residual(xs, f, W, name, cfg):
    """sublayer() for the T positions xs; f maps the list of T sub-block inputs to its outputs."""
    place = arch(cfg)[1]
    C = len(xs[0])
    if place in ("pre", "sandwich"):
        ys = f([naive_norm(x, W, name, cfg) for x in xs])
        if place == "sandwich":
            ys = [naive_norm(y, W, name + "_post", cfg) for y in ys]
        return [[x[c] + y[c] for c in range(C)] for x, y in zip(xs, ys)]
    alpha = (2.0 * cfg["model"]["n_layers"]) ** 0.25 if place == "deepnorm" else 1.0
    return [naive_norm([alpha * x[c] + y[c] for c in range(C)], W, name, cfg)
            for x, y in zip(xs, f(xs))]


def naive_body(xs, W, cfg, rotate=None):
    """body() for one sequence: xs the T embedded positions (lists of C floats), W the weights as
    nested lists; rotate(vec, t), if given, rotates one head's query or key at position t.
    Returns the T final hidden states."""
    m = cfg["model"]
    C, H, N, F = m["d_model"], m["n_heads"], m["n_layers"], m["d_ff"]
    Hkv = arch(cfg)[3]
    D = C // H
    act = m["activation"]
    T = len(xs)
    slopes = alibi_slopes(H) if m["position"]["type"] == "alibi" else [0.0] * H
    for l in range(N):
        pre = f"layers.{l}."

        def attention(hs):
            qkv = [naive_lin(h, W[pre + "attn.qkv.weight"], W[pre + "attn.qkv.bias"]) for h in hs]
            # per position: H query heads, then Hkv key heads, then Hkv value heads, D each
            q = [[r[hd * D:(hd + 1) * D] for hd in range(H)] for r in qkv]
            k = [[r[(H + g) * D:(H + g + 1) * D] for g in range(Hkv)] for r in qkv]
            v = [[r[(H + Hkv + g) * D:(H + Hkv + g + 1) * D] for g in range(Hkv)] for r in qkv]
            if rotate is not None:
                q = [[rotate(vec, t) for vec in row] for t, row in enumerate(q)]
                k = [[rotate(vec, t) for vec in row] for t, row in enumerate(k)]
            out = []
            for i in range(T):
                o = [0.0] * C
                for hd in range(H):
                    g = hd // (H // Hkv)  # its group's kv head
                    sc = []
                    for j in range(i + 1):
                        dot = sum(q[i][hd][d] * k[j][g][d] for d in range(D))
                        sc.append(dot / math.sqrt(D) - slopes[hd] * (i - j))
                    a = naive_softmax(sc)
                    for j in range(i + 1):
                        for d in range(D):
                            o[hd * D + d] += a[j] * v[j][g][d]
                out.append(naive_lin(o, W[pre + "attn.proj.weight"], W[pre + "attn.proj.bias"]))
            return out

        def ffn(hs):
            out = []
            for h2 in hs:
                u = naive_lin(h2, W[pre + "ffn.fc1.weight"], W[pre + "ffn.fc1.bias"])
                if act == "relu":
                    g = [max(0.0, a) for a in u]
                elif act == "gelu":
                    g = [naive_gelu(a) for a in u]
                else:
                    gt = naive_lin(h2, W[pre + "ffn.gate.weight"], W[pre + "ffn.gate.bias"])
                    phi = {"glu": lambda z: 1.0 / (1.0 + math.exp(-z)), "geglu": naive_gelu,
                           "swiglu": lambda z: z / (1.0 + math.exp(-z))}[act]
                    g = [phi(gt[f]) * u[f] for f in range(F)]
                out.append(naive_lin(g, W[pre + "ffn.fc2.weight"], W[pre + "ffn.fc2.bias"]))
            return out

        xs = naive_residual(xs, attention, W, pre + "ln1", cfg)
        xs = naive_residual(xs, ffn, W, pre + "ln2", cfg)
    if m["final_norm"]:
        xs = [naive_norm(x, W, "ln_f", cfg) for x in xs]
    return xs


def naive_gelu(a):
    return 0.5 * a * (1.0 + math.erf(a / math.sqrt(2.0)))


def naive_loss_logits(P, inputs, targets, cfg, rotate=None):
    m = cfg["model"]
    C = m["d_model"]
    W = {k: v.tolist() for k, v in P.items()}
    V = len(W["tok_emb.weight"])
    B, T = len(inputs), len(inputs[0])
    all_logits, total = [], 0.0
    for bi in range(B):
        xs = []
        for t in range(T):
            e = [W["tok_emb.weight"][inputs[bi][t]][c] * math.sqrt(C) for c in range(C)]
            if m["position"]["type"] == "sinusoidal":
                naive_add_sinusoidal(e, t)
            xs.append(e)
        row = []
        for i, xf in enumerate(naive_body(xs, W, cfg, rotate)):
            lg = [sum(W["tok_emb.weight"][vv][c] * xf[c] for c in range(C)) for vv in range(V)]
            mx = max(lg)
            lse = mx + math.log(sum(math.exp(a - mx) for a in lg))
            total += lse - lg[targets[bi][i]]
            row.append(lg)
        all_logits.append(row)
    return total / (B * T), all_logits


# ----------------------------------------------------------------------------- cases

V_DEFAULT = 37

# name, position, activation, final_norm, n_heads, d_model, d_ff[, architecture keys of "model"]
CASES = [
    ("none_relu_final_h2", "none", "relu", True, 2, 16, 24),
    ("sinusoidal_gelu_final_h2", "sinusoidal", "gelu", True, 2, 16, 24),
    ("alibi_gelu_nofinal_h4", "alibi", "gelu", False, 4, 16, 24),
    ("alibi_swiglu_final_h2", "alibi", "swiglu", True, 2, 16, 24),
    ("sinusoidal_swiglu_nofinal_h4", "sinusoidal", "swiglu", False, 4, 16, 24),
    # 6 heads: non-power-of-two ALiBi slope rule. d_ff = 40 so that d_ff != d_model here too.
    ("alibi_relu_final_h6", "alibi", "relu", True, 6, 24, 40),
    # architecture variants (README.md, "Architecture variants"). norm_eps 0.1 where it is set:
    # the default 1e-5 moves the outputs by less than the C test's tolerance, 0.1 visibly
    ("rmsnorm_pre_sinusoidal_gelu_final_h2", "sinusoidal", "gelu", True, 2, 16, 24,
     {"norm": "rmsnorm"}),
    ("post_eps01_alibi_gelu_h2", "alibi", "gelu", False, 2, 16, 24,
     {"norm_position": "post", "norm_eps": 0.1}),
    ("sandwich_none_swiglu_final_h2", "none", "swiglu", True, 2, 16, 24,
     {"norm_position": "sandwich"}),
    ("deepnorm_alibi_relu_h2", "alibi", "relu", False, 2, 16, 24, {"norm_position": "deepnorm"}),
    ("rmsnorm_sandwich_eps01_sinusoidal_relu_final_h4", "sinusoidal", "relu", True, 4, 16, 24,
     {"norm": "rmsnorm", "norm_position": "sandwich", "norm_eps": 0.1}),
    ("alibi_geglu_final_h2", "alibi", "geglu", True, 2, 16, 40),
    ("sinusoidal_glu_nofinal_h4", "sinusoidal", "glu", False, 4, 16, 24),
    ("mqa_alibi_gelu_final_h4", "alibi", "gelu", True, 4, 16, 24, {"n_kv_heads": 1}),
    ("gqa2_alibi_swiglu_nofinal_h4", "alibi", "swiglu", False, 4, 16, 24, {"n_kv_heads": 2}),
]
ARCH_KEYS = ("norm", "norm_position", "norm_eps", "n_kv_heads")
N_LAYERS, SEQ_LEN, BATCH = 2, 9, 2


def make_config(position, activation, final_norm, n_heads, d_model, d_ff,
                n_layers=N_LAYERS, seq_len=SEQ_LEN, batch=BATCH, arch_keys=None):
    """position: a type (sinusoidal gets its offset) or, in the other scripts, a whole position
    object. arch_keys: the architecture keys of "model" (ARCH_KEYS) that the case sets; the
    others are left out of the config, at their defaults."""
    if isinstance(position, dict):
        pos = dict(position)
    else:
        pos = {"type": position}
        if position == "sinusoidal":
            pos["offset"] = SIN_OFFSET
    m = {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": d_ff,
         "activation": activation, "final_norm": final_norm, "dropout": 0, "attn_dropout": 0,
         "act_dropout": 0}
    for k, v in (arch_keys or {}).items():
        assert k in ARCH_KEYS, k
        m[k] = v
    m["position"] = pos
    cfg = {"model": m, "train": {"seq_len": seq_len, "batch": batch}}
    arch(cfg)  # the config errors
    return cfg


def spec_config(spec, **sizes):
    """The config of a case (name, position, activation, final_norm, H, C, F[, arch keys]);
    sizes overrides make_config's d_model, d_ff, seq_len, ... (the tiny gradcheck models)."""
    name, position, activation, final_norm, H, C, F = spec[:7]
    kw = {"d_model": C, "d_ff": F}
    kw.update(sizes)
    return make_config(position, activation, final_norm, H, kw.pop("d_model"), kw.pop("d_ff"),
                       arch_keys=spec[7] if len(spec) > 7 else None, **kw)


def normalised_output(cfg):
    """Whether the last layer's output goes through a norm: ln_f, or post/deepnorm's ln2."""
    return cfg["model"]["final_norm"] or arch(cfg)[1] in ("post", "deepnorm")


def init_params(cfg, V, gen):
    """Random, deliberately non-trivial weights; rounded to float32 then held in float64."""
    out = {}
    for name, shape in param_shapes(cfg, V):
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        if name == "tok_emb.weight":
            # std 0.5 when the output is normalised (ln_f, or post/deepnorm's last norm); 0.25
            # otherwise, where the un-normalised residual stream (embeddings scaled by sqrt(C))
            # would give logits of +-30
            t = (0.5 if normalised_output(cfg) else 0.25) * z
        elif name.endswith("attn.qkv.weight"):
            t = 0.5 * z  # large: attention far from uniform
        elif name.split(".")[-2] in ("ln1", "ln2", "ln1_post", "ln2_post", "ln_f"):
            t = 1.0 + 0.1 * z if name.endswith(".weight") else 0.1 * z
        elif name.endswith(".bias"):
            t = 0.1 * z
        else:  # proj, fc1, gate, fc2
            t = z / math.sqrt(shape[1])
        out[name] = t.to(torch.float32).to(torch.float64)
    return out


def make_tokens(cfg, V, gen):
    B, T = cfg["train"]["batch"], cfg["train"]["seq_len"]
    seq = torch.randint(0, V, (B, T + 1), generator=gen, dtype=torch.int64)
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def case_seed(name):
    return zlib.crc32(name.encode("utf-8"))


POSITION_TEXT = {"none": "no position information", "alibi": "ALiBi attention biases",
                 "sinusoidal": "fairseq sinusoidal positions (offset 2)"}


def describe_arch(cfg):
    """(heads text, norm text, norm name) of describe(); the default architecture (pre-LN
    LayerNorm, eps 1e-5, n_kv_heads = n_heads) adds nothing to the description."""
    m = cfg["model"]
    norm, place, eps, Hkv = arch(cfg)
    H = m["n_heads"]
    heads = f"{H} heads"
    if Hkv != H:
        heads += f" sharing {Hkv} KV head{'s' if Hkv > 1 else ''} ({'MQA' if Hkv == 1 else 'GQA'})"
    nname = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}[norm]
    parts = []
    if norm != "layernorm" or eps != LN_EPS:
        parts.append(f"{nname} (eps {eps:g} inside the sqrt)" if norm == "rmsnorm" else
                     f"{nname} (eps {eps:g})")
    if place == "post":
        parts.append("post-LN x = N(x + f(x))")
    elif place == "sandwich":
        parts.append("sandwich norms x = x + N_post(f(N(x)))")
    elif place == "deepnorm":
        N = m["n_layers"]
        parts.append(f"DeepNorm x = N(alpha x + f(x)) with alpha = (2*{N})^(1/4) = "
                     f"{deepnorm_alpha(N):.9f}")
    elif norm != "layernorm":
        parts.append("pre-LN")
    return heads, "".join(p + ", " for p in parts), nname


def describe(name, cfg, V, position=None, output=None):
    """The "description" of a fixture. position: how the case adds positions (default:
    POSITION_TEXT of its type); output: its output layer when that is not the tied softmax."""
    m = cfg["model"]
    posd = position or POSITION_TEXT[m["position"]["type"]]
    outd = f"{output}, " if output else ""
    heads, normd, nname = describe_arch(cfg)
    return (f"trainshort reference case {name}: {m['n_layers']} layers, d_model {m['d_model']}, "
            f"{heads}, d_ff {m['d_ff']}, {m['activation']} FFN, {normd}{posd}, "
            f"{'final ' if m['final_norm'] else 'no final '}{nname}, {outd}vocab {V}, "
            f"B={cfg['train']['batch']} T={cfg['train']['seq_len']}; torch float64, stored F32")


def build(name, cfg, V, init, fwd):
    """A case of any reference script: weights init(cfg, V, gen) then tokens from the generator
    seeded by the case's name, fwd(P, inputs, targets, cfg) on leaf copies of the weights, and
    the gradients. Returns (name, cfg, P, leaves, inputs, targets, out)."""
    gen = torch.Generator().manual_seed(case_seed(name))
    P = init(cfg, V, gen)
    inputs, targets = make_tokens(cfg, V, gen)
    leaves = {k: v.clone().requires_grad_(True) for k, v in P.items()}
    out = fwd(leaves, inputs, targets, cfg)
    out["loss"].backward()
    return name, cfg, P, leaves, inputs, targets, out


def fixture_bytes(names, P, leaves, inputs, targets, out, cfg, V, description, output="logits"):
    """A fixture file (README.md, "Fixture contents"): the parameters `names` of P, inputs,
    targets, expect.<output>, loss, embed, hidden.*, final and the gradients of `names` (in
    leaves), with config, vocab_size and description as metadata."""
    f32 = lambda t: t.detach().numpy().astype("<f4")  # noqa: E731
    tensors = [(k, "F32", f32(P[k])) for k in names]
    tensors += [("inputs", "I32", inputs.numpy().astype("<i4")),
                ("targets", "I32", targets.numpy().astype("<i4")),
                ("expect." + output, "F32", f32(out[output])),
                ("expect.loss", "F32", f32(out["loss"]).reshape(())),
                ("expect.embed", "F32", f32(out["embed"]))]
    tensors += [(f"expect.hidden.{i}", "F32", f32(h)) for i, h in enumerate(out["hidden"])]
    tensors.append(("expect.final", "F32", f32(out["final"])))
    tensors += [(f"expect.grad.{k}", "F32", f32(leaves[k].grad)) for k in names]
    meta = {"config": json.dumps(cfg), "vocab_size": str(V), "description": description}
    return safetensors_bytes(tensors, meta)


def write_or_verify(files, verify):
    """files: file name -> bytes. Writes them into FIXDIR or, with verify, compares them with the
    files there, saying which differ. Returns how many differ."""
    bad = 0
    for fname, data in files.items():
        path = os.path.join(FIXDIR, fname)
        if verify:
            try:
                with open(path, "rb") as fh:
                    same = fh.read() == data
            except FileNotFoundError:
                same = False
            print(f"{'same' if same else 'DIFFERS'}  {fname}")
            bad += not same
        else:
            os.makedirs(FIXDIR, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(data)
            print(f"wrote {os.path.relpath(path)} ({len(data)} bytes)")
    return bad


def build_case(spec, V=V_DEFAULT, fwd=forward):
    """A case of CASES (or of a list in the same format with fwd its model)."""
    return build(spec[0], spec_config(spec), V, init_params, fwd)


def case_bytes(built, V=V_DEFAULT):
    name, cfg, P, leaves, inputs, targets, out = built
    names = [k for k, _ in param_shapes(cfg, V)]
    return fixture_bytes(names, P, leaves, inputs, targets, out, cfg, V, describe(name, cfg, V))


def slopes_json_bytes():
    d = {str(n): alibi_slopes(n) for n in (1, 4, 6, 8, 12, 16)}
    return (json.dumps(d, indent=1) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------- self-checks


def selfcheck():
    # 1. slopes against the values stated in the spec
    assert alibi_slopes(1) == [2.0 ** -8]
    assert alibi_slopes(8) == [2.0 ** -(h + 1) for h in range(8)]
    assert alibi_slopes(6) == [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]
    s12 = alibi_slopes(12)
    assert s12[:8] == alibi_slopes(8)
    assert all(abs(a - b) < 1e-15 for a, b in zip(s12[8:], [2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5]))
    assert len(alibi_slopes(16)) == 16 and alibi_slopes(16)[-1] == 2.0 ** -8
    print("selfcheck: ALiBi slopes ok")

    # 2. sinusoidal table against a hand-rolled formula for a couple of entries
    pe = sinusoidal_table(12, 16)
    half = 8
    for p in (2, 5, 11):
        for kk in (0, 3, 7):
            w = math.exp(-kk * math.log(10000.0) / (half - 1))
            assert abs(pe[p, kk].item() - math.sin(p * w)) < 1e-15
            assert abs(pe[p, half + kk].item() - math.cos(p * w)) < 1e-15
    print("selfcheck: sinusoidal table ok")

    # 3. my LayerNorm / GELU agree with torch's built-ins
    g = torch.Generator().manual_seed(1)
    xx = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    w, b = torch.randn(16, generator=g, dtype=torch.float64), torch.randn(16, generator=g, dtype=torch.float64)
    assert torch.allclose(layer_norm(xx, w, b), torch.nn.functional.layer_norm(xx, (16,), w, b, LN_EPS),
                          atol=1e-13, rtol=0)
    assert torch.allclose(gelu_erf(xx), torch.nn.functional.gelu(xx), atol=1e-14, rtol=0)
    assert torch.allclose(silu(xx), torch.nn.functional.silu(xx), atol=1e-14, rtol=0)
    print("selfcheck: LayerNorm / GELU / SiLU match torch.nn.functional")

    # 3b. RMSNorm: on rows of mean zero it is LayerNorm without a bias (the variance is then the
    #     mean square); with eps 0 every row has mean square g^2. GLU is torch's glu.
    x0 = xx - xx.mean(dim=-1, keepdim=True)
    for eps in (LN_EPS, 0.1):
        assert torch.allclose(rms_norm(x0, w, eps), layer_norm(x0, w, torch.zeros(16), eps),
                              atol=1e-13, rtol=0)
    ms = (rms_norm(xx, torch.ones(16, dtype=torch.float64), 0.0) ** 2).mean(dim=-1)
    assert (ms - 1).abs().max().item() < 1e-13
    u = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    assert torch.allclose(GATES["glu"](xx) * u, torch.nn.functional.glu(torch.cat([u, xx], -1)),
                          atol=1e-15, rtol=0)
    print("selfcheck: RMSNorm (LayerNorm on mean-zero rows, unit mean square) and GLU ok")

    # 3c. DeepNorm constants against the decoder-only row of DeepNet's table: alpha^4 = 2N,
    #     beta^-4 = 8N, and the closed forms at N = 2 (alpha = sqrt 2, beta = 1/2) and N = 8
    for N in (1, 2, 3, 6, 8, 12, 24, 100):
        assert abs(deepnorm_alpha(N) ** 4 - 2 * N) < 1e-12 * N
        assert abs(deepnorm_beta(N) ** -4 - 8 * N) < 1e-12 * N
    assert abs(deepnorm_alpha(2) - math.sqrt(2)) < 1e-15 and abs(deepnorm_beta(2) - 0.5) < 1e-15
    assert abs(deepnorm_alpha(8) - 2) < 1e-15 and abs(deepnorm_beta(8) - 8 ** -0.5) < 1e-15
    print("selfcheck: DeepNorm alpha = (2N)^(1/4), beta = (8N)^(-1/4):")
    print(deepnorm_table())

    # 4. gradcheck (autograd vs central finite differences) of the whole model, tiny sizes,
    #    one tiny model per case configuration
    for spec in CASES:
        name, H = spec[0], spec[4]
        Ct = 12 if H == 6 else 8
        cfg = spec_config(spec, d_model=Ct, d_ff=10, n_layers=2, seq_len=6, batch=2)
        Vt = 11
        gen = torch.Generator().manual_seed(case_seed("gradcheck-" + name))
        P = init_params(cfg, Vt, gen)
        inputs, targets = make_tokens(cfg, Vt, gen)
        names = [k for k, _ in param_shapes(cfg, Vt)]
        leaves = tuple(P[k].clone().requires_grad_(True) for k in names)

        def f(*ts):
            return forward(dict(zip(names, ts)), inputs, targets, cfg)["loss"]

        ok = torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)
        assert ok
        print(f"selfcheck: gradcheck ok for tiny {name} (d_model {Ct}, "
              f"{sum(t.numel() for t in leaves)} parameters)")

    # 5. full-size cases: forward agrees with the naive scalar implementation; loss finite;
    #    ALiBi slopes / sinusoidal positions measurably change the outputs
    for spec in CASES:
        name, cfg, P, leaves, inputs, targets, out = build_case(spec)
        loss = out["loss"].item()
        assert math.isfinite(loss), name
        nl, nlog = naive_loss_logits(P, inputs.tolist(), targets.tolist(), cfg)
        dl = abs(nl - loss)
        dlog = (torch.tensor(nlog, dtype=torch.float64) - out["logits"].detach()).abs().max().item()
        assert dl < 1e-10 and dlog < 1e-10, (name, dl, dlog)
        for k in leaves:
            assert torch.isfinite(leaves[k].grad).all(), (name, k)
            assert leaves[k].grad.abs().max().item() > 0, (name, k)
        msg = f"selfcheck: {name}: loss {loss:.9f}; naive forward agrees (|dloss| {dl:.1e}, |dlogits| {dlog:.1e})"
        if cfg["model"]["position"]["type"] == "alibi":
            H = cfg["model"]["n_heads"]
            eff = []
            for hd in range(H):
                sl = alibi_slopes(H)
                sl[hd] = 0.0
                o2 = forward(P, inputs, targets, cfg, slopes_override=sl)
                eff.append((o2["logits"] - out["logits"].detach()).abs().max().item())
            assert min(eff) > 1e-3, (name, eff)
            msg += "; max|dlogits| if one head's slope were 0: " + ", ".join(f"{e:.3g}" for e in eff)
        if cfg["model"]["position"]["type"] == "sinusoidal":
            c2 = json.loads(json.dumps(cfg))
            c2["model"]["position"]["offset"] = 0
            o2 = forward(P, inputs, targets, c2)
            e = (o2["logits"] - out["logits"].detach()).abs().max().item()
            assert e > 1e-2
            msg += f"; max|dlogits| with offset 0 instead of 2: {e:.3g}"
        print(msg)
        arch_selfcheck((name, cfg, P, leaves, inputs, targets, out), forward)

    # 6. determinism: building every case twice gives identical bytes
    for spec in CASES:
        assert case_bytes(build_case(spec)) == case_bytes(build_case(spec)), spec[0]
    print("selfcheck: fixture bytes are deterministic")

    # 7. safetensors writer round-trips
    b = case_bytes(build_case(CASES[0]))
    tmp = os.path.join(FIXDIR, ".roundtrip.tmp")
    os.makedirs(FIXDIR, exist_ok=True)
    with open(tmp, "wb") as fh:
        fh.write(b)
    try:
        tens, meta = read_safetensors(tmp)
    finally:
        os.remove(tmp)
    assert json.loads(meta["config"])["model"]["n_heads"] == CASES[0][4]
    assert tens["expect.loss"].shape == () and tens["inputs"].dtype == np.dtype("<i4")
    print("selfcheck: safetensors round trip ok")


def deepnorm_table(layers=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32)):
    """A markdown table of alpha and beta (the table of README.md and docs/architecture.md)."""
    rows = ["| n_layers | alpha = (2N)^(1/4) | beta = (8N)^(-1/4) |", "|---|---|---|"]
    rows += [f"| {N} | {deepnorm_alpha(N):.6f} | {deepnorm_beta(N):.6f} |" for N in layers]
    return "\n".join(rows)


def with_arch(cfg, **changes):
    """A copy of cfg with model keys changed (None: the key removed, i.e. its default)."""
    c2 = json.loads(json.dumps(cfg))
    for k, v in changes.items():
        if v is None:
            c2["model"].pop(k, None)
        else:
            c2["model"][k] = v
    return c2


def expand_kv(P, cfg, order="repeat"):
    """The multi-head weights equivalent to a model with shared KV heads: query head h gets a
    copy of kv head h // (H/Hkv) ("repeat", the specified map) or h % Hkv ("tile", the wrong
    one). Returns (P2, cfg2) with n_kv_heads = n_heads."""
    m = cfg["model"]
    H, D, Hkv = m["n_heads"], m["d_model"] // m["n_heads"], arch(cfg)[3]
    src = [h // (H // Hkv) if order == "repeat" else h % Hkv for h in range(H)]
    P2 = dict(P)
    for name in [k for k in P if k.endswith("attn.qkv.weight") or k.endswith("attn.qkv.bias")]:
        t = P[name]
        q, k, v = t[:H * D], t[H * D:(H + Hkv) * D], t[(H + Hkv) * D:]
        pick = lambda kv: torch.cat([kv[g * D:(g + 1) * D] for g in src])  # noqa: E731
        P2[name] = torch.cat([q, pick(k), pick(v)])
    return P2, with_arch(cfg, n_kv_heads=H)


def logit_change(fwd, P, built, cfg2):
    out, inputs, targets = built[6], built[4], built[5]
    return (fwd(P, inputs, targets, cfg2)["logits"] - out["logits"].detach()).abs().max().item()


def arch_selfcheck(built, fwd):
    """The architecture choices of a built case visibly matter (logits move by > 1e-2 against
    the neighbouring variant), and shared KV heads equal multi-head attention with the kv heads
    copied to their groups, gradients summed over each group (1e-12). fwd: the case's model."""
    name, cfg, P, leaves, inputs, targets, out = built
    m = cfg["model"]
    norm, place, eps, Hkv = arch(cfg)
    H = m["n_heads"]
    against = []  # (what, cfg2, P2)
    if norm == "rmsnorm":  # LayerNorm with zero biases
        P2 = dict(P)
        P2.update({k: torch.zeros(s, dtype=torch.float64) for k, s in
                   param_shapes(with_arch(cfg, norm=None), len(P["tok_emb.weight"]))
                   if k not in P})
        against.append(("LayerNorm with zero bias", with_arch(cfg, norm=None), P2))
    if eps != LN_EPS:
        against.append(("eps 1e-5", with_arch(cfg, norm_eps=None), P))
    if place == "deepnorm":
        against.append(("post-LN (alpha 1)", with_arch(cfg, norm_position="post"), P))
    if place in ("post", "sandwich"):
        fin = with_arch(cfg, norm_position=None)
        against.append(("pre-LN", fin, P))
    if m["activation"] in ("glu", "geglu"):
        against.append(("swiglu", with_arch(cfg, activation="swiglu"), P))
    msg = []
    for what, c2, P2 in against:
        e = logit_change(fwd, P2, built, c2)
        assert e > 1e-2, (name, what, e)
        msg.append(f"max|dlogits| against {what}: {e:.3g}")
    if Hkv != H:
        P2, c2 = expand_kv(P, cfg)
        lv = {k: v.clone().requires_grad_(True) for k, v in P2.items()}
        o2 = fwd(lv, inputs, targets, c2)
        o2["loss"].backward()
        assert (o2["logits"] - out["logits"]).abs().max().item() < 1e-12, name
        D = m["d_model"] // H
        for k in leaves:
            gk = lv[k].grad
            if k.endswith("attn.qkv.weight") or k.endswith("attn.qkv.bias"):
                q, kk, vv = gk[:H * D], gk[H * D:2 * H * D], gk[2 * H * D:]
                # MHA head g * H/Hkv + r holds a copy of kv head g: sum over r
                def summed(t):
                    rest = t.shape[1:]
                    return t.reshape(Hkv, H // Hkv, D, *rest).sum(1).reshape(Hkv * D, *rest)
                gk = torch.cat([q, summed(kk), summed(vv)])
            assert (gk - leaves[k].grad).abs().max().item() < 1e-12, (name, k)
        msg.append("equals multi-head attention with kv heads copied (logits, gradients)")
        if Hkv > 1:
            e = logit_change(fwd, expand_kv(P, cfg, "tile")[0], built, c2)
            assert e > 1e-2, (name, e)
            msg.append(f"max|dlogits| with query head h on kv head h % Hkv instead: {e:.3g}")
    if msg:
        print(f"selfcheck: {name}: " + "; ".join(msg))


def stats(built):
    name, cfg, P, leaves, inputs, targets, out = built
    lg = out["logits"].detach()
    return (f"{name:30s} loss {out['loss'].item():.9f}  logits std {lg.std().item():.2f} "
            f"range [{lg.min().item():.2f}, {lg.max().item():.2f}]  "
            f"mean max attention prob {attention_peakiness(built):.2f}")


def attention_peakiness(built):
    """mean over (layer, batch, head, query i >= 2) of the largest attention probability."""
    out = built[6]
    return torch.stack([a[:, :, 2:, :].max(dim=-1).values.mean() for a in out["attn"]]).mean().item()


# ----------------------------------------------------------------------------- --check


def check_file(path, data_path=None, seed=0):
    tens, meta = read_safetensors(path)
    if "config" not in meta:
        raise SystemExit(f"{path}: no \"config\" in __metadata__")
    cfg = json.loads(meta["config"])
    m = cfg["model"]
    for key in ("n_layers", "d_model", "n_heads", "d_ff", "activation", "final_norm", "position"):
        if key not in m:
            raise SystemExit(f"{path}: config.model.{key} missing")
    try:
        norm, place, eps, Hkv = arch(cfg)  # norm, norm_position, norm_eps, n_kv_heads
    except ValueError as e:
        raise SystemExit(f"{path}: {e}")
    if m["position"].get("type") not in POSITION_TEXT:
        raise SystemExit(f"{path}: --check knows the position types {', '.join(POSITION_TEXT)}, "
                         f"not {m['position'].get('type')!r}")
    V = tens["tok_emb.weight"].shape[0]
    P = {}
    for k, shape in param_shapes(cfg, V):
        if k not in tens:
            raise SystemExit(f"{path}: tensor {k} missing")
        if tuple(tens[k].shape) != tuple(shape):
            raise SystemExit(f"{path}: tensor {k} has shape {tens[k].shape}, expected {shape}")
        P[k] = torch.from_numpy(tens[k].astype(np.float64))
    src = tens
    if "inputs" not in src and data_path:
        src, _ = read_safetensors(data_path)
    if "inputs" in src and "targets" in src:
        inputs = torch.from_numpy(src["inputs"].astype(np.int64))
        targets = torch.from_numpy(src["targets"].astype(np.int64))
        where = "inputs/targets from " + (path if src is tens else data_path)
    else:
        gen = torch.Generator().manual_seed(seed)
        inputs, targets = make_tokens(cfg, V, gen)
        where = f"random tokens (seed {seed}, B={inputs.shape[0]}, T={inputs.shape[1]})"
    out = forward(P, inputs, targets, cfg)
    print(f"{path}: {where}")
    fin = "final norm" if m["final_norm"] else "no final norm"
    print(f"model: {m['n_layers']} layers, {describe_arch(cfg)[0]}, {m['activation']} FFN, "
          f"{norm} (eps {eps:g}), {place} placement, {fin}")
    print(f"loss {out['loss'].item():.9f}")
    if "expect.loss" in src:
        e = float(src["expect.loss"])
        print(f"expect.loss in file {e:.9f} (diff {out['loss'].item() - e:.3g})")


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", action="store_true", help="compare with committed fixtures, write nothing")
    ap.add_argument("--no-selfcheck", action="store_true")
    ap.add_argument("--check", metavar="FILE", help="print the loss of a safetensors checkpoint")
    ap.add_argument("--data", metavar="FILE", help="with --check: take inputs/targets from this file")
    ap.add_argument("--seed", type=int, default=0, help="with --check: seed for random tokens")
    ap.add_argument("--deepnorm-table", action="store_true",
                    help="print DeepNorm's alpha and beta for a few depths and exit")
    args = ap.parse_args()
    torch.set_num_threads(1)  # keep float64 reductions in one fixed order

    if args.deepnorm_table:
        print(deepnorm_table())
        return 0

    if args.check:
        check_file(args.check, args.data, args.seed)
        return 0

    if not args.no_selfcheck:
        selfcheck()

    files = {spec[0] + ".safetensors": case_bytes(build_case(spec)) for spec in CASES}
    files["alibi_slopes.json"] = slopes_json_bytes()
    for spec in CASES:
        print(stats(build_case(spec)))

    return 1 if write_or_verify(files, args.verify) else 0


if __name__ == "__main__":
    sys.exit(main())
