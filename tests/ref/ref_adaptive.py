#!/usr/bin/python3
"""Independent PyTorch reference for trainshort's adaptive input + adaptive softmax output.

Baevski & Auli (2019) adaptive input representations with Grave et al. (2017) adaptive softmax,
as fairseq implements them (AdaptiveInput, AdaptiveSoftmax with tie_adaptive_weights and
tie_adaptive_proj). The vocabulary is split into clusters k = 0..K-1 at `cutoffs`
(s_0 = 0, s_k = cutoffs[k-1], s_K = V); cluster k has width d_k = C // factor**k.

  input    token t in cluster k:  x = sqrt(C) * (emb_k[t - s_k] @ proj_k^T), then positions
  output   head  z = [h @ E_0^T (s_1 words), h @ cluster^T (K-1 cluster logits)], lz = log_softmax(z)
           t < s_1:           log p(t) = lz[t]
           t in cluster k>=1: log p(t) = lz[s_1 + k - 1] + log_softmax((h @ P_k) @ E_k^T)[t - s_k]
           tied: E_k = emb_k, P_k = proj_k; untied: E_k = out.emb_k, P_k = out.proj_k (k >= 1)

There is no tok_emb.weight; the transformer body (pre-LN layers, ALiBi / sinusoidal / none,
optional final LayerNorm) is the model of reference.py. Writes
tests/ref/fixtures/adaptive_*.safetensors in the format of tests/ref/README.md, with
`expect.logprobs` (the full normalised log-probabilities, B x T x V) in place of
`expect.logits`.

Usage:
  /usr/bin/python3 tests/ref/ref_adaptive.py            # self-checks, then write the fixtures
  /usr/bin/python3 tests/ref/ref_adaptive.py --verify   # self-checks, then compare (exit 1 if different)

The adaptive input and the adaptive softmax are written here; the positions and the layers
(torch and naive), config, seeds and the fixture format are reference.py's.
reference.py's forward() and torch.nn.AdaptiveLogSoftmaxWithLoss are used only as cross-checks.
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as R  # noqa: E402

V, N_LAYERS, T, B = 37, 2, 9, 2

# name, position, activation, final_norm, H, C, F, cutoffs, factor, tie
CASES = [
    ("adaptive_tied_alibi_gelu_final", "alibi", "gelu", True, 2, 16, 24, [10, 20], 2, True),
    ("adaptive_untied_sinusoidal_relu_nofinal", "sinusoidal", "relu", False, 2, 16, 24, [12], 4, False),
    ("adaptive_tied_nocut_none_swiglu", "none", "swiglu", True, 2, 16, 24, [], 4, True),
]
# the tiny gradcheck models (C = 8, V = 11) scale the cutoffs down
TINY_CUTOFFS = {"adaptive_tied_alibi_gelu_final": [4, 7],
                "adaptive_untied_sinusoidal_relu_nofinal": [5],
                "adaptive_tied_nocut_none_swiglu": []}
MIN_HITS = 2  # every cluster appears at least this often among the targets (and the inputs)


# ----------------------------------------------------------------------------- config, shapes


def make_config(position, act, final_norm, H, C, F, cutoffs, factor, tie, seq_len=T, batch=B):
    cfg = R.make_config(position, act, final_norm, H, C, F, n_layers=N_LAYERS, seq_len=seq_len,
                        batch=batch)
    cfg["model"]["output"] = {"type": "adaptive", "cutoffs": list(cutoffs), "factor": factor,
                              "tie": tie, "dropout": 0}
    return cfg


def clusters(cfg, Vn):
    """bounds [s_0 = 0, s_1, ..., s_K = V] and widths [d_0 = C, d_1, ...]."""
    m = cfg["model"]
    o = m["output"]
    C = m["d_model"]
    bounds = [0] + list(o["cutoffs"]) + [Vn]
    assert all(a < b for a, b in zip(bounds, bounds[1:])), ("cutoffs must increase inside (0, V)", bounds)
    K = len(bounds) - 1
    dims = [C // o["factor"] ** k for k in range(K)]
    assert all(d >= 1 for d in dims), dims
    return bounds, dims


def adaptive_shapes(cfg, Vn):
    bounds, dims = clusters(cfg, Vn)
    C, K = cfg["model"]["d_model"], len(dims)
    size = [bounds[k + 1] - bounds[k] for k in range(K)]
    sh = [(f"adaptive.emb.{k}.weight", (size[k], dims[k])) for k in range(K)]
    sh += [(f"adaptive.proj.{k}.weight", (C, dims[k])) for k in range(K)]
    if K > 1:
        sh.append(("adaptive.cluster.weight", (K - 1, C)))
    if not cfg["model"]["output"]["tie"]:
        sh += [(f"adaptive.out.emb.{k}.weight", (size[k], dims[k])) for k in range(K)]
        sh += [(f"adaptive.out.proj.{k}.weight", (C, dims[k])) for k in range(1, K)]
    return sh


def shapes(cfg, Vn):
    """adaptive parameters (in place of tok_emb.weight), then reference.py's layers and ln_f."""
    body = R.param_shapes(cfg, Vn)
    assert body[0][0] == "tok_emb.weight"
    return adaptive_shapes(cfg, Vn) + body[1:]


