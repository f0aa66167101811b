#!/usr/bin/python3
"""Independent PyTorch reference for trainshort's model (forward + backward).

Writes tests/ref/fixtures/<case>.safetensors and tests/ref/fixtures/alibi_slopes.json.
Everything is computed in float64 from float32-rounded weights and stored as F32 (token ids I32).

Usage (run from anywhere; paths are relative to this file):
  /usr/bin/python3 tests/ref/reference.py              # self-checks, then (re)write all fixtures
  /usr/bin/python3 tests/ref/reference.py --verify     # self-checks, then compare with committed files
  /usr/bin/python3 tests/ref/reference.py --no-selfcheck
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


def layer_norm(x, w, b):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)  # biased
    return (x - mu) / torch.sqrt(var + LN_EPS) * w + b


def linear(x, w, b):
    return x @ w.t() + b


def gelu_erf(u):
    return 0.5 * u * (1.0 + torch.erf(u / math.sqrt(2.0)))


def silu(u):
    return u * torch.sigmoid(u)


def param_shapes(cfg, V):
    m = cfg["model"]
    C, F, N = m["d_model"], m["d_ff"], m["n_layers"]
    shapes = [("tok_emb.weight", (V, C))]
    for i in range(N):
        p = f"layers.{i}."
        shapes += [(p + "ln1.weight", (C,)), (p + "ln1.bias", (C,)),
                   (p + "attn.qkv.weight", (3 * C, C)), (p + "attn.qkv.bias", (3 * C,)),
                   (p + "attn.proj.weight", (C, C)), (p + "attn.proj.bias", (C,)),
                   (p + "ln2.weight", (C,)), (p + "ln2.bias", (C,)),
                   (p + "ffn.fc1.weight", (F, C)), (p + "ffn.fc1.bias", (F,))]
        if m["activation"] == "swiglu":
            shapes += [(p + "ffn.gate.weight", (F, C)), (p + "ffn.gate.bias", (F,))]
        shapes += [(p + "ffn.fc2.weight", (C, F)), (p + "ffn.fc2.bias", (C,))]
    if m["final_norm"]:
        shapes += [("ln_f.weight", (C,)), ("ln_f.bias", (C,))]
    return shapes


def body(x, P, cfg, bias=None, rotate=None):
    """The pre-LN layers (steps 3 and 4 of README.md) on the embedded input x (B,T,C), for every
    reference script. rotate(q, k) -> (q, k), if given, transforms each layer's queries and keys
    (B,H,T,D); bias[l], if given, is added to layer l's scaled scores, shape (H,T,T) (entries
    above the diagonal are masked anyway). Returns each layer's output (B,T,C), the final hidden
    state (B,T,C, after LN_f if final_norm) and each layer's attention probabilities (B,H,T,T),
    detached."""
    m = cfg["model"]
    C, H, N = m["d_model"], m["n_heads"], m["n_layers"]
    D = C // H
    B, T, _ = x.shape
    act = m["activation"]
    causal = torch.arange(T)[None, :] <= torch.arange(T)[:, None]  # (T,T): j <= i
    hidden, attn = [], []
    for l in range(N):
        p = f"layers.{l}."
        h = layer_norm(x, P[p + "ln1.weight"], P[p + "ln1.bias"])
        qkv = linear(h, P[p + "attn.qkv.weight"], P[p + "attn.qkv.bias"])  # (B,T,3C)
        # (B,T,C) -> (B,H,T,D): head hd owns columns hd*D..(hd+1)*D
        q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, H, D).transpose(1, 2) for i in range(3))
        if rotate is not None:
            q, k = rotate(q, k)
        s = q @ k.transpose(-1, -2) / math.sqrt(D)
        if bias is not None:
            s = s + bias[l]
        s = s.masked_fill(~causal, float("-inf"))
        a = torch.softmax(s, dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, T, C)
        x = x + linear(o, P[p + "attn.proj.weight"], P[p + "attn.proj.bias"])

        h2 = layer_norm(x, P[p + "ln2.weight"], P[p + "ln2.bias"])
        u = linear(h2, P[p + "ffn.fc1.weight"], P[p + "ffn.fc1.bias"])
        if act == "relu":
            g = torch.relu(u)
        elif act == "gelu":
            g = gelu_erf(u)
        elif act == "swiglu":
            g = silu(linear(h2, P[p + "ffn.gate.weight"], P[p + "ffn.gate.bias"])) * u
        else:
            raise ValueError(f"unknown activation {act!r}")
        x = x + linear(g, P[p + "ffn.fc2.weight"], P[p + "ffn.fc2.bias"])
        hidden.append(x)
        attn.append(a.detach())
    if m["final_norm"]:
        x = layer_norm(x, P["ln_f.weight"], P["ln_f.bias"])
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


def naive_ln(vec, w, b):
    mu = sum(vec) / len(vec)
    var = sum((t - mu) ** 2 for t in vec) / len(vec)
    r = 1.0 / math.sqrt(var + LN_EPS)
    return [(vec[c] - mu) * r * w[c] + b[c] for c in range(len(vec))]


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


def naive_body(xs, W, cfg):
    """body() for one sequence: xs the T embedded positions (lists of C floats), W the weights as
    nested lists. Returns the T final hidden states."""
    m = cfg["model"]
    C, H, N, F = m["d_model"], m["n_heads"], m["n_layers"], m["d_ff"]
    D = C // H
    act = m["activation"]
    T = len(xs)
    slopes = alibi_slopes(H) if m["position"]["type"] == "alibi" else [0.0] * H
    for l in range(N):
        pre = f"layers.{l}."
        qkv = [naive_lin(naive_ln(xs[t], W[pre + "ln1.weight"], W[pre + "ln1.bias"]),
                         W[pre + "attn.qkv.weight"], W[pre + "attn.qkv.bias"]) for t in range(T)]
        new = []
        for i in range(T):
            o = [0.0] * C
            for hd in range(H):
                sc = []
                for j in range(i + 1):
                    dot = sum(qkv[i][hd * D + d] * qkv[j][C + hd * D + d] for d in range(D))
                    sc.append(dot / math.sqrt(D) - slopes[hd] * (i - j))
                a = naive_softmax(sc)
                for j in range(i + 1):
                    for d in range(D):
                        o[hd * D + d] += a[j] * qkv[j][2 * C + hd * D + d]
            y = naive_lin(o, W[pre + "attn.proj.weight"], W[pre + "attn.proj.bias"])
            new.append([xs[i][c] + y[c] for c in range(C)])
        xs = new
        for i in range(T):
            h2 = naive_ln(xs[i], W[pre + "ln2.weight"], W[pre + "ln2.bias"])
            u = naive_lin(h2, W[pre + "ffn.fc1.weight"], W[pre + "ffn.fc1.bias"])
            if act == "relu":
                g = [max(0.0, a) for a in u]
            elif act == "gelu":
                g = [0.5 * a * (1.0 + math.erf(a / math.sqrt(2.0))) for a in u]
            else:
                gt = naive_lin(h2, W[pre + "ffn.gate.weight"], W[pre + "ffn.gate.bias"])
                g = [gt[f] / (1.0 + math.exp(-gt[f])) * u[f] for f in range(F)]
            y = naive_lin(g, W[pre + "ffn.fc2.weight"], W[pre + "ffn.fc2.bias"])
            xs[i] = [xs[i][c] + y[c] for c in range(C)]
    if m["final_norm"]:
        xs = [naive_ln(x, W["ln_f.weight"], W["ln_f.bias"]) for x in xs]
    return xs


def naive_loss_logits(P, inputs, targets, cfg):
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
        for i, xf in enumerate(naive_body(xs, W, cfg)):
            lg = [sum(W["tok_emb.weight"][vv][c] * xf[c] for c in range(C)) for vv in range(V)]
            mx = max(lg)
            lse = mx + math.log(sum(math.exp(a - mx) for a in lg))
            total += lse - lg[targets[bi][i]]
            row.append(lg)
        all_logits.append(row)
    return total / (B * T), all_logits


# ----------------------------------------------------------------------------- cases

V_DEFAULT = 37

# name, position, activation, final_norm, n_heads, d_model, d_ff
CASES = [
    ("none_relu_final_h2", "none", "relu", True, 2, 16, 24),
    ("sinusoidal_gelu_final_h2", "sinusoidal", "gelu", True, 2, 16, 24),
    ("alibi_gelu_nofinal_h4", "alibi", "gelu", False, 4, 16, 24),
    ("alibi_swiglu_final_h2", "alibi", "swiglu", True, 2, 16, 24),
    ("sinusoidal_swiglu_nofinal_h4", "sinusoidal", "swiglu", False, 4, 16, 24),
    # 6 heads: non-power-of-two ALiBi slope rule. d_ff = 40 so that d_ff != d_model here too.
    ("alibi_relu_final_h6", "alibi", "relu", True, 6, 24, 40),
]
N_LAYERS, SEQ_LEN, BATCH = 2, 9, 2


def make_config(position, activation, final_norm, n_heads, d_model, d_ff,
                n_layers=N_LAYERS, seq_len=SEQ_LEN, batch=BATCH):
    """position: a type (sinusoidal gets its offset) or, in the other scripts, a whole position
    object."""
    if isinstance(position, dict):
        pos = dict(position)
    else:
        pos = {"type": position}
        if position == "sinusoidal":
            pos["offset"] = SIN_OFFSET
    return {"model": {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": d_ff,
                      "activation": activation, "final_norm": final_norm, "dropout": 0,
                      "attn_dropout": 0, "act_dropout": 0, "position": pos},
            "train": {"seq_len": seq_len, "batch": batch}}


def init_params(cfg, V, gen):
    """Random, deliberately non-trivial weights; rounded to float32 then held in float64."""
    out = {}
    for name, shape in param_shapes(cfg, V):
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        if name == "tok_emb.weight":
            # std 0.5 with a final LayerNorm; 0.25 without one, where the un-normalised residual
            # stream (embeddings scaled by sqrt(C)) would otherwise give logits of +-30
            t = (0.5 if cfg["model"]["final_norm"] else 0.25) * z
        elif name.endswith("attn.qkv.weight"):
            t = 0.5 * z  # large: attention far from uniform
        elif ".ln1." in name or ".ln2." in name or name.startswith("ln_f."):
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


def describe(name, cfg, V, position=None, output=None):
    """The "description" of a fixture. position: how the case adds positions (default:
    POSITION_TEXT of its type); output: its output layer when that is not the tied softmax."""
    m = cfg["model"]
    posd = position or POSITION_TEXT[m["position"]["type"]]
    outd = f"{output}, " if output else ""
    return (f"trainshort reference case {name}: {m['n_layers']} layers, d_model {m['d_model']}, "
            f"{m['n_heads']} heads, d_ff {m['d_ff']}, {m['activation']} FFN, {posd}, "
            f"{'final LayerNorm' if m['final_norm'] else 'no final LayerNorm'}, {outd}vocab {V}, "
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
    name, position, activation, final_norm, H, C, F = spec
    cfg = make_config(position, activation, final_norm, H, C, F)
    return build(name, cfg, V, init_params, fwd)


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

    # 4. gradcheck (autograd vs central finite differences) of the whole model, tiny sizes,
    #    one tiny model per case configuration
    for spec in CASES:
        name, position, activation, final_norm, H, C, F = spec
        Ct = 12 if H == 6 else 8
        cfg = make_config(position, activation, final_norm, H, Ct, 10, n_layers=2, seq_len=6, batch=2)
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
    args = ap.parse_args()
    torch.set_num_threads(1)  # keep float64 reductions in one fixed order

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
