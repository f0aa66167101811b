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


def forward(P, inputs, targets, cfg, slopes_override=None):
    """P: dict name -> float64 tensor. inputs/targets: (B,T) int64. Returns dict with
    logits (B,T,V), loss (scalar), embed (B,T,C), hidden list of (B,T,C), final (B,T,C)."""
    m = cfg["model"]
    C, H, N = m["d_model"], m["n_heads"], m["n_layers"]
    D = C // H
    assert D * H == C
    B, T = inputs.shape
    pos = m["position"]
    ptype = pos["type"]
    act = m["activation"]

    x = P["tok_emb.weight"][inputs] * math.sqrt(C)
    if ptype == "sinusoidal":
        off = pos.get("offset", SIN_OFFSET)
        x = x + sinusoidal_table(T + off, C)[off:off + T][None, :, :]
    elif ptype not in ("none", "alibi"):
        raise ValueError(f"unknown position type {ptype!r}")
    embed = x

    i_idx = torch.arange(T)[:, None]
    j_idx = torch.arange(T)[None, :]
    causal = j_idx <= i_idx  # (T,T)
    dist = (i_idx - j_idx).to(torch.float64)  # i - j
    if ptype == "alibi":
        sl = slopes_override if slopes_override is not None else alibi_slopes(H)
        sl = torch.tensor(sl, dtype=torch.float64)
        attn_bias = -sl[:, None, None] * dist[None, :, :]  # (H,T,T)
    else:
        attn_bias = torch.zeros(H, T, T, dtype=torch.float64)
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float64)

    hidden, attn = [], []
    for l in range(N):
        p = f"layers.{l}."
        h = layer_norm(x, P[p + "ln1.weight"], P[p + "ln1.bias"])
        qkv = linear(h, P[p + "attn.qkv.weight"], P[p + "attn.qkv.bias"])  # (B,T,3C)
        q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
        # (B,T,C) -> (B,H,T,D): head hd owns columns hd*D..(hd+1)*D
        q = q.reshape(B, T, H, D).permute(0, 2, 1, 3)
        k = k.reshape(B, T, H, D).permute(0, 2, 1, 3)
        v = v.reshape(B, T, H, D).permute(0, 2, 1, 3)
        s = q @ k.transpose(-1, -2) / math.sqrt(D) + attn_bias[None]
        s = torch.where(causal[None, None], s, neg_inf)
        a = torch.softmax(s, dim=-1)
        o = (a @ v).permute(0, 2, 1, 3).reshape(B, T, C)
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
    logits = x @ P["tok_emb.weight"].t()
    lse = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, targets[..., None])[..., 0]
    loss = (lse - picked).mean()
    return {"logits": logits, "loss": loss, "embed": embed, "hidden": hidden, "final": x,
            "attn": attn}


# ----------------------------------------------------------------------------- a second, naive forward
# Scalar loops in plain Python floats (math module), no torch: used only to cross-check forward().


def naive_loss_logits(P, inputs, targets, cfg):
    m = cfg["model"]
    C, H, N, F = m["d_model"], m["n_heads"], m["n_layers"], m["d_ff"]
    D = C // H
    act = m["activation"]
    ptype = m["position"]["type"]
    W = {k: v.tolist() for k, v in P.items()}
    V = len(W["tok_emb.weight"])
    B, T = len(inputs), len(inputs[0])

    def ln(vec, w, b):
        mu = sum(vec) / len(vec)
        var = sum((t - mu) ** 2 for t in vec) / len(vec)
        r = 1.0 / math.sqrt(var + LN_EPS)
        return [(vec[c] - mu) * r * w[c] + b[c] for c in range(len(vec))]

    def lin(vec, w, b):
        return [sum(w[o][c] * vec[c] for c in range(len(vec))) + b[o] for o in range(len(w))]

    slopes = alibi_slopes(H) if ptype == "alibi" else [0.0] * H
    all_logits, total = [], 0.0
    for bi in range(B):
        xs = []
        for t in range(T):
            e = [W["tok_emb.weight"][inputs[bi][t]][c] * math.sqrt(C) for c in range(C)]
            if ptype == "sinusoidal":
                half = C // 2
                p = t + SIN_OFFSET
                for kk in range(half):
                    w = math.exp(-kk * math.log(10000.0) / (half - 1))
                    e[kk] += math.sin(p * w)
                    e[half + kk] += math.cos(p * w)
            xs.append(e)
        for l in range(N):
            pre = f"layers.{l}."
            qkv = [lin(ln(xs[t], W[pre + "ln1.weight"], W[pre + "ln1.bias"]),
                       W[pre + "attn.qkv.weight"], W[pre + "attn.qkv.bias"]) for t in range(T)]
            new = []
            for i in range(T):
                o = [0.0] * C
                for hd in range(H):
                    sc = []
                    for j in range(i + 1):
                        dot = sum(qkv[i][hd * D + d] * qkv[j][C + hd * D + d] for d in range(D))
                        sc.append(dot / math.sqrt(D) - slopes[hd] * (i - j))
                    mx = max(sc)
                    ex = [math.exp(s - mx) for s in sc]
                    z = sum(ex)
                    for j in range(i + 1):
                        for d in range(D):
                            o[hd * D + d] += ex[j] / z * qkv[j][2 * C + hd * D + d]
                y = lin(o, W[pre + "attn.proj.weight"], W[pre + "attn.proj.bias"])
                new.append([xs[i][c] + y[c] for c in range(C)])
            xs = new
            for i in range(T):
                h2 = ln(xs[i], W[pre + "ln2.weight"], W[pre + "ln2.bias"])
                u = lin(h2, W[pre + "ffn.fc1.weight"], W[pre + "ffn.fc1.bias"])
                if act == "relu":
                    g = [max(0.0, a) for a in u]
                elif act == "gelu":
                    g = [0.5 * a * (1.0 + math.erf(a / math.sqrt(2.0))) for a in u]
                else:
                    gt = lin(h2, W[pre + "ffn.gate.weight"], W[pre + "ffn.gate.bias"])
                    g = [gt[f] / (1.0 + math.exp(-gt[f])) * u[f] for f in range(F)]
                y = lin(g, W[pre + "ffn.fc2.weight"], W[pre + "ffn.fc2.bias"])
                xs[i] = [xs[i][c] + y[c] for c in range(C)]
        row = []
        for i in range(T):
            xf = ln(xs[i], W["ln_f.weight"], W["ln_f.bias"]) if m["final_norm"] else xs[i]
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