def init(cfg, Vn, gen):
    """Weights drawn in shape order from gen, rounded to float32, held in float64.
    Same scales as reference.py for the body; for the adaptive parameters:
    emb / out.emb std 0.5 (0.25 without final LayerNorm), proj / out.proj std 1/sqrt(d_k)
    (so emb_k @ proj_k^T has the std of emb_k), cluster std 0.5 (0.25 without final LN)."""
    fn = cfg["model"]["final_norm"]
    out = {}
    for name, shape in shapes(cfg, Vn):
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        if name.startswith("adaptive."):
            if ".emb." in name or name == "adaptive.cluster.weight":
                t = (0.5 if fn else 0.25) * z
            else:  # proj / out.proj, shape (C, d_k)
                t = z / math.sqrt(shape[1])
        elif name.endswith("attn.qkv.weight"):
            t = 0.5 * z
        elif ".ln1." in name or ".ln2." in name or name.startswith("ln_f."):
            t = 1.0 + 0.1 * z if name.endswith(".weight") else 0.1 * z
        elif name.endswith(".bias"):
            t = 0.1 * z
        else:  # attn.proj, fc1, gate, fc2
            t = z / math.sqrt(shape[1])
        out[name] = t.to(torch.float32).to(torch.float64)
    return out


def cluster_of(tok, bounds):
    for k in range(len(bounds) - 1):
        if bounds[k] <= tok < bounds[k + 1]:
            return k
    raise ValueError(tok)


def hits(tokens, bounds):
    K = len(bounds) - 1
    c = [0] * K
    for t in tokens.reshape(-1).tolist():
        c[cluster_of(t, bounds)] += 1
    return c


def make_tokens(cfg, Vn, gen):
    """Uniform random (B, T+1) sequences from gen (as reference.py), redrawn until every cluster
    appears at least MIN_HITS times among the targets and among the inputs.
    Returns inputs, targets, number of draws."""
    bounds, _ = clusters(cfg, Vn)
    Bn, Tn = cfg["train"]["batch"], cfg["train"]["seq_len"]
    for draw in range(1, 1001):
        seq = torch.randint(0, Vn, (Bn, Tn + 1), generator=gen, dtype=torch.int64)
        inputs, targets = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
        if min(hits(targets, bounds)) >= MIN_HITS and min(hits(inputs, bounds)) >= MIN_HITS:
            return inputs, targets, draw
    raise AssertionError("could not draw tokens hitting every cluster")


# ----------------------------------------------------------------------------- forward (torch)


def out_weights(P, cfg, k):
    """(E_k, P_k) of the adaptive softmax; P_0 is None (the head never projects)."""
    pre = "adaptive." if cfg["model"]["output"]["tie"] else "adaptive.out."
    return P[f"{pre}emb.{k}.weight"], (P[f"{pre}proj.{k}.weight"] if k > 0 else None)


