#!/usr/bin/env python3
"""results.py — the ALiBi paper's tables, figures and claims from the files ./train and ./eval
wrote. Python 3 standard library; matplotlib (Debian's python3-matplotlib) for the figures.

  scripts/pyenv.sh scripts/results.py --runs runs/quick --out results/quick [--preset FILE]

Reads, for every directory under --runs that holds a config.json (one training run):
  config.json         method (model.position.type), training length L (train.seq_len), shape
  log.jsonl           training rows (tokens, elapsed_s, peak_rss_mb) and validation rows
  eval.jsonl          ./eval --json rows: nonoverlapping sweeps and sliding windows
  per_position.jsonl  ./eval --per-position rows
and --runs/manifest.json (written by reproduce.py: the commands) if present. Nothing else: every
number in the output comes from those files. Writes into --out:
  table_L<n>.md           a row per L_valid, a column per method, perplexity; best of a row bold
                          (the layout of the paper's Tables 2 and 3)
  fig1_extrapolation.png  perplexity vs L_valid, a panel per training L (Figure 1)
  speed_memory.md, fig2_speed_memory.png   training/evaluation tokens/s and memory (Table 1, Fig. 2)
  fig4_alibi_lengths.png  ALiBi trained at several L across L_valid, sinusoidal at its own L (Fig. 4)
  fig_per_position.png, per_position.md   mean loss by position inside the segment at the
                          longest L_valid profiled (adjacent buckets merged to >= 1,000 tokens)
  sliding.md              nonoverlapping vs sliding-window perplexity at L_valid = L (Appendix B)
  claims.md, claims.json  the paper's seven qualitative claims, each with its rule, the measured
                          numbers and a verdict
  README.md               what was run: commands, configs, revision, machine, wall-clock time;
                          an existing README's hand-written tail from a "## Notes" heading is kept
  runs/<model>/           copies of the JSONL and config files above (not the checkpoints), so
                          the results can be regenerated from results/ alone (--runs results/X/runs)
Rows are matched on (split, mode, stride, L_valid); when a row appears twice, the last one counts.
"""
import argparse
import glob
import gzip
import json
import math
import os
import platform
import shutil
import subprocess
import sys

import stats  # scripts/stats.py: paired bootstrap intervals, mean and sd

# ---- the rules of the claims (stated in claims.md) ----
ONSET = 0.05          # "degrades": perplexity more than 5% above that at L_valid = L
FLAT = 0.02           # "improves or stays flat": never more than 2% above that at L_valid = L
WELL_BEYOND = 4       # ... checked up to at least 4L
T5_BEST = (1.5, 3.0)  # "improves up to about 2L": the best L_valid is within [1.5L, 3L]
CLOSE = 0.05          # "close": at most 5% above

MIN_TOKENS = 1000     # per-position profiles: fewer tokens per point would plot noise

ORDER = ["sinusoidal", "rotary", "t5", "alibi"]

# ---- how each method is named and drawn: the registry's label and color fields ----

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STYLES = None  # method name -> its ./train --list-positions object, read once