def describe(name, cfg, V):
    m = cfg["model"]
    pos = m["position"]["type"]
    posd = {"none": "no position information", "alibi": "ALiBi attention biases",
            "sinusoidal": "fairseq sinusoidal positions (offset 2)"}[pos]
    return (f"trainshort reference case {name}: {m['n_layers']} layers, d_model {m['d_model']}, "
            f"{m['n_heads']} heads, d_ff {m['d_ff']}, {m['activation']} FFN, {posd}, "
            f"{'final LayerNorm' if m['final_norm'] else 'no final LayerNorm'}, vocab {V}, "
            f"B={cfg['train']['batch']} T={cfg['train']['seq_len']}; torch float64, stored F32")


def build_case(spec, V=V_DEFAULT):
    name, position, activation, final_norm, H, C, F = spec
    cfg = make_config(position, activation, final_norm, H, C, F)
    gen = torch.Generator().manual_seed(case_seed(name))
    P = init_params(cfg, V, gen)
    inputs, targets = make_tokens(cfg, V, gen)
    leaves = {k: v.clone().requires_grad_(True) for k, v in P.items()}
    out = forward(leaves, inputs, targets, cfg)
    out["loss"].backward()
    return name, cfg, P, leaves, inputs, targets, out


def case_bytes(built, V=V_DEFAULT):
    name, cfg, P, leaves, inputs, targets, out = built
    f32 = lambda t: t.detach().to(torch.float64).numpy().astype("<f4")
    tensors = [(k, "F32", f32(P[k])) for k, _ in param_shapes(cfg, V)]
    tensors += [("inputs", "I32", inputs.numpy().astype("<i4")),
                ("targets", "I32", targets.numpy().astype("<i4")),
                ("expect.logits", "F32", f32(out["logits"])),
                ("expect.loss", "F32", f32(out["loss"]).reshape(())),
                ("expect.embed", "F32", f32(out["embed"]))]
    for i, h in enumerate(out["hidden"]):
        tensors.append((f"expect.hidden.{i}", "F32", f32(h)))
    tensors.append(("expect.final", "F32", f32(out["final"])))
    for k, _ in param_shapes(cfg, V):
        tensors.append((f"expect.grad.{k}", "F32", f32(leaves[k].grad)))
    meta = {"config": json.dumps(cfg), "vocab_size": str(V), "description": describe(name, cfg, V)}
    return safetensors_bytes(tensors, meta)


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

    bad = 0
    os.makedirs(FIXDIR, exist_ok=True)
    for fname, data in files.items():
        path = os.path.join(FIXDIR, fname)
        if args.verify:
            try:
                with open(path, "rb") as fh:
                    same = fh.read() == data
            except FileNotFoundError:
                same = False
            print(f"{'same' if same else 'DIFFERS'}  {fname}")
            bad += not same
        else:
            with open(path, "wb") as fh:
                fh.write(data)
            print(f"wrote {os.path.relpath(path)} ({len(data)} bytes)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