def adaptive_input(P, inputs, cfg, Vn):
    bounds, dims = clusters(cfg, Vn)
    C = cfg["model"]["d_model"]
    x = None
    for k in range(len(dims)):
        lo, hi = bounds[k], bounds[k + 1]
        mask = (inputs >= lo) & (inputs < hi)
        idx = (inputs - lo).clamp(0, hi - lo - 1)
        e = P[f"adaptive.emb.{k}.weight"][idx] @ P[f"adaptive.proj.{k}.weight"].t()  # (B,T,C)
        e = torch.where(mask[..., None], e, torch.zeros_like(e))
        x = e if x is None else x + e
    return x * math.sqrt(C)


def head_logits(P, h, cfg, Vn):
    bounds, dims = clusters(cfg, Vn)
    E0, _ = out_weights(P, cfg, 0)
    z = h @ E0.t()
    if len(dims) > 1:
        z = torch.cat([z, h @ P["adaptive.cluster.weight"].t()], dim=-1)
    return z


def tail_logits(P, h, cfg, k):
    E, Pk = out_weights(P, cfg, k)
    return (h @ Pk) @ E.t()


def full_logprobs(P, h, cfg, Vn):
    """log p of every word at every position (fairseq AdaptiveSoftmax.get_log_prob)."""
    bounds, dims = clusters(cfg, Vn)
    s1 = bounds[1]
    lz = torch.log_softmax(head_logits(P, h, cfg, Vn), dim=-1)
    parts = [lz[..., :s1]]
    for k in range(1, len(dims)):
        parts.append(lz[..., s1 + k - 1:s1 + k] + torch.log_softmax(tail_logits(P, h, cfg, k), dim=-1))
    return torch.cat(parts, dim=-1)


def target_loss(P, h, targets, cfg, Vn):
    """Mean -log p(target), computed only along each target's path (fairseq AdaptiveSoftmax.forward
    + AdaptiveLoss): the head's class is the word itself (t < s_1) or its cluster's slot, and
    cluster k's tail is evaluated only at the positions whose target lies in it."""
    bounds, dims = clusters(cfg, Vn)
    s1 = bounds[1]
    hf = h.reshape(-1, h.shape[-1])
    tf = targets.reshape(-1)
    head_t = tf.clone()
    for k in range(1, len(dims)):
        head_t[(tf >= bounds[k]) & (tf < bounds[k + 1])] = s1 + k - 1
    lz = torch.log_softmax(head_logits(P, hf, cfg, Vn), dim=-1)
    total = -lz.gather(1, head_t[:, None]).sum()
    for k in range(1, len(dims)):
        rows = ((tf >= bounds[k]) & (tf < bounds[k + 1])).nonzero()[:, 0]
        if rows.numel() == 0:
            continue
        lu = torch.log_softmax(tail_logits(P, hf[rows], cfg, k), dim=-1)
        total = total - lu.gather(1, (tf[rows] - bounds[k])[:, None]).sum()
    return total / tf.numel()


def forward(P, inputs, targets, cfg, Vn=V):
    embed = R.add_positions(adaptive_input(P, inputs, cfg, Vn), cfg)
    hidden, h, attn = R.body(embed, P, cfg, bias=R.alibi_biases(cfg, inputs.shape[1]))
    return {"embed": embed, "hidden": hidden, "final": h, "attn": attn,
            "logprobs": full_logprobs(P, h, cfg, Vn), "loss": target_loss(P, h, targets, cfg, Vn)}


# ----------------------------------------------------------------------------- a second, naive forward
# Plain Python floats and scalar loops; the output is built in probability space
# (p = head softmax entry * tail softmax entry) for all V words, then logged and indexed.