def load_styles():
    """Every registered method's label and colour, from `./train --list-positions` (or
    $TRAINSHORT_BIN/train), read once. There is no built-in copy to fall back on: a copy would
    drift from the registry, and a missing binary is reported instead of guessed around."""
    global STYLES
    if STYLES is not None:
        return STYLES
    train = os.path.join(os.environ.get("TRAINSHORT_BIN") or ROOT, "train")
    try:
        out = subprocess.run([train, "--list-positions"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, universal_newlines=True, check=True).stdout
        STYLES = {o["name"]: o for o in (json.loads(line) for line in out.splitlines())}
    except OSError as e:
        die("%s: %s; results.py reads the methods' labels and colours from it: build it with "
            "`make` first" % (train, e.strerror))
    except subprocess.CalledProcessError as e:
        die("%s --list-positions failed (status %d); rebuild it with `make`" % (train, e.returncode))
    except (ValueError, TypeError, KeyError):
        die("%s --list-positions did not print JSON objects with a name; rebuild it with `make`"
            % train)
    return STYLES


def die(msg):
    print("error: " + msg, file=sys.stderr)
    sys.exit(2)


def label(method):
    """The method's display label; a method this build does not register keeps its name."""
    return load_styles().get(method, {}).get("label", method)


def color(method):
    """The method's colour, or None (matplotlib's next colour) for a method not registered."""
    return load_styles().get(method, {}).get("color")


def method_rank(method):
    """Sort key of a method: the paper's four in ORDER, then the others by name."""
    return (ORDER.index(method) if method in ORDER else len(ORDER), method)


def method_key(run):
    return method_rank(run.method) + (run.name,)


def fmt_ppl(x):
    return "–" if x is None else "%.2f" % x


def fmt_pct(x):
    return "–" if x is None else "%+.1f%%" % (100.0 * x)


def fmt_int(x):
    return "–" if x is None else "{:,}".format(int(round(x)))


def fmt_duration(s):
    if s is None:
        return "–"
    s = int(round(s))
    if s < 60:
        return "%d s" % s
    if s < 3600:
        return "%d min %02d s" % (s // 60, s % 60)
    return "%d h %02d min" % (s // 3600, (s % 3600) // 60)


def read_jsonl(path):
    """The JSON objects of a JSON-lines file, or of its gzip copy path + ".gz" (results/<preset>/
    runs/ keeps segments.jsonl compressed); [] when neither exists."""
    rows = []
    if not os.path.isfile(path) and os.path.isfile(path + ".gz"):
        opener, path = (lambda p: gzip.open(p, "rt")), path + ".gz"
    else:
        opener = open
    try:
        with opener(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass  # a line cut by a crash: ./eval rewrites the row
    except OSError:
        pass
    return rows


def get(d, dotted, default=None):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d


# ---- runs ----

def median_rate(rows):
    """Median tokens/s over the intervals between consecutive training rows (None if there are
    none). A median rather than total tokens over total time: a run of hours shares the machine
    now and then (a test run, another job), and those intervals should not set the figure; the
    first row's interval (start-up) is left out like any other outlier."""
    rates = sorted((b["tokens"] - a["tokens"]) / (b["elapsed_s"] - a["elapsed_s"])
                   for a, b in zip(rows, rows[1:])
                   if b["elapsed_s"] > a["elapsed_s"] and b["tokens"] > a["tokens"])
    if not rates:
        return None
    n = len(rates)
    return rates[n // 2] if n % 2 else (rates[n // 2 - 1] + rates[n // 2]) / 2


class Run:
    """One run directory: its config, training log and evaluation rows. seed is its train.seed;
    model the name of the model it is one seed of (its own name without a "-s<seed>" suffix)."""

    def __init__(self, name, path, split):
        self.name, self.path, self.split = name, path, split
        with open(os.path.join(path, "config.json")) as f:
            self.cfg = json.load(f)
        self.method = get(self.cfg, "model.position.type", "?")
        self.L = int(get(self.cfg, "train.seq_len", 0))
        self.seed = int(get(self.cfg, "train.seed", 1))
        suffix = "-s%d" % self.seed
        self.model = name[:-len(suffix)] if name.endswith(suffix) else name
        self._segments = None
        self.nonoverlap, self.sliding, self.per_position = {}, {}, {}
        self.eval_seconds, self.revs, self.data, self.tokens = 0.0, set(), None, None
        self.eval_peak = None
        for r in read_jsonl(os.path.join(path, "eval.jsonl")):
            if r.get("split", "valid") != split or "ppl" not in r:
                continue
            lv, stride = r.get("lvalid"), r.get("stride")
            if r.get("mode") == "sliding" and stride != lv:
                self.sliding[(lv, stride)] = r
            else:
                self.nonoverlap[lv] = r
        for r in list(self.nonoverlap.values()) + list(self.sliding.values()):
            self.eval_seconds += r.get("seconds", 0.0)
            if r.get("rev"):
                self.revs.add(r["rev"])
            self.data = self.data or r.get("data")
            self.tokens = self.tokens or r.get("tokens")
            if r.get("peak_rss_mb") is not None:
                self.eval_peak = max(self.eval_peak or 0.0, r["peak_rss_mb"])
        for r in read_jsonl(os.path.join(path, "per_position.jsonl")):
            if r.get("split", "valid") == split and r.get("mode", "nonoverlapping") == "nonoverlapping":
                self.per_position[r.get("lvalid")] = r
        log = read_jsonl(os.path.join(path, "log.jsonl"))
        train = [r for r in log if "loss" in r and "elapsed_s" in r]
        starts = [r for r in log if "start" in r]
        self.train_revs = {r["rev"] for r in starts if r.get("rev")}
        self.params = next((r["params"] for r in starts if r.get("params")), None)
        self.train_setups = {"%s threads, BLAS kernel %s%s" % (
            r.get("threads", "?"), r.get("blas", "?"),
            ", %s cores, CPU: %s" % (r.get("cores", "?"), r["cpu"]) if r.get("cpu") else "")
            for r in starts}
        val = [r for r in log if "val_ppl" in r]
        self.train_rows = train
        self.train_speed = self.train_seconds = self.train_peak = self.train_tokens = None
        if train:
            b = train[-1]
            self.train_speed = median_rate(train)
            if self.train_speed is None and b["elapsed_s"] > 0:
                self.train_speed = b["tokens"] / b["elapsed_s"]
            self.train_seconds, self.train_tokens = b["elapsed_s"], b["tokens"]
            peaks = [r["peak_rss_mb"] for r in train if r.get("peak_rss_mb") is not None]
            self.train_peak = max(peaks) if peaks else None
        self.final_val = val[-1] if val else None

    def ppl(self, lvalid):
        r = self.nonoverlap.get(lvalid)
        return r["ppl"] if r else None

    def curve(self):
        """(L_valid, ppl) of the nonoverlapping rows, by L_valid."""
        return sorted((lv, r["ppl"]) for lv, r in self.nonoverlap.items())

    def longest(self):
        c = self.curve()
        return c[-1] if c else (None, None)

    def segments(self, lvalid, stride=None):
        """The --segments record of this split at L_valid (nonoverlapping, or sliding with
        stride), or None."""
        if self._segments is None:
            self._segments = {}
            for r in read_jsonl(os.path.join(self.path, "segments.jsonl")):
                # a diverged model's segments hold nulls: no interval rather than a crash
                if r.get("split", "valid") == self.split and None not in r.get("nll", [None]):
                    self._segments[(r.get("lvalid"), r.get("stride"))] = r
        return self._segments.get((lvalid, stride or lvalid))


class Model:
    """The seeds of one model (runs of one name but for "-s<seed>"), read as one run: the
    perplexities are the means over seeds (a length counts only where every seed has it), the
    speeds are means, the memory the largest, the times and revisions those of all seeds. A model
    of one seed is that run. Used wherever a Run is: tables, figures, claims."""

    def __init__(self, runs):
        runs = sorted(runs, key=lambda r: r.seed)
        first = runs[0]
        self.runs, self.name, self.method, self.L = runs, first.model, first.method, first.L
        self.cfg, self.path, self.params, self.data = first.cfg, first.path, first.params, first.data
        self.tokens = first.tokens
        self.per_position = self._mean_profiles([r.per_position for r in runs])
        self.seeds = [r.seed for r in runs]
        self.nonoverlap = self._mean_rows([r.nonoverlap for r in runs])
        self.sliding = self._mean_rows([r.sliding for r in runs])
        mean = lambda xs: sum(xs) / len(xs) if xs and all(x is not None for x in xs) else None
        self.train_speed = mean([r.train_speed for r in runs])
        peaks = [x for r in runs for x in (r.train_peak,) if x is not None]
        self.train_peak = max(peaks) if peaks else None
        peaks = [x for r in runs for x in (r.eval_peak,) if x is not None]
        self.eval_peak = max(peaks) if peaks else None
        self.train_seconds = sum(r.train_seconds or 0.0 for r in runs)
        self.eval_seconds = sum(r.eval_seconds for r in runs)
        self.train_tokens = first.train_tokens
        self.train_rows = first.train_rows
        self.final_val = first.final_val if len(runs) == 1 else None
        self.revs = set().union(*[r.revs for r in runs])
        self.train_revs = set().union(*[r.train_revs for r in runs])
        self.train_setups = set().union(*[r.train_setups for r in runs])

    @staticmethod
    def _mean_rows(dicts):
        """key -> row with the mean ppl (and tokens/s) over the seeds, and "ppls" per seed, for
        the keys every seed has."""
        out = {}
        for k in set(dicts[0]).intersection(*[set(d) for d in dicts[1:]]):
            rows = [d[k] for d in dicts]
            row = dict(rows[0])
            row["ppls"] = [r["ppl"] for r in rows]
            row["ppl"] = sum(row["ppls"]) / len(rows)
            speeds = [r.get("tokens_per_s") for r in rows]
            if all(v is not None for v in speeds):
                row["tokens_per_s"] = sum(speeds) / len(speeds)
            out[k] = row
        return out

    @staticmethod
    def _mean_profiles(dicts):
        """L_valid -> per-position row with each bucket's loss the mean over the seeds, for the
        lengths every seed profiled with the same buckets."""
        out = {}
        for lv in set(dicts[0]).intersection(*[set(d) for d in dicts[1:]]):
            rows = [d[lv] for d in dicts]
            if any(r["edges"] != rows[0]["edges"] for r in rows):
                continue
            row = dict(rows[0])
            row["loss"] = [None if any(r["loss"][i] is None for r in rows) else
                           sum(r["loss"][i] for r in rows) / len(rows) for i in range(len(row["loss"]))]
            out[lv] = row
        return out

    ppl, curve, longest = Run.ppl, Run.curve, Run.longest

    def ppl_cell(self, lvalid):
        """The table cell of a perplexity: the mean, "± sd" over seeds when there are several."""
        r = self.nonoverlap.get(lvalid)
        if not r:
            return None
        m, sd = stats.mean_sd(r["ppls"])
        return "%.2f" % m + ("" if sd is None else " ± %.2f" % sd)

    def segments(self, lvalid, stride=None):
        """Every seed's --segments record at L_valid (sliding with stride), or None if a seed
        lacks it."""
        segs = [r.segments(lvalid, stride) for r in self.runs]
        return segs if all(segs) else None


def eval_ppl(m, lv, stride=None):
    """Model m's perplexity at L_valid lv: nonoverlapping, or sliding with stride."""
    if stride is None:
        return m.ppl(lv)
    row = m.sliding.get((lv, stride))
    return row["ppl"] if row else None


def compare(a, lv_a, b, lv_b, stride_a=None, stride_b=None):
    """Model a's perplexity at L_valid lv_a relative to model b's at lv_b (the same model at two
    lengths, or two models; sliding windows with a stride), as text: the change with its
    paired-bootstrap interval (stats.paired) when both have segments, else the change alone."""
    sa, sb = a.segments(lv_a, stride_a), b.segments(lv_b, stride_b)
    r = stats.paired(sa, sb) if sa and sb else None
    if r is None:
        pa, pb = eval_ppl(a, lv_a, stride_a), eval_ppl(b, lv_b, stride_b)
        return fmt_pct(pa / pb - 1) if pa and pb else "–"
    return stats.fmt_ci(r)


def group_models(runs):
    """The runs as Models: one per model name, its seeds together."""
    by = {}
    for r in runs:
        by.setdefault((r.model, r.L, r.method), []).append(r)
    return sorted((Model(rs) for rs in by.values()), key=lambda m: (m.L,) + method_key(m))


def seeds_of(runs):
    return sorted({r.seed for r in runs})


def load_runs(runs_dir, split):
    runs = []
    for cfg in sorted(glob.glob(os.path.join(runs_dir, "*", "config.json"))):
        d = os.path.dirname(cfg)
        try:
            runs.append(Run(os.path.basename(d), d, split))
        except (OSError, ValueError) as e:
            print("results: skipping %s: %s" % (d, e), file=sys.stderr)
    return sorted(runs, key=lambda r: (r.L,) + method_key(r))


def by_length(runs):
    out = {}
    for r in runs:
        out.setdefault(r.L, []).append(r)
    return out


def main_lengths(runs):
    """Training lengths with at least two methods: the panels of Figure 1 and the tables' focus."""
    groups = by_length(runs)
    main = [L for L, rs in sorted(groups.items()) if len({r.method for r in rs}) >= 2]
    return main or sorted(groups)


def pick(runs, method, L):
    """The run of a method at a length: the default-named one if there are several."""
    cands = [r for r in runs if r.method == method and r.L == L]
    for r in cands:
        if r.name == "%s-L%d" % (method, L):
            return r
    return cands[0] if cands else None


def column_labels(runs):
    labels = [label(r.method) for r in runs]
    return [lab if labels.count(lab) == 1 else r.name for lab, r in zip(labels, runs)]


DATASET = None  # the manifest's name for the corpus, when there is one


def dataset_name(runs):
    if DATASET:
        return DATASET
    for r in runs:
        if r.data:
            d = os.path.basename(os.path.dirname(r.data))
            return {"wikitext-2": "WikiText-2", "wikitext-103": "WikiText-103"}.get(d, d)
    return "the evaluation split"


# ---- tables ----

def md_table(header, rows, align=None):
    align = align or ["---:"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def bold_lowest(vals, fmt):
    """Table cells: each value formatted, the lowest in bold (every one that prints alike),
    None as –."""
    shown = [None if v is None else fmt % v for v in vals]
    best = min((v for v in vals if v is not None), default=None)
    best = None if best is None else fmt % best
    return ["–" if t is None else "**%s**" % t if t == best else t for t in shown]


# ---- architecture variants (docs/architecture.md) ----

NORM_NAMES = {"pre": "pre-LN", "post": "post-LN", "sandwich": "sandwich-LN", "deepnorm": "DeepNorm"}


def arch_variant(run):
    """The run's architecture as words: its norm placement and norm ("pre-LN", "post-LN, RMSNorm"),
    its attention ("MHA", "GQA-2", "MQA") and its FFN when gated."""
    cfg = run.cfg
    place = NORM_NAMES.get(get(cfg, "model.norm_position", "pre"), "?")
    if get(cfg, "model.norm", "layernorm") == "rmsnorm":
        place = "pre-RMSNorm" if place == "pre-LN" else place + ", RMSNorm"
    H = get(cfg, "model.n_heads", 0)
    kv = get(cfg, "model.n_kv_heads", H) or H
    attn = "MHA" if kv == H else "MQA" if kv == 1 else "GQA-%d" % kv
    act = get(cfg, "model.activation", "gelu")
    return ", ".join([place, attn] + ([act] if act in ("swiglu", "glu", "geglu") else []))


def arch_runs(runs):
    """The runs of a length when they differ in architecture (else None), by method then variant."""
    if len({arch_variant(r) for r in runs}) < 2:
        return None
    return sorted(runs, key=lambda r: (method_rank(r.method), r.name != "%s-L%d" % (r.method, r.L),
                                       arch_variant(r)))


def write_architecture(runs, out):
    """architecture.md: per training length with several architectures, perplexity at L and at
    the longest L_valid of every model, and the extrapolation ratio between them."""
    text, made = "", False
    for L, rs in sorted(by_length(runs).items()):
        rs = arch_runs(rs)
        if not rs:
            continue
        made = True
        far = max(lv for r in rs for lv in r.nonoverlap)
        text += "# Architecture and extrapolation, models trained with L = %d\n\n" % L
        text += ("Nonoverlapping validation perplexity on %s at L_valid = L and at L_valid = %d "
                 "(%gL); ratio = ppl(%d) / ppl(%d). Parameters as the training log's start row "
                 "counts them. Lowest perplexity per method in bold.\n\n" % (
                     dataset_name(rs), far, far / float(L), far, L))
        rows = []
        for m in sorted({r.method for r in rs}, key=method_rank):
            group = [r for r in rs if r.method == m]
            near = bold_lowest([r.ppl(L) for r in group], "%.2f")
            long_ = bold_lowest([r.ppl(far) for r in group], "%.2f")
            for r, a, b in zip(group, near, long_):
                ratio = r.ppl(far) / r.ppl(L) if r.ppl(far) and r.ppl(L) else None
                rows.append([label(m), arch_variant(r), fmt_int(r.params), a, b,
                             "%.3f" % ratio if ratio else "–", r.name])
        text += md_table(["method", "architecture", "parameters", "ppl at L = %d" % L,
                          "ppl at %d" % far, "ratio", "run"], rows,
                         [":---", ":---", "---:", "---:", "---:", "---:", ":---"])
        text += "\n"
    if made:
        write(os.path.join(out, "architecture.md"), text)
    return made


def bold_lowest_cells(models, lv):
    """A table row's cells at L_valid lv: each model's perplexity (mean ± sd over seeds), the
    lowest mean in bold (every one that prints alike), – where not evaluated."""
    means = [m.ppl(lv) for m in models]
    shown = ["%.2f" % v if v is not None else None for v in means]
    best = min((v for v in means if v is not None), default=None)
    best = None if best is None else "%.2f" % best
    return ["–" if t is None else "**%s**" % m.ppl_cell(lv) if t == best else m.ppl_cell(lv)
            for m, t in zip(models, shown)]


def best_margin(models, lv):
    """The row's best model against the runner-up at L_valid lv (paired bootstrap), as text."""
    have = sorted((m for m in models if m.ppl(lv) is not None), key=lambda m: m.ppl(lv))
    if len(have) < 2:
        return "–"
    tie = " (tie)" if "%.2f" % have[0].ppl(lv) == "%.2f" % have[1].ppl(lv) else ""
    return "%s vs %s: %s%s" % (label(have[0].method), label(have[1].method),
                               compare(have[0], lv, have[1], lv), tie)


SEED_RULE = ("With several seeds a cell is the mean ± the sample standard deviation over seeds; "
             "the interval is a paired bootstrap over the split's segments of the seed means "
             "(scripts/stats.py), so it measures the sampling of the split, not seed-to-seed "
             "variation.")


def write_tables(models, out, splits):
    files = []
    for L, rs in sorted(by_length(models).items()):
        lvalids = sorted({lv for r in rs for lv in r.nonoverlap})
        seeds = sorted({len(m.seeds) for m in rs})
        text = "# Perplexity, models trained with L = %d\n\n" % L
        text += ("Nonoverlapping evaluation on %s, the layout of the paper's Tables 2 and 3; "
                 "seeds per model: %s. The lowest perplexity of each row is in bold; – = not "
                 "evaluated. The last column is the bold model's perplexity relative to the next "
                 "best, with its 95%% interval. %s\n\n"
                 % (dataset_name(rs), "/".join(map(str, seeds)), SEED_RULE))
        for split, ms in splits:
            ms = sorted([m for m in ms if m.L == L], key=method_key)
            if not ms:
                continue
            lvalids = sorted({lv for m in ms for lv in m.nonoverlap})
            tokens = next((m.tokens for m in ms if m.tokens), None)
            rows = [[str(lv)] + bold_lowest_cells(ms, lv) + [best_margin(ms, lv)] for lv in lvalids]
            text += "## %s split (%s tokens scored at every L_valid)\n\n" % (split, fmt_int(tokens))
            text += md_table(["L_valid"] + column_labels(ms) + ["best vs next"], rows) + "\n"
        path = os.path.join(out, "table_L%d.md" % L)
        write(path, text)
        files.append(path)
    return files


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---- claims ----

class Claim:
    def __init__(self, num, title, rule, paper, header):
        self.num, self.title, self.rule, self.paper, self.header = num, title, rule, paper, header
        self.rows, self.results = [], []  # table rows; per training length: True/False
        self.seeds = None  # with several seeds: [(seed, that seed's verdict)]

    def own_verdict(self):
        if not self.results:
            return "not measured in this preset"
        return "reproduced" if all(self.results) else "not reproduced"

    def verdict(self):
        """With several seeds: reproduced only if every seed reproduces it, not reproduced if
        none does, mixed otherwise (SEEDS_RULE)."""
        if not self.seeds:
            return self.own_verdict()
        got = [v for _, v in self.seeds]
        if all(v == "reproduced" for v in got):
            return "reproduced"
        if "reproduced" not in got:
            return got[0] if len(set(got)) == 1 else "not reproduced"
        return "mixed (%d of %d seeds)" % (got.count("reproduced"), len(got))


SEEDS_RULE = ("With several seeds each rule is checked on every seed's models alone: a claim is "
              "**reproduced** only when it holds for every seed, **mixed** when it holds for some "
              "(the count says how many), **not reproduced** when it holds for none. The tables "
              "below show the means over seeds.")


def judge_by_seed(claims, runs):
    """Attaches to each claim its verdict on every seed's runs alone (with several seeds)."""
    seeds = seeds_of(runs)
    if len(seeds) < 2:
        return claims
    per = {s: all_claims(group_models([r for r in runs if r.seed == s])) for s in seeds}
    for i, c in enumerate(claims):
        c.seeds = [(s, per[s][i].own_verdict()) for s in seeds]
    return claims


def yes(ok):
    return "yes" if ok else "no"


def onset(run):
    """The smallest L_valid > L whose perplexity is more than ONSET above that at L_valid = L:
    (L_valid, ppl, change), or None."""
    base = run.ppl(run.L)
    for lv, p in run.curve():
        if lv > run.L and p > base * (1 + ONSET):
            return lv, p, p / base - 1
    return None


def onset_text(run):
    o = onset(run)
    if o:
        return "%d (%s)" % (o[0], fmt_pct(o[2]))
    return "none up to %d" % run.longest()[0]


def claim_sinusoidal(runs, Ls):
    c = Claim(1, "Sinusoidal degrades as soon as L_valid exceeds L by a small margin",
              "For each training length L, the *onset* is the smallest measured L_valid > L whose "
              "perplexity is more than %d%% above the perplexity at L_valid = L. Reproduced if the "
              "onset exists and is at most 2L, at every L with a sinusoidal model evaluated at "
              "L_valid = L and at some L_valid in (L, 2L]." % (100 * ONSET),
              "Paper (WikiText-103, Table 2, L = 512): 20.05 at 512, 20.59 at 612, 24.86 at 712, "
              "43.54 at 1012; it improves until about L + 20 and degrades past about L + 50.",
              ["L", "ppl at L_valid = L", "onset L_valid", "ppl at onset", "change [95% CI]",
               "meets rule"])
    for L in Ls:
        s = pick(runs, "sinusoidal", L)
        if not s or s.ppl(L) is None or not any(L < lv <= 2 * L for lv, _ in s.curve()):
            continue
        o = onset(s)
        ok = o is not None and o[0] <= 2 * L
        if o:
            c.rows.append([L, fmt_ppl(s.ppl(L)), o[0], fmt_ppl(o[1]),
                           compare(s, o[0], s, L), yes(ok)])
        else:
            lv, p = s.longest()
            c.rows.append([L, fmt_ppl(s.ppl(L)), "none up to %d" % lv, "–", "–", yes(ok)])
        c.results.append(ok)
    return c


def claim_rotary(runs, Ls):
    c = Claim(2, "Rotary degrades later than sinusoidal",
              "Onsets as in claim 1. Reproduced if, at every L with both models, the sinusoidal "
              "onset exists and the rotary onset is at a larger L_valid (or there is none in the "
              "measured range); when both are at the same L_valid, rotary's rise there must be "
              "less than half of sinusoidal's; and at the longest L_valid both were evaluated "
              "at, rotary's perplexity is below sinusoidal's.",
              "Paper (Table 2, L = 512): rotary 20.07 at 512, 19.79 at 712, 21.37 at 1012, 79.25 at "
              "15512; it improves until about L + 200 (L + 100 for L = 1024). At the longest "
              "L_valid rotary ends 4-5x better than sinusoidal: 79.25 vs 406.01 at 15512 (L = "
              "512), 106.99 vs 453.32 at 16024 (L = 1024).",
              ["L", "sinusoidal onset (change)", "rotary onset (change)", "longest L_valid",
               "rotary vs sinusoidal there [95% CI]", "meets rule"])
    for L in Ls:
        s, r = pick(runs, "sinusoidal", L), pick(runs, "rotary", L)
        if not s or not r or s.ppl(L) is None or r.ppl(L) is None:
            continue
        if not any(lv > L for lv, _ in s.curve()) or not any(lv > L for lv, _ in r.curve()):
            continue
        so, ro = onset(s), onset(r)
        far = max(set(s.nonoverlap) & set(r.nonoverlap))
        later = so is not None and (ro is None or ro[0] > so[0] or
                                    (ro[0] == so[0] and ro[2] < so[2] / 2))
        ok = later and r.ppl(far) < s.ppl(far)
        c.rows.append([L, onset_text(s), onset_text(r), far, compare(r, far, s, far), yes(ok)])
        c.results.append(ok)
    return c


def claim_t5(runs, Ls):
    lo, hi = T5_BEST
    c = Claim(3, "T5 bias improves up to about 2L",
              "For each L, the measured L_valid with T5 bias's lowest perplexity is between %gL "
              "and %gL and that perplexity is below the one at L_valid = L. Needs an L_valid in "
              "[%gL, %gL] and one beyond %gL (to see where it stops improving)." % (lo, hi, lo, hi, hi),
              "Paper (Tables 2, 3): best 18.77 at 1112 for L = 512 (19.65 at 512, 64.94 at 12512); "
              "best 18.30 at 1824 for L = 1024 (18.80 at 1024).",
              ["L", "ppl at L_valid = L", "lowest ppl", "at L_valid", "L_valid / L", "longest L_valid",
               "ppl there", "meets rule"])
    for L in Ls:
        t = pick(runs, "t5", L)
        if not t or t.ppl(L) is None:
            continue
        curve = [(lv, p) for lv, p in t.curve() if lv >= L]
        if not any(lo * L <= lv <= hi * L for lv, _ in curve) or curve[-1][0] <= hi * L:
            continue
        blv, bp = min(curve, key=lambda x: (x[1], x[0]))
        ok = lo * L <= blv <= hi * L and bp < t.ppl(L)
        c.rows.append([L, fmt_ppl(t.ppl(L)), fmt_ppl(bp), blv, "%.2f" % (blv / float(L)),
                       curve[-1][0], fmt_ppl(curve[-1][1]), yes(ok)])
        c.results.append(ok)
    return c


def claim_alibi(runs, Ls):
    c = Claim(4, "ALiBi improves or stays flat well beyond L and stays stable to the longest L_valid",
              "For each L, no measured L_valid > L has a perplexity more than %d%% above the one "
              "at L_valid = L, and the longest measured L_valid is at least %dL (otherwise that L "
              "is not measured)." % (100 * FLAT, WELL_BEYOND),
              "Paper (Tables 2, 3): L = 512: 19.73 at 512, 18.40 at 3512, 18.31 at 15512; "
              "L = 1024: 18.66 at 1024, 17.92 at 3024, 17.98 at 16024.",
              ["L", "ppl at L_valid = L", "worst L_valid > L", "ppl there", "change [95% CI]",
               "longest L_valid", "ppl there", "change [95% CI]", "meets rule"])
    for L in Ls:
        a = pick(runs, "alibi", L)
        if not a or a.ppl(L) is None:
            continue
        base = a.ppl(L)
        beyond = [(lv, p) for lv, p in a.curve() if lv > L]
        if not beyond or beyond[-1][0] < WELL_BEYOND * L:
            continue
        wlv, wp = max(beyond, key=lambda x: (x[1], -x[0]))
        llv, lp = beyond[-1]
        ok = wp <= base * (1 + FLAT)
        c.rows.append([L, fmt_ppl(base), wlv, fmt_ppl(wp), compare(a, wlv, a, L), llv,
                       fmt_ppl(lp), compare(a, llv, a, L), yes(ok)])
        c.results.append(ok)
    return c


def claim_alibi_vs_sin(runs, Ls):
    c = Claim(5, "ALiBi trained at L beats sinusoidal trained at L",
              "At L_valid = L, where neither model extrapolates, ALiBi's perplexity is lower than "
              "sinusoidal's, at every L with both. ALiBi's lowest perplexity at any L_valid >= L is "
              "shown too but is not part of the rule.",
              "Paper (Table 5): at L_valid = L ALiBi is better for L >= 256 (19.73 vs 20.05 at 512, "
              "18.66 vs 19.34 at 1024) but not at L = 64 and 128 (28.46 vs 28.03, 23.98 vs 23.81).",
              ["L", "sinusoidal at L", "ALiBi at L", "ALiBi vs sinusoidal [95% CI]",
               "ALiBi lowest (L_valid)", "meets rule"])
    for L in Ls:
        s, a = pick(runs, "sinusoidal", L), pick(runs, "alibi", L)
        if not s or not a or s.ppl(L) is None or a.ppl(L) is None:
            continue
        ok = a.ppl(L) < s.ppl(L)
        blv, bp = min(((lv, p) for lv, p in a.curve() if lv >= L), key=lambda x: (x[1], x[0]))
        c.rows.append([L, fmt_ppl(s.ppl(L)), fmt_ppl(a.ppl(L)), compare(a, L, s, L),
                       "%s (%d)" % (fmt_ppl(bp), blv), yes(ok)])
        c.results.append(ok)
    return c


BENCH = []  # rows of scripts/bench_train.sh --rounds R (main: --bench, or <out>/bench_train.jsonl)
BENCH_FILE = None


def claim_t5_slowest(runs, Ls):
    """Judged on one back-to-back benchmark, never on training logs (different models, lengths
    and, across a preset's hours, different machine load)."""
    c = Claim(6, "T5 bias is the slowest to train",
              "From one run of `scripts/bench_train.sh --rounds R` committed beside these results "
              "(%s): the reference model trained with each method for the same steps, the methods "
              "alternated round by round on one host. Reproduced if T5 bias's fastest round is "
              "slower than every other method's slowest round, i.e. its deficit exceeds the "
              "run-to-run spread. Without that file: not measured." % (BENCH_FILE or "no file"),
              "Paper (Table 1, one V100, words/s at L = 512): sinusoidal 28.5k, rotary 20.0k, "
              "T5 bias 14.4k, ALiBi 28.3k. Narang et al. (2021) measured T5 bias only 8.7% slower "
              "than sinusoidal on TPU.",
              ["method", "rounds", "mean tokens/s", "range", "vs fastest mean"])
    speeds, _ = bench_speeds()
    if "t5" not in speeds or len(speeds) < 2:
        return c
    fastest = max(sum(v) / len(v) for v in speeds.values())
    for m in sorted(speeds, key=method_rank):
        v = speeds[m]
        c.rows.append([label(m), len(v), fmt_int(sum(v) / len(v)),
                       "%s–%s" % (fmt_int(min(v)), fmt_int(max(v))),
                       fmt_pct(sum(v) / len(v) / fastest - 1)])
    c.results.append(all(max(speeds["t5"]) < min(v) for m, v in speeds.items() if m != "t5"))
    return c


SLIDE_GAIN = 0.01  # claim 8: "the gain vanishes": sliding ppl past L at most 1% below that at L


def claim_sliding_gain(runs, Ls):
    c = Claim(8, "ALiBi's gain past L vanishes under sliding-window evaluation",
              "For each L, ALiBi evaluated with sliding windows of L_valid > L and a small stride "
              "(the preset's sliding_long) against its sliding window at L_valid = L (stride "
              "sliding_stride): reproduced if no longer window is more than %d%% better, while "
              "nonoverlapping evaluation at the same L_valid is shown beside it. The paper's reading: "
              "most of ALiBi's nonoverlapping gain from L_valid > L comes from easing the early "
              "token curse, not from context beyond L." % (100 * SLIDE_GAIN),
              "Paper (Table 15, stride 1, L = 512): 17.98 at 512, 17.92 at 1024, 18.20 at 1536, "
              "18.28 at 2048, 18.30 at 3072; nonoverlapping (Table 2) 19.73 at 512, 18.52 at "
              "1512, 18.40 at 3512.",
              ["L", "sliding at L (stride)", "L_valid", "sliding there (stride)",
               "sliding change [95% CI]", "nonoverlapping change [95% CI]", "meets rule"])
    for L in Ls:
        a = pick(runs, "alibi", L)
        if not a:
            continue
        at_L = [(S, row) for (lv, S), row in a.sliding.items() if lv == L]
        longer = sorted((lv, S, row) for (lv, S), row in a.sliding.items() if lv > L)
        if not at_L or not longer:
            continue
        S0, row0 = min(at_L, key=lambda x: x[0])
        oks = []
        for lv, S, row in longer:
            ok = row["ppl"] >= row0["ppl"] * (1 - SLIDE_GAIN)
            oks.append(ok)
            c.rows.append([L, "%s (%d)" % (fmt_ppl(row0["ppl"]), S0), lv,
                           "%s (%d)" % (fmt_ppl(row["ppl"]), S), compare(a, lv, a, L, S, S0),
                           compare(a, lv, a, L) if a.ppl(lv) and a.ppl(L) else "–", yes(ok)])
        c.results.append(all(oks))
    return c


def claim_half_length(runs, Ls):
    c = Claim(7, "ALiBi trained at L/2 is close to sinusoidal trained at L",
              "For each L with a sinusoidal model at L and an ALiBi model at L/2 evaluated at "
              "L_valid = L: ALiBi's perplexity is at most %d%% above sinusoidal's at L_valid = L "
              "(lower counts as close). The last columns check a stricter variant that is not "
              "part of the verdict: ALiBi at L/2 beats every method trained at L, at L_valid = L."
              % (100 * CLOSE),
              "Paper (Table 5): ALiBi trained at 512 gets 18.81 at L_valid = 1024, sinusoidal "
              "trained at 1024 gets 19.34; ALiBi at 256 gets 19.89 at 512 vs sinusoidal's 20.05.",
              ["L", "ALiBi trained at L/2, at L_valid = L", "sinusoidal trained at L, at L",
               "difference [95% CI]", "meets rule", "best other method at L (ppl)",
               "ALiBi L/2 vs it [95% CI]", "stricter: beats every method"])
    for L in sorted({r.L for r in runs}):
        s = pick(runs, "sinusoidal", L)
        a = pick(runs, "alibi", L // 2) if L % 2 == 0 else None
        if not s or not a or s.ppl(L) is None or a.ppl(L) is None:
            continue
        ok = a.ppl(L) <= s.ppl(L) * (1 + CLOSE)
        picked = (pick(runs, m, L) for m in sorted({o.method for o in runs if o.L == L}))
        best = min((o for o in picked if o and o.ppl(L) is not None), key=lambda o: o.ppl(L))
        c.rows.append([L, fmt_ppl(a.ppl(L)), fmt_ppl(s.ppl(L)), compare(a, L, s, L), yes(ok),
                       "%s (%s)" % (label(best.method), fmt_ppl(best.ppl(L))),
                       compare(a, L, best, L), yes(a.ppl(L) < best.ppl(L))])
        c.results.append(ok)
    return c


def all_claims(runs):
    Ls = sorted({r.L for r in runs})
    return [claim_sinusoidal(runs, Ls), claim_rotary(runs, Ls), claim_t5(runs, Ls),
            claim_alibi(runs, Ls), claim_alibi_vs_sin(runs, Ls), claim_t5_slowest(runs, Ls),
            claim_half_length(runs, Ls), claim_sliding_gain(runs, Ls)]


def write_claims(claims, runs, out):
    text = ("# The paper's claims, checked against these runs\n\n"
            "Each claim of Press, Smith & Lewis (2022) is tested with the rule stated under it, on "
            "nonoverlapping validation perplexity (%s) and training speed from log.jsonl. "
            "Verdicts: **reproduced** (the rule holds at every training length where it could be "
            "checked), **not reproduced** (it fails at one or more; the table says where), **not "
            "measured in this preset** (the models or lengths the rule needs are missing). %s "
            "Where a rule compares two perplexities, the table gives the difference with its 95%% "
            "paired-bootstrap interval (scripts/stats.py); the rule itself compares the "
            "perplexities.\n\n"
            % (dataset_name(runs), SEEDS_RULE))
    text += md_table(["#", "claim", "verdict"],
                     [[c.num, c.title, c.verdict()] for c in claims], ["---:", "---", "---"])
    for c in claims:
        text += "\n## %d. %s\n\n" % (c.num, c.title)
        text += "Rule: %s\n\n" % c.rule
        text += "%s\n\n" % c.paper
        if c.rows:
            text += md_table(c.header, c.rows)
            text += "\n"
        if c.seeds:
            text += "Per seed: %s.\n\n" % ", ".join("seed %d %s" % sv for sv in c.seeds)
        text += "Verdict: **%s**\n" % c.verdict()
    write(os.path.join(out, "claims.md"), text)
    js = [{"claim": c.num, "title": c.title, "rule": c.rule, "verdict": c.verdict(),
           "header": c.header, "rows": c.rows,
           "seeds": [{"seed": sd, "verdict": v} for sd, v in c.seeds or []]} for c in claims]
    write(os.path.join(out, "claims.json"), json.dumps(js, indent=1) + "\n")


# ---- speed, memory, sliding windows ----

def bench_speeds():
    """{method: [tokens/s per round]} of the benchmark file (claim 6), and its hosts."""
    speeds, hosts = {}, set()
    for r in BENCH:
        if r.get("name") and r.get("tokens_per_s"):
            speeds.setdefault(r["name"], []).append(r["tokens_per_s"])
            hosts.add(r.get("cpu", "not recorded"))
    return speeds, sorted(hosts)


def bench_section():
    """speed_memory.md's first section: the one back-to-back benchmark, when there is one."""
    speeds, hosts = bench_speeds()
    if not speeds:
        return ("No training benchmark is committed beside these results (claim 6 and Figure 2's "
                "training panel need `scripts/bench_train.sh --rounds R` as bench_train.jsonl).\n\n")
    rows = [[label(m), len(v), fmt_int(sum(v) / len(v)), "%s–%s" % (fmt_int(min(v)), fmt_int(max(v)))]
            for m, v in sorted(speeds.items(), key=lambda kv: method_rank(kv[0]))]
    return ("## Training speed: one benchmark run (%s)\n\n"
            "The reference model trained by `scripts/bench_train.sh --rounds R`, the methods "
            "alternated round by round on one host (%s). The range is the run-to-run spread.\n\n"
            % (os.path.basename(BENCH_FILE), "; ".join(hosts))) + md_table(
        ["method", "rounds", "mean tokens/s", "range"], rows, ["---", "---:", "---:", "---:"]) + "\n"


def write_speed(runs, out):
    rows = []
    for L, rs in sorted(by_length(runs).items()):
        common = set.intersection(*[set(r.nonoverlap) for r in rs]) if rs else set()
        far = max(common) if common else None
        for r in sorted(rs, key=method_key):
            e_L = r.nonoverlap.get(L, {}).get("tokens_per_s")
            e_far = r.nonoverlap.get(far, {}).get("tokens_per_s") if far else None
            rows.append([label(r.method), L, fmt_int(r.train_speed), fmt_int(e_L),
                         "%s (%s)" % (fmt_int(e_far), far) if far else "–",
                         fmt_int(r.train_peak), fmt_int(r.eval_peak)])
    text = "# Training and evaluation speed and memory\n\n" + bench_section()
    hosts = sorted({h for r in runs for h in r.train_setups}) or ["not recorded"]
    text += ("## From the preset's own logs (not a benchmark)\n\n"
             "The models trained hours apart, on these setups (the start rows of log.jsonl): "
             "%s. " % "; ".join(hosts)) + (
            "Training tokens/s: the median over "
            "the intervals between consecutive training rows of log.jsonl of tokens over "
            "elapsed_s (validation excluded; a median, so that stretches of a long run that "
            "shared the machine with other jobs do not set it). Evaluation tokens/s: tokens scored per second by ./eval at "
            "L_valid = L and at the longest L_valid every model of that L was evaluated at. Peak "
            "memory: the largest peak_rss_mb (resident set, MB) of the training log, and of the "
            "evaluation rows — ./eval sizes its buffers once for the longest L_valid of a "
            "command, so the evaluation figure is the memory at the longest length evaluated.\n\n")
    text += md_table(["method", "L", "train tokens/s", "eval tokens/s at L", "eval tokens/s (at L_valid)",
                      "train peak MB", "eval peak MB"], rows, ["---", "---:", "---:", "---:", "---:", "---:", "---:"])
    write(os.path.join(out, "speed_memory.md"), text)


def write_sliding(runs, out):
    rows = []
    for r in sorted(runs, key=lambda r: (r.L,) + method_key(r)):
        for (lv, stride), row in sorted(r.sliding.items()):
            if lv != r.L:
                continue
            non = r.ppl(lv)
            llv, lp = r.longest()
            rows.append([r.name, label(r.method), r.L, stride, fmt_ppl(non), fmt_ppl(row["ppl"]),
                         fmt_pct(row["ppl"] / non - 1) if non else "–",
                         "%s (%d)" % (fmt_ppl(lp), llv) if llv else "–"])
    text = ("# Nonoverlapping vs sliding-window evaluation at L_valid = L\n\n"
            "The paper's Appendix B point. Nonoverlapping segments give the first tokens of each "
            "segment little context (the \"early token curse\"); a sliding window of L_valid = L "
            "tokens advancing by the stride scores each token after the first window with "
            "L - stride to L - 1 tokens of context (docs/evaluation.md). The last column is the "
            "nonoverlapping perplexity at the longest L_valid evaluated: for ALiBi the paper finds "
            "that most of its gain from L_valid > L is this same effect.\n\n")
    if rows:
        text += md_table(["model", "method", "L", "stride", "nonoverlapping ppl", "sliding ppl",
                          "change", "nonoverlapping at longest L_valid"], rows,
                         ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:"])
    else:
        text += "No sliding-window rows in these runs.\n"
    write(os.path.join(out, "sliding.md"), text)


# ---- per-position profiles ----

def merged_profile(row, min_tokens=MIN_TOKENS):
    """The buckets of a per-position row merged left to right until each group holds at least
    min_tokens scored tokens (a short last group joins the one before): a list of (first, last,
    mean loss, tokens), positions 1-based. A bucket near the start of the segment holds one
    position of each segment, a few dozen tokens at a long L_valid: alone it is noise."""
    e, loss, count = row["edges"], row["loss"], row["count"]
    groups, cur = [], None
    for i, (l, n) in enumerate(zip(loss, count)):
        if l is None or not n:
            continue
        if cur is None:
            cur = [e[i] + 1, e[i + 1], 0.0, 0]
        cur[1], cur[2], cur[3] = e[i + 1], cur[2] + l * n, cur[3] + n
        if cur[3] >= min_tokens:
            groups.append(cur)
            cur = None
    if cur and groups:
        last = groups[-1]
        last[1], last[2], last[3] = cur[1], last[2] + cur[2], last[3] + cur[3]
    elif cur:
        groups.append(cur)
    return [(a, b, sl / n, n) for a, b, sl, n in groups]


def profiles(runs):
    """Per training length with profiles: (L, L_valid, [(run, merged profile)]) at the longest
    L_valid profiled, methods in the tables' order."""
    groups, out = by_length(runs), []
    for L in main_lengths(runs):
        with_rows = [r for r in groups[L] if r.per_position]
        if not with_rows:
            continue
        P = max(lv for r in with_rows for lv in r.per_position)
        out.append((L, P, [(r, merged_profile(r.per_position[P]))
                           for r in sorted(with_rows, key=method_key) if P in r.per_position]))
    return out


def write_per_position(runs, out):
    text = ("# Mean loss by position inside the segment\n\n"
            "From `./eval --per-position` (docs/evaluation.md) at the longest L_valid profiled: "
            "the mean loss (nats per token) of the tokens at each position of the nonoverlapping "
            "segments, where the methods break. Adjacent buckets are merged until each row holds "
            "at least %s tokens; every method is scored on the same tokens, so a row compares "
            "like with like. The lowest loss of a row is in bold.\n\n" % fmt_int(MIN_TOKENS))
    panels = profiles(runs)
    for L, P, cols in panels:
        ranges = sorted({(a, b) for _, prof in cols for a, b, _, _ in prof})
        cell = [{(a, b): (l, n) for a, b, l, n in prof} for _, prof in cols]
        rows = []
        for a, b in ranges:
            got = [c.get((a, b)) for c in cell]
            n = next(g[1] for g in got if g)
            where = "%d–%d" % (a, b) + (" (beyond L)" if a > L else "")
            rows.append([where, fmt_int(n)] + bold_lowest([g and g[0] for g in got], "%.3f"))
        text += "## Trained at L = %d, L_valid = %d\n\n" % (L, P)
        text += md_table(["positions", "tokens"] + column_labels([r for r, _ in cols]), rows,
                         ["---", "---:"] + ["---:"] * len(cols)) + "\n"
    if not panels:
        text += "No per-position rows in these runs.\n"
    write(os.path.join(out, "per_position.md"), text)


# ---- training budget (the budget preset) ----

def budgets(runs):
    """{(method, L): [(tokens trained, model)]} for the methods and lengths trained with more
    than one number of steps, by tokens; {} for a preset of one budget."""
    by = {}
    for r in runs:
        steps = get(r.cfg, "train.steps")
        tokens = (steps or 0) * (get(r.cfg, "train.batch") or 0) * (get(r.cfg, "train.accum") or 1) * r.L
        by.setdefault((r.method, r.L), []).append((tokens, r))
    return {k: sorted(v, key=lambda x: x[0]) for k, v in by.items() if len({t for t, _ in v}) > 1}


def budget_points(runs):
    """Per (method, L): [(tokens, ppl(2L)/ppl(L), ppl(16L)/ppl(L))]; and per method:
    [(tokens, ppl of L = 256 at 256 / ppl of L = 128 at 128)] for the budgets both have."""
    ratio = lambda r, k: r.ppl(k * r.L) / r.ppl(r.L) if r.ppl(k * r.L) and r.ppl(r.L) else None
    b = budgets(runs)
    per = {k: [(t, ratio(r, 2), ratio(r, 16)) for t, r in v] for k, v in b.items()}
    longer = {}
    for (m, L), v in b.items():
        other = dict(b.get((m, 2 * L), []))
        for t, r in v:
            o = other.get(t)
            if o and o.ppl(o.L) and r.ppl(L):
                longer.setdefault((m, L), []).append((t, o.ppl(o.L) / r.ppl(L)))
    return per, longer


def write_budget(runs, out):
    """budget.md: the extrapolation ratios and the L = 2L' / L' perplexity ratio per budget."""
    per, longer = budget_points(runs)
    if not per:
        return False
    f = lambda x: "%.3f" % x if x else "–"
    rows = [[label(m), L, fmt_int(t), f(r2), f(r16)] for (m, L), pts in
            sorted(per.items(), key=lambda kv: (kv[0][1],) + method_rank(kv[0][0])) for t, r2, r16 in pts]
    text = ("# Training budget and extrapolation\n\n"
            "Each row is a model trained with that many tokens (one cosine schedule over its "
            "budget): its nonoverlapping perplexity at 2L and at 16L over the one at L_valid = L. "
            "The paper's ratios (WikiText-103, 247M parameters, 205 epochs) are in fig_ratio.png; "
            "if under-training explains a difference, these ratios move towards the paper's as "
            "the budget grows.\n\n")
    text += md_table(["method", "L", "tokens trained", "ppl(2L) / ppl(L)", "ppl(16L) / ppl(L)"],
                     rows, ["---", "---:", "---:", "---:", "---:"])
    if longer:
        rows = [[label(m), "%d / %d" % (2 * L, L), fmt_int(t), f(x)] for (m, L), pts in
                sorted(longer.items(), key=lambda kv: (kv[0][1],) + method_rank(kv[0][0])) for t, x in pts]
        text += ("\nThe longer training length against the shorter, each at its own L_valid = L "
                 "(the paper finds every method better at L = 1024 than at 512):\n\n")
        text += md_table(["method", "L", "tokens trained", "ppl ratio"], rows,
                         ["---", "---:", "---:", "---:"])
    write(os.path.join(out, "budget.md"), text)
    return True


# ---- reference lines: the unigram ceiling, the paper's tables ----

def tokens_of(path):
    """The words of a WikiText file as ./train reads them: whitespace-separated, <eos> per line."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            for w in line.split():
                yield w
            yield "<eos>"


def unigram_ppl(runs, out, split):
    """Perplexity of the training split's unigram distribution on the split (the model that
    knows word frequencies and nothing else: a ceiling any trained LM should stay below). Cached
    in out/unigram.json, so results regenerated from the copied runs without the corpus keep it;
    None when neither the corpus nor the cache is there."""
    cache = os.path.join(out, "unigram.json")
    saved = {}
    if os.path.isfile(cache):
        with open(cache) as f:
            saved = json.load(f)
    if split in saved:
        return saved[split]["ppl"]
    cfg = runs[0].cfg if runs else {}
    d = get(cfg, "data.dir", "")
    d = d if os.path.isabs(d) else os.path.join(ROOT, d)
    train = os.path.join(d, get(cfg, "data.train", "wiki.train.tokens"))
    scored = os.path.join(d, get(cfg, "data." + split, "wiki.%s.tokens" % split))
    if not (os.path.isfile(train) and os.path.isfile(scored)):
        return None
    counts = {}
    for w in tokens_of(train):
        counts[w] = counts.get(w, 0) + 1
    total = float(sum(counts.values()))
    nll, n = 0.0, 0
    for w in tokens_of(scored):
        c = counts.get(w) or counts.get("<unk>")
        if not c:
            return None  # a word the unigram cannot score: no ceiling rather than a wrong one
        nll -= math.log(c / total)
        n += 1
    # paths as the repository sees them, so the cache names no machine's directories
    rel = lambda x: os.path.relpath(x, ROOT)
    saved[split] = {"ppl": math.exp(nll / n), "tokens": n, "train": rel(train), "scored": rel(scored)}
    write(cache, json.dumps(saved, indent=1) + "\n")
    return saved[split]["ppl"]


PAPER_TABLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_tables.json")


def paper_ratios(L):
    """The paper's ppl(L_valid) / ppl(L) per method, for its table whose training length is
    nearest to L (Table 2: 512, Table 3: 1024), as (paper L, {method: [(L_valid / L, ratio)]})."""
    with open(PAPER_TABLES) as f:
        tables = json.load(f)["tables"]
    PL = min((int(k) for k in tables), key=lambda k: (abs(math.log(k / float(L))), k))
    t = tables[str(PL)]
    out = {}
    for m in ORDER:
        base = t[m][t["lvalid"].index(PL)]
        out[m] = [(lv / float(PL), p / base) for lv, p in zip(t["lvalid"], t[m]) if p is not None]
    return PL, out


def nice_log_ticks(lo, hi, most=8):
    """Round tick values for a log axis from lo to hi: 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times
    powers of ten inside [lo, hi], thinned evenly to at most `most`."""
    cands = []
    for e in range(int(math.floor(math.log10(lo))) - 1, int(math.ceil(math.log10(hi))) + 1):
        cands += [m * 10 ** e for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)]
    inside = [v for v in cands if lo <= v <= hi]
    if len(inside) <= most:
        return inside
    step = (len(inside) - 1) / float(most - 1)
    return [inside[int(round(i * step))] for i in range(most)]


# ---- figures ----

def figures(runs, out, fig4_names, split="valid"):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter
    except ImportError:
        print("results: matplotlib is not available to %s (install python3-matplotlib, or run "
              "through scripts/pyenv.sh); figures skipped, the markdown is written"
              % sys.executable)
        return []
    plain = FuncFormatter(lambda v, _: "%g" % v)
    data = dataset_name(runs)
    made = []

    def log_x(ax, values):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())

    def maybe_log_y(ax, values, what):
        """A log axis when the values span more than 3x, its ticks chosen from the data's range
        (so that every line sits between labelled ticks), else a linear one."""
        values = [v for v in values if v]
        if values and max(values) / min(values) > 3:
            lo, hi = min(values) / 1.08, max(values) * 1.08
            ax.set_yscale("log")
            ax.set_ylim(lo, hi)
            ax.yaxis.set_major_locator(FixedLocator(nice_log_ticks(lo, hi)))
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_locator(LogLocator(base=10, subs="auto"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_ylabel(what + " (log scale)")
        else:
            ax.set_ylabel(what)

    def mark_train_length(ax, L):
        """The training length: a dotted line, labelled just above the plot area, where no
        line can run through the label."""
        ax.axvline(L, color="0.4", ls=":", lw=1.2)
        ax.text(L, 1.005, "L = %d" % L, transform=ax.get_xaxis_transform(), va="bottom",
                ha="center", fontsize=9, color="0.2", clip_on=False)

    def ppl_axes(ax, ys, title):
        """Scales, labels, grid and legend of a perplexity vs L_valid panel."""
        log_x(ax, None)
        maybe_log_y(ax, ys, "validation perplexity")
        ax.set_xlabel("evaluation length L_valid (tokens, log scale)")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=9)

    def save(fig, name, rect=(0, 0, 1, 1)):
        path = os.path.join(out, name)
        fig.tight_layout(rect=rect)
        fig.savefig(path + ".tmp.png", dpi=110)
        os.replace(path + ".tmp.png", path)
        plt.close(fig)
        made.append(path)

    groups = by_length(runs)
    main = main_lengths(runs)

    # Figure 1: perplexity vs L_valid per training length; with seeds the mean and a min-max band
    ceiling = unigram_ppl(runs, out, split)
    fig, axes = plt.subplots(1, len(main), figsize=(max(8.0, 5.6 * len(main)), 4.8), squeeze=False)
    for ax, L in zip(axes[0], main):
        ys = []
        for r in sorted(groups[L], key=method_key):
            c = r.curve()
            if not c:
                continue
            xs = [x for x, _ in c]
            ax.plot(xs, [y for _, y in c], marker="o", ms=3.5, lw=1.6, color=color(r.method),
                    label=label(r.method) if r.name == "%s-L%d" % (r.method, L) else r.name)
            spread = [r.nonoverlap[x].get("ppls") for x in xs]
            if all(p and len(p) > 1 for p in spread):
                ax.fill_between(xs, [min(p) for p in spread], [max(p) for p in spread],
                                color=color(r.method), alpha=0.18, lw=0)
                ys += [v for p in spread for v in p]
            ys += [y for _, y in c]
        if ceiling:
            ax.axhline(ceiling, color="0.35", ls="--", lw=1.0,
                       label="unigram of the training split (%.0f)" % ceiling)
            ys.append(ceiling)
        mark_train_length(ax, L)
        ppl_axes(ax, ys, "trained at L = %d" % L)
    seeds = sorted({len(r.runs) for r in runs if hasattr(r, "runs")})
    note = "; mean over %s seeds, band min-max" % "/".join(map(str, seeds)) if seeds != [1] else ""
    fig.suptitle("Figure 1: extrapolation — %s %s perplexity vs L_valid (nonoverlapping%s)"
                 % (data, split, note))
    save(fig, "fig1_extrapolation.png")

    # Ratio to L_valid = L against the paper's Tables 2 and 3 (WikiText-103)
    fig, axes = plt.subplots(1, len(main), figsize=(max(8.0, 5.6 * len(main)), 4.8), squeeze=False)
    for ax, L in zip(axes[0], main):
        PL, paper = paper_ratios(L)
        ys = []
        for r in sorted(groups[L], key=method_key):
            base = r.ppl(L)
            c = [(x / float(L), y / base) for x, y in r.curve() if x >= L] if base else []
            if c:
                ax.plot([x for x, _ in c], [y for _, y in c], lw=1.8, color=color(r.method),
                        label=label(r.method))
                ys += [y for _, y in c]
            if r.method in paper and r.name == "%s-L%d" % (r.method, L):
                pts = paper[r.method]
                ax.plot([x for x, _ in pts], [y for _, y in pts], ls="none", marker="o", ms=4,
                        mfc="none", color=color(r.method))
                ys += [y for _, y in pts]
        ax.plot([], [], ls="none", marker="o", mfc="none", color="0.3",
                label="markers: paper, L = %d (WikiText-103)" % PL)
        ax.axhline(1.0, color="0.5", lw=0.8)
        log_x(ax, None)
        ax.set_yscale("log")
        if ys:
            lo, hi = min(ys + [1.0]) / 1.05, max(ys + [1.0]) * 1.05
            ax.set_ylim(lo, hi)
            ax.yaxis.set_major_locator(FixedLocator(nice_log_ticks(lo, hi)))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("L_valid / L (log scale)")
        ax.set_ylabel("ppl(L_valid) / ppl(L) (log scale)")
        ax.set_title("ours trained at L = %d (lines), the paper at L = %d (markers)" % (L, PL),
                     fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Extrapolation as a ratio: %s %s (lines) against the paper's Tables 2 and 3"
                 % (data, split))
    save(fig, "fig_ratio.png")

    # Training budget: extrapolation ratios and the longer/shorter L ratio against tokens
    per, longer = budget_points(runs)
    if per:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
        for (m, L), pts in sorted(per.items(), key=lambda kv: (kv[0][1],) + method_rank(kv[0][0])):
            ls = "-" if L == min(L2 for _, L2 in per) else "--"
            for ax, k in ((axes[0], 1), (axes[1], 2)):
                xy = [(t, v) for t, v in ((q[0], q[k]) for q in pts) if v]
                if xy:
                    ax.plot([x for x, _ in xy], [y for _, y in xy], ls=ls, marker="o", ms=4,
                            color=color(m), label="%s, L = %d" % (label(m), L))
        for (m, L), pts in sorted(longer.items(), key=lambda kv: method_rank(kv[0][0])):
            axes[2].plot([t for t, _ in pts], [x for _, x in pts], marker="o", ms=4, color=color(m),
                         label="%s: L = %d over L = %d" % (label(m), 2 * L, L))
        titles = ["ppl(2L) / ppl(L)", "ppl(16L) / ppl(L)", "ppl at 2L' (trained 2L') / at L' (trained L')"]
        for ax, t in zip(axes, titles):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "%gM" % (v / 1e6)))
            ax.axhline(1.0, color="0.5", lw=0.8)
            ax.set_xlabel("tokens trained (log scale)")
            ax.set_title(t, fontsize=10)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
        fig.suptitle("Does more training close the gap to the paper? %s %s" % (data, split))
        save(fig, "fig_budget.png")

    # Training and validation loss against tokens seen, every run (each seed its own line)
    fig, axes = plt.subplots(1, len(main), figsize=(max(8.0, 5.6 * len(main)), 4.6), squeeze=False)
    for ax, L in zip(axes[0], main):
        late = []  # losses after the first tenth of training: the range worth showing
        for r in sorted(groups[L], key=method_key):
            for k, run in enumerate(getattr(r, "runs", [r])):
                tr = run.train_rows
                end = max([row["tokens"] for row in tr] or [0])
                late += [row["loss"] for row in tr if row["tokens"] > 0.1 * end]
                val = [row for row in read_jsonl(os.path.join(run.path, "log.jsonl"))
                       if "val_loss" in row and "tokens" in row]
                lab = label(r.method) if k == 0 else None
                if tr:
                    ax.plot([row["tokens"] for row in tr], [row["loss"] for row in tr], lw=0.7,
                            alpha=0.6, color=color(r.method), label=lab)
                if val:
                    ax.plot([row["tokens"] for row in val], [row["val_loss"] for row in val],
                            marker="o", ms=4, lw=1.4, color=color(r.method))
        if late:
            ax.set_ylim(min(late) - 0.1, max(late) + 0.2)
        ax.set_xlabel("tokens seen")
        ax.set_ylabel("loss (nats per token)")
        ax.set_title("trained at L = %d: training loss (thin), validation (dots)" % L, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9)
    fig.suptitle("Training curves: %s (validation on the first train.eval_tokens tokens)" % data)
    save(fig, "fig_training.png")

    # The architecture variants in the style of Figure 1: one panel per method, a line per variant
    for L in sorted(groups):
        rs = arch_runs(groups[L])
        if not rs:
            continue
        ms = sorted({r.method for r in rs}, key=method_rank)
        # the default architecture solid, every other one its own dash pattern
        variants = sorted({arch_variant(r) for r in rs}, key=lambda v: (v != "pre-LN, MHA", v))
        styles = dict(zip(variants, ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)),
                                     (0, (8, 2)), (0, (3, 1, 1, 1, 1, 1))] * 2))
        markers = dict(zip(variants, "osv^Dxp*" * 2))
        fig, axes = plt.subplots(1, len(ms), figsize=(max(7.0, 5.2 * len(ms)), 4.8), squeeze=False)
        for ax, m in zip(axes[0], ms):
            ys = []
            for r in [r for r in rs if r.method == m]:
                c = r.curve()
                ax.plot([x for x, _ in c], [y for _, y in c], marker=markers[arch_variant(r)], ms=4,
                        lw=1.6, ls=styles[arch_variant(r)], color=color(m), label=arch_variant(r))
                ys += [y for _, y in c]
            mark_train_length(ax, L)
            ppl_axes(ax, ys, "%s, trained at L = %d" % (label(m), L))
        fig.suptitle("Architecture and extrapolation: %s validation perplexity (nonoverlapping)"
                     % data)
        save(fig, "fig_architecture_L%d.png" % L)

    # Figure 2: speed and memory per method and training length
    methods = sorted({r.method for r in runs}, key=method_rank)
    Ls = sorted(groups)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    speeds, bench_hosts = bench_speeds()
    panels = [("training speed (training logs)", "tokens/s", lambda r: r.train_speed),
              ("evaluation speed at L_valid = L", "tokens/s", lambda r: r.nonoverlap.get(r.L, {}).get("tokens_per_s")),
              ("training peak memory", "MB (resident)", lambda r: r.train_peak)]
    width = 0.8 / max(1, len(methods))
    for ax, (title, unit, f) in zip(axes, panels):
        if speeds and title.startswith("training speed"):
            # one benchmark on one host, never the logs of several: mean, whiskers min-max
            ms = sorted(speeds, key=method_rank)
            for k, m in enumerate(ms):
                v = speeds[m]
                mean = sum(v) / len(v)
                ax.bar(k, mean, 0.7, color=color(m),
                       yerr=[[mean - min(v)], [max(v) - mean]], capsize=4)
            ax.set_xticks(range(len(ms)))
            ax.set_xticklabels([label(m) for m in ms], fontsize=8)
            ax.set_ylabel(unit)
            ax.set_title("training speed, reference model (%s)" % os.path.basename(BENCH_FILE),
                         fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            continue
        for i, L in enumerate(Ls):
            # each group is centred on its tick: a length may hold fewer methods (ALiBi alone at L/2)
            values = [(m, f(r)) for m in methods for r in [pick(runs, m, L)] if r]
            bars = [(m, v) for m, v in values if v]
            for k, (m, v) in enumerate(bars):
                ax.bar(i + (k - (len(bars) - 1) / 2.0) * width, v, width * 0.95, color=color(m))
        ax.set_xticks(range(len(Ls)))
        ax.set_xticklabels(["L = %d" % L for L in Ls])
        ax.set_xlabel("training length")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=color(m)) for m in methods]
    fig.legend(handles, [label(m) for m in methods], loc="lower center", ncol=max(1, len(methods)),
               fontsize=9)
    fig.suptitle("Figure 2: speed and memory by position method (%d cores)" % (os.cpu_count() or 0))
    save(fig, "fig2_speed_memory.png", rect=(0, 0.08, 1, 1))

    # Figure 4: ALiBi at several L across L_valid; sinusoidal at its own L
    chosen = [r for r in runs if r.name in fig4_names] if fig4_names else \
        [r for r in runs if r.method in ("alibi", "sinusoidal")]
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ys = []
    alibi = sorted([r for r in chosen if r.method == "alibi"], key=lambda r: r.L)
    cmap = plt.get_cmap("Reds")
    for i, r in enumerate(alibi):
        c = [(x, y) for x, y in r.curve() if x >= r.L]
        if c:
            ax.plot([x for x, _ in c], [y for _, y in c], marker="o", ms=3.5,
                    color=cmap(0.45 + 0.5 * i / max(1, len(alibi) - 1)), label="ALiBi, L = %d" % r.L)
            ys += [y for _, y in c]
    sin = sorted([(r.L, r.ppl(r.L)) for r in chosen if r.method == "sinusoidal" and r.ppl(r.L)])
    if sin:
        ax.plot([x for x, _ in sin], [y for _, y in sin], "s--", color=color("sinusoidal"), ms=6,
                label="Sinusoidal trained at L, L_valid = L")
        ys += [y for _, y in sin]
    ppl_axes(ax, ys, "Figure 4: ALiBi trained at several L, %s (nonoverlapping)" % data)
    save(fig, "fig4_alibi_lengths.png")

    # Per-position loss at the long L_valid, per training length
    panels = profiles(runs)
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(max(8.0, 5.6 * len(panels)), 4.6), squeeze=False)
        for ax, (L, P, cols) in zip(axes[0], panels):
            for r, prof in cols:
                ax.plot([(a + b) / 2.0 for a, b, _, _ in prof], [l for _, _, l, _ in prof], lw=1.6,
                        marker="o", ms=2.5, color=color(r.method), label=label(r.method))
            mark_train_length(ax, L)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(plain)
            ax.set_xlabel("position in the segment (1 = first token; log scale)")
            ax.set_ylabel("mean loss (nats per token)")
            ax.set_title("trained at L = %d, L_valid = %d" % (L, P))
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=9)
        fig.suptitle("Where each method breaks: mean loss by position in the segment (%s; each "
                     "point averages >= %s tokens)" % (data, fmt_int(MIN_TOKENS)))
        save(fig, "fig_per_position.png")
    return made


# ---- README ----

def machine():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d cores (os.cpu_count), CPU: %s, %s" % (os.cpu_count() or 0, cpu or platform.processor() or "unknown",
                                                    platform.platform())


def git_rev(out):
    """The checkout's revision, "-dirty" if files other than those under out (being written
    now, e.g. when results/X is regenerated in place) differ from it."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        run = lambda *a: subprocess.check_output(["git"] + list(a), stderr=subprocess.DEVNULL,
                                                 cwd=here).decode().strip()
        rev = run("rev-parse", "--short", "HEAD")
        top = run("rev-parse", "--show-toplevel")
        skip = os.path.relpath(os.path.realpath(out), os.path.realpath(top))
        spec = ["."] if skip.startswith("..") else [".", ":(exclude)" + skip]
        changed = run("status", "--porcelain", "--untracked-files=no", "--", *spec)
        return rev + ("-dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def shape(r):
    g = lambda k: get(r.cfg, k)
    out = g("model.output")
    o = ""
    if isinstance(out, dict) and out.get("type") == "adaptive":
        o = ", adaptive %s/%s" % (out.get("cutoffs"), out.get("factor"))
    arch = arch_variant(r)
    arch = "" if arch == "pre-LN, MHA" else ", " + arch
    return "%s×%s, %s heads, d_ff %s%s%s" % (g("model.n_layers"), g("model.d_model"), g("model.n_heads"),
                                           g("model.d_ff"), o, arch)


def write_readme(runs, out, claims, manifest, files, runs_dir):
    name = manifest.get("preset") or os.path.basename(os.path.normpath(out))
    text = "# Results: %s\n\n" % name
    if manifest.get("description"):
        text += manifest["description"] + "\n\n"
    if manifest.get("notes"):
        text += manifest["notes"] + "\n\n"
    text += "Generated by `scripts/results.py` from the JSONL files `./train` and `./eval` wrote " \
            "(copied in [runs/](runs/)). Regenerate with `scripts/pyenv.sh scripts/results.py " \
            "--runs %s --out %s`; a section headed `%s` at the end of this file is kept.\n\n" \
            % (os.path.join(out, "runs"), out, NOTES)
    if os.path.isfile(os.path.join(out, "fig1_extrapolation.png")):
        text += "![Figure 1](fig1_extrapolation.png)\n\n"
    for L, rs in sorted(by_length(runs).items()):
        fig = "fig_architecture_L%d.png" % L
        if arch_runs(rs) and os.path.isfile(os.path.join(out, fig)):
            text += "![Architecture and extrapolation, L = %d](%s)\n\n" % (L, fig)
    text += "## Claims\n\n" + md_table(["#", "claim", "verdict"], [[c.num, c.title, c.verdict()] for c in claims],
                                       ["---:", "---", "---"])
    text += "\nDetails and rules: [claims.md](claims.md).\n\n## Files\n\n"
    for f in files:
        b = os.path.basename(f)
        text += "- [%s](%s)\n" % (b, b)
    text += "\n## Models\n\n"
    rows = []
    tot_train = tot_eval = 0.0
    for r in sorted(runs, key=lambda r: (r.L,) + method_key(r)):
        g = lambda k: get(r.cfg, k)
        tps = (g("train.batch") or 0) * (g("train.accum") or 1) * r.L
        val = r.final_val
        rows.append([r.name, label(r.method), r.L, shape(r), "%s × %s" % (fmt_int(g("train.steps")), fmt_int(tps)),
                     fmt_int(r.train_tokens), fmt_duration(r.train_seconds), fmt_int(r.train_speed),
                     fmt_duration(r.eval_seconds), "%s (first %s tokens)" % (fmt_ppl(val["val_ppl"]), fmt_int(val["val_tokens"])) if val else "–"])
        tot_train += r.train_seconds or 0.0
        tot_eval += r.eval_seconds
    text += md_table(["model", "method", "L", "layers×d_model", "steps × tokens/step", "tokens trained",
                      "training time", "train tokens/s", "evaluation time",
                      "validation ppl at the end of training (train.eval_tokens)"], rows,
                     ["---", "---", "---:", "---", "---:", "---:", "---:", "---:", "---:", "---:"])
    text += ("\nWall-clock: %s training (log.jsonl `elapsed_s` of the last row; validation during "
             "training not included) and %s evaluation (sum of `seconds` of the eval rows), %s in "
             "all.\n" % (fmt_duration(tot_train), fmt_duration(tot_eval), fmt_duration(tot_train + tot_eval)))
    text += "\n## Commands\n\n"
    cmds = manifest.get("commands")
    if cmds:
        base = manifest.get("base_config")
        text += "Run by `scripts/reproduce.sh --preset %s` (preset file `%s`; base config `%s`). Per model:\n\n```sh\n" \
                % (name, manifest.get("preset_file", "?"), base)
        order = [m["name"] for m in manifest.get("models", []) if m.get("name") in cmds]
        for m in order + sorted(set(cmds) - set(order)):
            text += "\n".join(cmds[m]) + "\n"
        text += ("```\n\nThe base config is copied as [runs/base-config.json](runs/base-config.json) when "
                 "the preset defines it inline; the resolved config of each run (every default "
                 "filled in) is `runs/<model>/config.json`.\n")
    else:
        text += "No manifest.json in %s: the commands were not recorded.\n" % runs_dir
    revs = sorted({v for r in runs for v in r.revs})
    text += "\n## Revision and machine\n\n"
    train_revs = sorted({v for r in runs for v in r.train_revs})
    setups = sorted({v for r in runs for v in r.train_setups})
    text += "- git revision of the ./train build (from the log's start rows): %s\n" \
        % (", ".join(train_revs) or "not recorded (logs before the start rows)")
    text += "- training threads, BLAS kernel and machine (start rows): %s\n" % ("; ".join(setups) or "not recorded")
    text += "- git revision of the ./eval build (from the eval rows): %s\n" % (", ".join(revs) or "unknown")
    text += "- git revision when these results were written: %s\n" % git_rev(out)
    text += "- machine that wrote these results: %s\n" % machine()
    path = os.path.join(out, "README.md")
    write(path, text + kept_notes(path))


NOTES = "## Notes"


def kept_notes(path):
    """The hand-written part of an existing README.md: everything from its first line that starts
    with NOTES on. Regenerating the results must not lose what a person wrote about the run."""
    try:
        with open(path) as f:
            lines = f.read().splitlines(keepends=True)
    except OSError:
        return ""
    for i, line in enumerate(lines):
        if line.startswith(NOTES):
            return "\n" + "".join(lines[i:])
    return ""


def copy_raw(runs, runs_dir, out):
    dest_root = os.path.join(out, "runs")
    if os.path.realpath(runs_dir) == os.path.realpath(dest_root):
        return
    for r in runs:
        d = os.path.join(dest_root, r.name)
        os.makedirs(d, exist_ok=True)
        for f in ("config.json", "log.jsonl", "eval.jsonl", "per_position.jsonl"):
            src = os.path.join(r.path, f)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(d, f))
        # every segment's loss: for the intervals, and so that a model copied back is done
        src = os.path.join(r.path, "segments.jsonl")
        if os.path.isfile(src):
            # mtime=0: the same runs give the same bytes, so a regenerated copy is no git change
            with open(src, "rb") as f, open(os.path.join(d, "segments.jsonl.gz.tmp"), "wb") as raw, \
                    gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as g:
                shutil.copyfileobj(f, g)
            os.replace(os.path.join(d, "segments.jsonl.gz.tmp"), os.path.join(d, "segments.jsonl.gz"))
    for f in ("manifest.json", "base-config.json"):  # the commands, and the config they name
        src = os.path.join(runs_dir, f)
        if os.path.isfile(src):
            os.makedirs(dest_root, exist_ok=True)
            shutil.copyfile(src, os.path.join(dest_root, f))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/results.py",
                                 description="Tables, figures and claims from trainshort run directories.")
    ap.add_argument("--runs", required=True, help="directory of run directories (runs/<preset>)")
    ap.add_argument("--out", required=True, help="results directory (results/<preset>)")
    ap.add_argument("--preset", help="the preset file (for the Figure 4 model list)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--bench", help="scripts/bench_train.sh --rounds output for claim 6 "
                                    "(default: <out>/bench_train.jsonl when it exists)")
    args = ap.parse_args(argv)
    global BENCH, BENCH_FILE
    BENCH_FILE = args.bench or os.path.join(args.out, "bench_train.jsonl")
    if args.bench and not os.path.isfile(args.bench):
        die("--bench: no such file '%s'" % args.bench)
    BENCH = read_jsonl(BENCH_FILE) if os.path.isfile(BENCH_FILE) else []
    if not BENCH:
        BENCH_FILE = None
    load_styles()  # before anything is written: without ./train, no half-made results
    manifest_path = os.path.join(args.runs, "manifest.json")
    manifest = {}
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    global DATASET
    DATASET = manifest.get("dataset")
    fig4 = manifest.get("figure4") or []
    if args.preset:
        with open(args.preset) as f:
            fig4 = json.load(f).get("figure4") or fig4
    seed_runs = load_runs(args.runs, args.split)
    if not seed_runs:
        print("error: no run directories (with config.json) under %s" % args.runs, file=sys.stderr)
        return 2
    runs = group_models(seed_runs)
    splits = [(args.split, runs)]
    other = "test" if args.split == "valid" else "valid"
    other_runs = group_models(load_runs(args.runs, other))
    if any(m.nonoverlap for m in other_runs):
        splits.append((other, other_runs))
    os.makedirs(args.out, exist_ok=True)
    files = write_tables(runs, args.out, splits)
    write_speed(runs, args.out)
    write_sliding(runs, args.out)
    write_per_position(runs, args.out)
    arch = write_architecture(runs, args.out)
    budget = write_budget(runs, args.out)
    claims = judge_by_seed(all_claims(runs), seed_runs)
    write_claims(claims, runs, args.out)
    made = [] if args.no_figures else figures(runs, args.out, fig4, args.split)
    files = made + files + [os.path.join(args.out, f) for f in
                            ("speed_memory.md", "sliding.md", "per_position.md", "claims.md",
                             "claims.json")] + \
        ([os.path.join(args.out, "architecture.md")] if arch else []) + \
        ([os.path.join(args.out, "budget.md")] if budget else [])
    copy_raw(seed_runs, args.runs, args.out)
    write_readme(seed_runs, args.out, claims, manifest, files, args.runs)
    print("results: wrote %s (%d runs; claims: %s)" % (args.out, len(seed_runs), ", ".join(
        "%d %s" % (c.num, c.verdict()) for c in claims)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
