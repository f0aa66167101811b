"""stats.py — uncertainty for scripts/results.py: paired bootstrap intervals on differences of
perplexity, from the per-segment losses ./eval --segments writes (docs/evaluation.md).

A difference between two evaluations on the same split (two models at one L_valid, or one model
at two L_valid) is paired: both scored the same tokens, so the stream is resampled once for both.
The unit of resampling is a block of stream that every evaluation involved cuts at the same
places: the segments themselves when all share one segmentation, else the stretches between the
boundaries they have in common (for L_valid 128 and 160: every 640 tokens). A side may hold
several seeds of one model; its loss is then the mean over seeds, and the interval says how much
the split's sampling moves that mean (the spread over seeds is reported beside it, not in it).

Statistic: d = mean loss of A - mean loss of B (nats per token), shown as the relative change in
perplexity exp(d) - 1; interval: the 2.5th and 97.5th percentiles of d over BOOTSTRAP resamples
of the blocks, each with replacement, with a fixed seed so results are reproducible.
"""
import math
import random

BOOTSTRAP = 1000  # resamples: the percentiles move by well under 0.1% of ppl between seeds
MIN_BLOCKS = 20  # fewer blocks in common than this: no interval (it would mean little)
RNG_SEED = 20221  # fixed: the same files give the same intervals


def boundaries(seg):
    """The stream positions where an evaluation's windows' scored ranges end."""
    out, t = [], 0
    for n in seg["tokens"]:
        t += n
        out.append(t)
    return out


def block_sums(seg, edges):
    """The summed loss of an evaluation's windows inside each block ending at edges[i]."""
    sums, cur, k = [0.0] * len(edges), 0.0, 0
    t = 0
    for n, l in zip(seg["tokens"], seg["nll"]):
        t += n
        cur += l
        if t == edges[k]:
            sums[k], cur, k = cur, 0.0, k + 1
    return sums


def common_blocks(segs):
    """(block end positions, tokens per block) of the boundaries every evaluation shares; None
    if they do not cover the same stream."""
    sets = [boundaries(s) for s in segs]
    if len({b[-1] if b else 0 for b in sets}) != 1 or not sets[0]:
        return None
    shared = set(sets[0]).intersection(*[set(b) for b in sets[1:]])
    edges = sorted(shared)
    tokens = [e - (edges[i - 1] if i else 0) for i, e in enumerate(edges)]
    return edges, tokens


def paired(a_segs, b_segs):
    """Relative perplexity change of side A against side B (each a list of segment records, one
    per seed), with its 95% paired-bootstrap interval: (change, lo, hi, blocks), lo and hi None
    when fewer than MIN_BLOCKS blocks are shared; None when the records do not cover one
    stream."""
    if not a_segs or not b_segs:
        return None
    common = common_blocks(list(a_segs) + list(b_segs))
    if common is None:
        return None
    edges, tokens = common

    def side(segs):
        per = [block_sums(s, edges) for s in segs]
        return [sum(col) / len(per) for col in zip(*per)]

    d = [x - y for x, y in zip(side(a_segs), side(b_segs))]
    total = float(sum(tokens))
    est = sum(d) / total
    n = len(d)
    if n < MIN_BLOCKS:
        return math.expm1(est), None, None, n
    rng = random.Random(RNG_SEED)
    stats = []
    idx = range(n)
    for _ in range(BOOTSTRAP):
        pick = rng.choices(idx, k=n)
        stats.append(sum(d[i] for i in pick) / sum(tokens[i] for i in pick))
    stats.sort()
    lo = stats[int(0.025 * BOOTSTRAP)]
    hi = stats[min(BOOTSTRAP - 1, int(math.ceil(0.975 * BOOTSTRAP)) - 1)]
    return math.expm1(est), math.expm1(lo), math.expm1(hi), n


def fmt_ci(r):
    """'+3.2% [+2.6, +3.8]': the change and its interval in percent; '–' without an estimate."""
    if r is None:
        return "–"
    est, lo, hi, n = r
    if lo is None:
        return "%+.1f%% (%d blocks: no interval)" % (100 * est, n)
    return "%+.1f%% [%+.1f, %+.1f]" % (100 * est, 100 * lo, 100 * hi)


def excludes_zero(r):
    """Whether the interval lies wholly on one side of no change."""
    return r is not None and r[1] is not None and (r[1] > 0 or r[2] < 0)


def mean_sd(values):
    """Mean and sample standard deviation (None with one value)."""
    n = len(values)
    m = sum(values) / n
    if n < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