def naive(P, inputs, targets, cfg, Vn=V):
    m = cfg["model"]
    C, tie = m["d_model"], m["output"]["tie"]
    W = {k: v.tolist() for k, v in P.items()}
    bounds, dims = clusters(cfg, Vn)
    K = len(dims)
    Bn, Tn = len(inputs), len(inputs[0])
    pre = "adaptive." if tie else "adaptive.out."
    embeds, finals, logprobs, total = [], [], [], 0.0
    for bi in range(Bn):
        xs = []
        for t in range(Tn):
            tok = inputs[bi][t]
            k = cluster_of(tok, bounds)
            row = W[f"adaptive.emb.{k}.weight"][tok - bounds[k]]
            pj = W[f"adaptive.proj.{k}.weight"]
            e = [math.sqrt(C) * sum(pj[c][d] * row[d] for d in range(dims[k])) for c in range(C)]
            if m["position"]["type"] == "sinusoidal":
                R.naive_add_sinusoidal(e, t)
            xs.append(e)
        embeds.append([list(v) for v in xs])
        frow, lrow = [], []
        for i, h in enumerate(R.naive_body(xs, W, cfg)):
            frow.append(h)
            E0 = W[pre + "emb.0.weight"]
            z = [sum(E0[w][c] * h[c] for c in range(C)) for w in range(bounds[1])]
            if K > 1:
                cl = W["adaptive.cluster.weight"]
                z += [sum(cl[k - 1][c] * h[c] for c in range(C)) for k in range(1, K)]
            ph = R.naive_softmax(z)
            prob = ph[:bounds[1]]
            for k in range(1, K):
                E, Pk = W[f"{pre}emb.{k}.weight"], W[f"{pre}proj.{k}.weight"]
                r = [sum(h[c] * Pk[c][j] for c in range(C)) for j in range(dims[k])]
                u = [sum(E[w][j] * r[j] for j in range(dims[k])) for w in range(bounds[k + 1] - bounds[k])]
                prob += [ph[bounds[1] + k - 1] * q for q in R.naive_softmax(u)]
            assert len(prob) == Vn
            lp = [math.log(q) for q in prob]
            lrow.append(lp)
            total -= lp[targets[bi][i]]
        finals.append(frow)
        logprobs.append(lrow)
    return {"loss": total / (Bn * Tn), "logprobs": logprobs, "embed": embeds, "final": finals}


# ----------------------------------------------------------------------------- build / write


def spec_config(spec, tiny=False):
    name, pos, act, fn, H, C, F, cutoffs, factor, tie = spec
    if tiny:
        return make_config(pos, act, fn, H, 8, 10, TINY_CUTOFFS[name], factor, tie, seq_len=6, batch=2)
    return make_config(pos, act, fn, H, C, F, cutoffs, factor, tie)


def build(spec):
    name = spec[0]
    cfg = spec_config(spec)
    gen = torch.Generator().manual_seed(R.case_seed(name))
    P = init(cfg, V, gen)
    inputs, targets, draws = make_tokens(cfg, V, gen)
    leaves = {k: t.clone().requires_grad_(True) for k, t in P.items()}
    out = forward(leaves, inputs, targets, cfg)
    out["loss"].backward()
    return {"name": name, "cfg": cfg, "P": P, "leaves": leaves, "inputs": inputs,
            "targets": targets, "out": out, "draws": draws}


def describe(bt):
    o = bt["cfg"]["model"]["output"]
    _, dims = clusters(bt["cfg"], V)
    output = (f"adaptive input + adaptive softmax (cutoffs {o['cutoffs']}, factor {o['factor']}, "
              f"dims {dims}, {'tied' if o['tie'] else 'untied'})")
    return R.describe(bt["name"], bt["cfg"], V, output=output)


def case_bytes(bt):
    names = [k for k, _ in shapes(bt["cfg"], V)]
    return R.fixture_bytes(names, bt["P"], bt["leaves"], bt["inputs"], bt["targets"], bt["out"],
                           bt["cfg"], V, describe(bt), output="logprobs")


# ----------------------------------------------------------------------------- self-checks


def maxdiff(a, b):
    a = a.detach() if torch.is_tensor(a) else torch.tensor(a, dtype=torch.float64)
    b = b.detach() if torch.is_tensor(b) else torch.tensor(b, dtype=torch.float64)
    return (a - b).abs().max().item()


def torch_asm_check(bt):
    """torch.nn.AdaptiveLogSoftmaxWithLoss (head = [E_0; cluster], tail k = Linear(C->d_k) with
    weight P_k^T, then Linear(d_k->size_k) with weight E_k) gives the same log-probs and loss."""
    cfg, P, out = bt["cfg"], bt["P"], bt["out"]
    bounds, dims = clusters(cfg, V)
    C = cfg["model"]["d_model"]
    asm = torch.nn.AdaptiveLogSoftmaxWithLoss(C, V, bounds[1:-1], div_value=float(cfg["model"]["output"]["factor"]),
                                              head_bias=False).double()
    with torch.no_grad():
        asm.head.weight.copy_(torch.cat([out_weights(P, cfg, 0)[0], P["adaptive.cluster.weight"]], 0))
        for k in range(1, len(dims)):
            E, Pk = out_weights(P, cfg, k)
            assert asm.tail[k - 1][0].weight.shape == Pk.t().shape and asm.tail[k - 1][1].weight.shape == E.shape
            asm.tail[k - 1][0].weight.copy_(Pk.t())
            asm.tail[k - 1][1].weight.copy_(E)
        h = out["final"].detach().reshape(-1, C)
        lp = asm.log_prob(h)
        res = asm(h, bt["targets"].reshape(-1))
    return maxdiff(lp, out["logprobs"].reshape(-1, V)), abs(res.loss.item() - out["loss"].item())


def selfcheck():
    # 1. gradcheck of the whole tiny model (C 8, V 11, T 6) in each case's configuration
    for spec in CASES:
        name = spec[0]
        cfg = spec_config(spec, tiny=True)
        gen = torch.Generator().manual_seed(R.case_seed("gradcheck-" + name))
        P = init(cfg, 11, gen)
        inputs, targets, _ = make_tokens(cfg, 11, gen)
        names = [k for k, _ in shapes(cfg, 11)]
        leaves = tuple(P[k].clone().requires_grad_(True) for k in names)
        f = lambda *ts: forward(dict(zip(names, ts)), inputs, targets, cfg, 11)["loss"]
        assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-7, rtol=1e-5), name
        print(f"selfcheck: gradcheck ok for tiny {name} (cutoffs {TINY_CUTOFFS[name]}, dims "
              f"{clusters(cfg, 11)[1]}, {sum(t.numel() for t in leaves)} parameters)")

    for spec in CASES:
        bt = build(spec)
        name, cfg, P, leaves, out = bt["name"], bt["cfg"], bt["P"], bt["leaves"], bt["out"]
        bounds, dims = clusters(cfg, V)
        K = len(dims)
        loss = out["loss"].item()
        assert math.isfinite(loss), name
        lp = out["logprobs"].detach()
        # 2. normalised; the per-target loss path agrees with the full distribution
        norm = (torch.exp(lp).sum(-1) - 1).abs().max().item()
        assert norm < 1e-12, (name, norm)
        dfull = abs(loss + lp.gather(-1, bt["targets"][..., None]).mean().item())
        assert dfull < 1e-12, (name, dfull)
        # every cluster is hit
        th, ih = hits(bt["targets"], bounds), hits(bt["inputs"], bounds)
        assert min(th) >= MIN_HITS and min(ih) >= MIN_HITS
        # 3. the naive scalar implementation
        nv = naive(P, bt["inputs"].tolist(), bt["targets"].tolist(), cfg)
        dl = abs(nv["loss"] - loss)
        dlp = maxdiff(nv["logprobs"], lp)
        de = maxdiff(nv["embed"], out["embed"])
        dh = maxdiff(nv["final"], out["final"])
        assert dl < 1e-10 and dlp < 1e-10 and de < 1e-10 and dh < 1e-10, (name, dl, dlp, de, dh)
        msg = (f"selfcheck: {name}: loss {loss:.9f}; sum p - 1 <= {norm:.1e}; target path vs full "
               f"{dfull:.1e}; naive agrees (loss {dl:.1e}, logprobs {dlp:.1e}, embed {de:.1e}, "
               f"final {dh:.1e}); target hits per cluster {th}, input hits {ih} ({bt['draws']} draw(s))")
        print(msg)
        # 4. gradients: finite, nonzero per tensor; the loss path's gradient equals the gradient of
        #    the full distribution's -mean log p(target)
        for k, t in leaves.items():
            assert torch.isfinite(t.grad).all(), (name, k)
            assert t.grad.abs().max().item() > 0, (name, k)
        l2 = {k: t.clone().requires_grad_(True) for k, t in P.items()}
        o2 = forward(l2, bt["inputs"], bt["targets"], cfg)
        (-o2["logprobs"].gather(-1, bt["targets"][..., None]).mean()).backward()
        dg = max(maxdiff(l2[k].grad, leaves[k].grad) for k in leaves)
        assert dg < 1e-12, (name, dg)
        zero_rows = {k: int((leaves[k].grad.abs().sum(1) == 0).sum()) for k in leaves
                     if k.startswith("adaptive.") and leaves[k].grad.dim() == 2}
        zero_rows = {k: v for k, v in zero_rows.items() if v}
        used = set(bt["inputs"].reshape(-1).tolist())
        for k, v in zero_rows.items():
            # only possible: untied input embedding rows of tokens absent from the inputs
            assert not cfg["model"]["output"]["tie"] and k.startswith("adaptive.emb."), (name, k)
            c = int(k.split(".")[2])
            want = sum(1 for t in range(bounds[c], bounds[c + 1]) if t not in used)
            assert v == want, (name, k, v, want)
        print(f"selfcheck: {name}: gradients finite, nonzero, equal to the full distribution's "
              f"({dg:.1e}); all-zero gradient rows: {zero_rows or 'none'}")
        # 5. independent implementations of the output layer
        if K > 1:
            a, b = torch_asm_check(bt)
            assert a < 1e-12 and b < 1e-12, (name, a, b)
            print(f"selfcheck: {name}: torch.nn.AdaptiveLogSoftmaxWithLoss agrees "
                  f"(logprobs {a:.1e}, loss {b:.1e})")
        else:
            # one cluster, proj.0 = identity: reference.py's tied full-softmax model with tok_emb = emb.0
            C = cfg["model"]["d_model"]
            P3 = dict(P)
            P3["adaptive.proj.0.weight"] = torch.eye(C, dtype=torch.float64)
            o3 = forward(P3, bt["inputs"], bt["targets"], cfg)
            Pr = {k: v for k, v in P.items() if not k.startswith("adaptive.")}
            Pr["tok_emb.weight"] = P["adaptive.emb.0.weight"]
            orf = R.forward(Pr, bt["inputs"], bt["targets"], cfg)
            dl3 = abs(o3["loss"].item() - orf["loss"].item())
            dlp3 = maxdiff(o3["logprobs"], torch.log_softmax(orf["logits"], -1))
            dh3 = maxdiff(o3["final"], orf["final"])
            assert dl3 < 1e-12 and dlp3 < 1e-12 and dh3 < 1e-12, (name, dl3, dlp3, dh3)
            print(f"selfcheck: {name}: with proj.0 = I equals reference.py's tied full softmax "
                  f"(loss {dl3:.1e}, logprobs {dlp3:.1e}, final {dh3:.1e})")
        # 6. tying = sharing: untied with out.* copied from the input side gives the same outputs,
        #    and each tied gradient is the sum of its input-side and output-side gradients
        cu = json.loads(json.dumps(cfg))
        cu["model"]["output"]["tie"] = not cfg["model"]["output"]["tie"]
        if cfg["model"]["output"]["tie"]:
            Pu = dict(P)
            for k in range(K):
                Pu[f"adaptive.out.emb.{k}.weight"] = P[f"adaptive.emb.{k}.weight"]
                if k:
                    Pu[f"adaptive.out.proj.{k}.weight"] = P[f"adaptive.proj.{k}.weight"]
            lu = {k: t.clone().requires_grad_(True) for k, t in Pu.items()}
            ou = forward(lu, bt["inputs"], bt["targets"], cu)
            ou["loss"].backward()
            dt = abs(ou["loss"].item() - loss)
            dtg = 0.0
            for k in range(K):
                g = lu[f"adaptive.emb.{k}.weight"].grad + lu[f"adaptive.out.emb.{k}.weight"].grad
                dtg = max(dtg, maxdiff(g, leaves[f"adaptive.emb.{k}.weight"].grad))
                g = lu[f"adaptive.proj.{k}.weight"].grad
                if k:
                    g = g + lu[f"adaptive.out.proj.{k}.weight"].grad
                dtg = max(dtg, maxdiff(g, leaves[f"adaptive.proj.{k}.weight"].grad))
            assert dt < 1e-12 and dtg < 1e-12, (name, dt, dtg)
            print(f"selfcheck: {name}: untied copy gives the same loss ({dt:.1e}); tied grads = "
                  f"input-side + output-side grads ({dtg:.1e})")
        else:
            Pt = {k: v for k, v in P.items() if not k.startswith("adaptive.out.")}
            for k in range(K):
                Pt[f"adaptive.emb.{k}.weight"] = P[f"adaptive.out.emb.{k}.weight"]
                if k:
                    Pt[f"adaptive.proj.{k}.weight"] = P[f"adaptive.out.proj.{k}.weight"]
            ot = forward(Pt, bt["inputs"], bt["targets"], cu)
            d = maxdiff(ot["logprobs"], full_logprobs(P, ot["final"], cfg, V))
            assert d < 1e-12, (name, d)
            print(f"selfcheck: {name}: the output layer reads out.* (tied model with emb/proj = out.* "
                  f"gives the same log-probs from the same hidden state, {d:.1e})")
        # 7. causality: changing the last input token leaves earlier positions unchanged
        in2 = bt["inputs"].clone()
        in2[:, -1] = (in2[:, -1] + 1) % V
        o2 = forward(P, in2, bt["targets"], cfg)
        dc = maxdiff(o2["logprobs"][:, :-1], lp[:, :-1])
        assert dc < 1e-12, (name, dc)
        print(f"selfcheck: {name}: causal (changing the last input moves earlier log-probs by {dc:.1e})")

    # 8. determinism
    for spec in CASES:
        assert case_bytes(build(spec)) == case_bytes(build(spec)), spec[0]
    print("selfcheck: fixture bytes are deterministic")


def stats(bt):
    out, cfg, P = bt["out"], bt["cfg"], bt["P"]
    bounds, dims = clusters(cfg, V)
    h = out["final"].detach()
    z = head_logits(P, h, cfg, V)
    s = f"{bt['name']:42s} loss {out['loss'].item():.9f}  head logits std {z.std().item():.2f} " \
        f"[{z.min().item():.1f}, {z.max().item():.1f}]"
    for k in range(1, len(dims)):
        u = tail_logits(P, h, cfg, k).detach()
        s += f"  tail {k} std {u.std().item():.2f} [{u.min().item():.1f}, {u.max().item():.1f}]"
    lp = out["logprobs"].detach()
    pk = torch.stack([a[:, :, 2:, :].max(dim=-1).values.mean() for a in out["attn"]]).mean().item()
    g = [t.grad.abs().max().item() for t in bt["leaves"].values()]
    s += (f"  logprobs [{lp.min().item():.1f}, {lp.max().item():.1f}]  mean max attention prob {pk:.2f}"
          f"  max|grad| per tensor {min(g):.3g}..{max(g):.3g}  embed std {out['embed'].std().item():.2f}")
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify", action="store_true", help="compare with the committed fixtures")
    ap.add_argument("--no-selfcheck", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.no_selfcheck:
        selfcheck()
    files = {}
    for spec in CASES:
        bt = build(spec)
        print(stats(bt))
        files[spec[0] + ".safetensors"] = case_bytes(bt)
    return 1 if R.write_or_verify(files, args.verify) else 0


if __name__ == "__main__":
    sys.exit(main())
