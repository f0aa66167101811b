#!/usr/bin/env python3
"""reproduce.py — run a preset of the ALiBi paper's experiments: train every model, evaluate each
across L_valid, then write the tables, figures and claims (scripts/results.py).

Called by scripts/reproduce.sh, which picks the interpreter. A preset is a JSON file in
configs/presets/ (docs/reproduce.md describes every key). For each model it lists the position
method and the training length L; per training length it gives the evaluation lengths (./eval
--lvalid syntax), the long L_valid of the per-position profile and the sliding-window stride.

Jobs run one at a time (two trainings on two cores slow each other 3-5x) in this order per model:
train (or resume), the per-position evaluation at the long L_valid, the nonoverlapping sweep, the
sliding window at L_valid = L. Nothing finished is redone:
  - a run is finished when the "step" in its model.safetensors metadata equals train.steps in its
    config.json; a checkpoint at an earlier step is resumed with ./train --resume; a directory
    without model.safetensors (killed before its first checkpoint) starts over, its log and
    evaluation rows renamed to *.old;
  - a model whose log.jsonl reaches train.steps and whose evaluation rows are all written is done
    without its checkpoint: the checkpoint is only needed to evaluate, so it may be deleted to
    save disk, and the copies in results/<preset>/runs/ continue a preset on another machine;
  - an evaluation row is done when <run>/eval.jsonl has a row with the same split, mode, stride
    and L_valid (./eval --skip-done compares the same fields, plus the checkpoint path);
    per-position profiles are looked up in <run>/per_position.jsonl.
The scripts keep no copy of the binaries' logic: each model's resolved config, parameter count
and FLOPs per token come from `./train --describe`, its evaluation lengths from
`./eval --print-lengths`, the registered methods from `./train --list-positions`. Time estimates
count those FLOPs at an assumed throughput (TRAIN_GFLOPS, eval_gflops below), rescaled by the
measured speed of the jobs already run in this invocation.

User mistakes (a bad preset, missing data or binaries) are one "error: " line, exit status 2.
"""
import argparse
import json
import math
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import results  # scripts/results.py (beside this file): the last step, and its file readers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET_DIR = "configs/presets"
SHARED_DATA = "../shared/data"  # the offline copy of the corpora, relative to the repository

# Assumed throughput on 2 cores with AVX-512 SGEMM, counting FLOPs as ./train --describe does
# (training 3x the forward; the adaptive softmax's head only, since the tails run only for the
# tokens whose target is in them). Calibrated on measured presets: wt2-paper trained at 200 GFLOP/s
# by this count (6 h 29 min) and evaluated at 0.85x the scripts/bench_eval.sh rates below (205
# GFLOP/s at L_valid 512 falling to 150 at 16,000; 2 h 45 min); quick and arch trained at 145-190.
TRAIN_GFLOPS = 200.0
JOB_OVERHEAD_S = 2.0  # process start, loading data and checkpoint


def eval_gflops(T):
    """Evaluation throughput at segment length T: log-linear between the measured points."""
    x = (math.log2(max(T, 512)) - 9.0) / (math.log2(16000) - 9.0)
    return 205.0 - (205.0 - 150.0) * min(x, 1.0)


class UserError(Exception):
    pass


def die(msg):
    print("error: " + msg, file=sys.stderr, flush=True)
    sys.exit(2)


def fmt_duration(s):
    s = int(round(s))
    if s < 60:
        return "%ds" % s
    if s < 3600:
        return "%dm%02ds" % (s // 60, s % 60)
    return "%dh%02dm" % (s // 3600, (s % 3600) // 60)


def hours(s):
    return "%.1f h" % (s / 3600.0)


# ---- the binaries' answers ----

def ask(cmd, what):
    """The stdout of one of the binaries' query modes, parsed as JSON; its own error line (a bad
    key in the preset, say) becomes ours."""
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
    except OSError as e:
        raise UserError("%s not found: build it with make (%s)" % (cmd[0], e.strerror))
    if r.returncode != 0:
        err = r.stderr.strip().splitlines()
        msg = err[-1][len("error: "):] if err and err[-1].startswith("error: ") else \
            "failed with status %d" % r.returncode
        raise UserError("%s: %s" % (what, msg))
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise UserError("%s: %s printed no JSON; rebuild it with make" % (what, cmd[0]))


def describe(bin_dir, config_path, sets, V, lengths, what):
    """./train --describe of the base config with these --set pairs, for V words, with the FLOPs
    per token at each of lengths."""
    cmd = [os.path.join(bin_dir, "train"), "--describe", "--config", config_path,
           "--vocab-size", str(V)]
    if lengths:
        cmd += ["--flops-at", ",".join(str(v) for v in lengths)]
    for k, v in sets:
        cmd += ["--set", set_arg(k, v)]
    return ask(cmd, what)


LENGTHS = {}  # (spec, L) -> ./eval's answer: every model of a length shares it


def print_lengths(bin_dir, spec, L, what):
    """The lengths ./eval --lvalid spec evaluates for training length L."""
    key = (str(spec), L)
    if key not in LENGTHS:
        LENGTHS[key] = ask([os.path.join(bin_dir, "eval"), "--print-lengths", str(spec),
                            "--train-len", str(L)], what)
    return LENGTHS[key]


# ---- presets ----

PRESET_KEYS = {"description", "notes", "config", "set", "data", "lengths", "models", "eval", "seeds",
               "figure4"}
DATA_KEYS = {"name", "dir", "need", "shared", "get", "synthetic", "valid_tokens", "vocab_size"}
SYNTH_KEYS = {"vocab", "tokens", "valid_tokens", "seed"}
LENGTH_KEYS = {"set", "lvalid", "per_position", "sliding_stride", "sliding_long"}
MODEL_KEYS = {"name", "method", "L", "set"}
EVAL_KEYS = {"split", "splits", "per_position_buckets", "per_position_scale"}


def preset_names():
    d = os.path.join(ROOT, PRESET_DIR)
    return sorted(f[:-5] for f in os.listdir(d) if f.endswith(".json")) if os.path.isdir(d) else []


def preset_path(arg):
    if arg.endswith(".json") or "/" in arg:
        if not os.path.isfile(arg):
            raise UserError("--preset: no such file '%s'" % arg)
        return arg
    path = os.path.join(PRESET_DIR, arg + ".json")
    if not os.path.isfile(path):
        raise UserError("unknown preset '%s': choose %s (files in %s/), or give a .json path"
                        % (arg, ", ".join(preset_names()) or "(none found)", PRESET_DIR))
    return path


def check_keys(obj, allowed, where, path):
    if not isinstance(obj, dict):
        raise UserError("%s: %s must be a JSON object" % (path, where))
    for k in obj:
        if k not in allowed:
            raise UserError("%s: %s: unknown key '%s' (expected one of %s)"
                            % (path, where, k, ", ".join(sorted(allowed))))


def check_sets(obj, where, path):
    """A "set" object: config keys (dotted) to values, as ./train --set takes them."""
    if not isinstance(obj, dict):
        raise UserError("%s: %s must be a JSON object" % (path, where))
    for k in obj:
        if not re.match(r"^(model|train|data)\.[a-z_0-9.]+$", k):
            raise UserError("%s: %s: '%s' is not a config key like train.steps" % (path, where, k))


class Model:
    """One training run of a preset and the evaluations it feeds."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


class Preset:
    pass


def parse_user_sets(items):
    """--set KEY=VALUE arguments as (key, value) pairs; a value that is not JSON is a string."""
    out = []
    for item in items or []:
        key, eq, text = item.partition("=")
        if not eq or not text:
            raise UserError("--set %s: expected KEY=VALUE, e.g. --set train.precision=bf16" % item)
        check_sets({key: None}, "--set", "reproduce.sh")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out.append((key, value))
    return out


def parse_seeds(v, where):
    """A list of distinct positive seeds (train.seed values), from the preset or --seeds."""
    if isinstance(v, str):
        try:
            v = [int(x) for x in v.split(",")]
        except ValueError:
            raise UserError("%s: expected comma-separated seeds like 1,2,3, got '%s'" % (where, v))
    if (not isinstance(v, list) or not v or len(set(v)) != len(v) or
            not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)):
        raise UserError("%s: seeds must be distinct positive integers, e.g. [1, 2, 3]" % where)
    return v


def load_preset(arg, runs_dir, data_override, bin_dir, user_sets=(), seeds=None):
    path = preset_path(arg)
    try:
        with open(path) as f:
            p = json.load(f)
    except ValueError as e:
        raise UserError("%s: not valid JSON: %s" % (path, e))
    check_keys(p, PRESET_KEYS, "the preset", path)
    for k in ("description", "config", "data", "lengths", "models"):
        if k not in p:
            raise UserError("%s: missing key '%s'" % (path, k))
    pr = Preset()
    pr.path, pr.name = path, os.path.basename(path)[:-5]
    pr.description, pr.notes = p["description"], p.get("notes", "")
    pr.runs = runs_dir or os.path.join("runs", pr.name)

    # the base config: a file, or an object written to <runs>/base-config.json
    if isinstance(p["config"], str):
        if not os.path.isfile(p["config"]):
            raise UserError("%s: config: no such file '%s'" % (path, p["config"]))
        with open(p["config"]) as f:
            pr.base = json.load(f)
        pr.base_path, pr.base_inline = p["config"], False
    elif isinstance(p["config"], dict):
        pr.base, pr.base_path, pr.base_inline = p["config"], os.path.join(pr.runs, "base-config.json"), True
    else:
        raise UserError("%s: config must be a file name or a config object" % path)
    pr.sets = p.get("set", {})
    check_sets(pr.sets, "set", path)

    d = p["data"]
    check_keys(d, DATA_KEYS, "data", path)
    pr.synthetic = d.get("synthetic")
    if pr.synthetic is not None:
        check_keys(pr.synthetic, SYNTH_KEYS, "data.synthetic", path)
        for k in ("vocab", "tokens"):
            if k not in pr.synthetic:
                raise UserError("%s: data.synthetic: missing key '%s'" % (path, k))
        pr.data_dir = os.path.join(pr.runs, "data")
    elif "dir" in d:
        pr.data_dir = d["dir"]
    else:
        raise UserError("%s: data needs 'dir' or 'synthetic'" % path)
    pr.data_overridden = data_override is not None
    if data_override is not None:
        pr.data_dir = data_override
    pr.data_name = d.get("name", os.path.basename(os.path.normpath(pr.data_dir)))
    pr.need = d.get("need", ["wiki.train.tokens", "wiki.valid.tokens"])
    pr.shared = d.get("shared")
    pr.get_hint = d.get("get")
    pr.valid_tokens = d.get("valid_tokens", 217646)
    pr.vocab_size = d.get("vocab_size", 33278)
    if pr.synthetic is not None:
        pr.valid_tokens = pr.synthetic.get("valid_tokens", pr.synthetic["tokens"] // 10)
        try:
            with open(pr.synthetic["vocab"]) as f:
                pr.vocab_size = sum(1 for line in f if line.strip()) + 2  # + <eos>, <unk>
        except OSError:
            raise UserError("%s: data.synthetic.vocab: cannot read '%s'" % (path, pr.synthetic["vocab"]))

    ev = p.get("eval", {})
    check_keys(ev, EVAL_KEYS, "eval", path)
    pr.split = ev.get("split", "valid")
    # every table has the test split beside the main one; per-position profiles and sliding
    # windows are evaluated on the main split only
    pr.splits = ev.get("splits", [pr.split] + (["test"] if pr.split != "test" else []))
    if (not isinstance(pr.splits, list) or not pr.splits or pr.splits[0] != pr.split or
            not all(x in ("valid", "test") for x in pr.splits) or len(set(pr.splits)) != len(pr.splits)):
        raise UserError("%s: eval.splits must list valid and/or test once each, the main split "
                        "(eval.split) first" % path)
    for x in pr.splits:
        f = "wiki.%s.tokens" % x
        if f not in pr.need:
            pr.need = pr.need + [f]
    pr.seeds = parse_seeds(seeds, "--seeds") if seeds is not None else \
        parse_seeds(p.get("seeds", [1]), "%s: seeds" % path)
    if len(pr.seeds) > 1 and any(k == "train.seed" for k, _ in user_sets):
        raise UserError("--set train.seed: the preset trains seeds %s; choose them with --seeds"
                        % ",".join(map(str, pr.seeds)))
    pr.pp_buckets = ev.get("per_position_buckets", 64)
    pr.pp_scale = ev.get("per_position_scale", "log")

    lengths = p["lengths"]
    if not isinstance(lengths, dict) or not lengths:
        raise UserError("%s: lengths must be an object {\"L\": {...}}" % path)
    for key, spec in lengths.items():
        if not key.isdigit() or int(key) <= 0:
            raise UserError("%s: lengths: '%s' is not a training length" % (path, key))
        check_keys(spec, LENGTH_KEYS, "lengths.%s" % key, path)
        check_sets(spec.get("set", {}), "lengths.%s.set" % key, path)
        if "lvalid" not in spec:
            raise UserError("%s: lengths.%s: missing key 'lvalid'" % (path, key))

    if not isinstance(p["models"], list) or not p["models"]:
        raise UserError("%s: models must be a non-empty list" % path)
    # ./train --describe reads the base config from a file: an inline one is written to a
    # temporary file here (the run root's copy is written only when the preset runs)
    with tempfile.TemporaryDirectory() as tmp:
        config_path = pr.base_path
        if pr.base_inline:
            config_path = os.path.join(tmp, "base-config.json")
            with open(config_path, "w") as f:
                json.dump(pr.base, f)
        pr.models = load_models(pr, p, path, lengths, user_sets, bin_dir, config_path)
    pr.user_keys = [k for k, _ in user_sets]
    pr.figure4 = p.get("figure4")
    if pr.figure4 is not None:
        for n in pr.figure4:
            if n not in {m.base for m in pr.models}:
                raise UserError("%s: figure4: no model named '%s'" % (path, n))
    return pr


def load_models(pr, p, path, lengths, user_sets, bin_dir, config_path):
    """The preset's models, each with its ./train --set list and what the binaries say of it:
    the resolved config (cfg), parameters, FLOPs per token at L and at every L_valid."""
    base = describe(bin_dir, config_path, [("data.dir", pr.data_dir)], pr.vocab_size, [],
                    "%s: config" % path)
    methods = [o["name"] for o in base["methods"]]
    models, names = [], set()
    for i, m in enumerate(p["models"]):
        where = "models[%d]" % i
        check_keys(m, MODEL_KEYS, where, path)
        if m.get("method") not in methods:
            raise UserError("%s: %s: method must be one of %s, not %s"
                            % (path, where, ", ".join(methods), json.dumps(m.get("method"))))
        L = m.get("L")
        if not isinstance(L, int) or str(L) not in lengths:
            raise UserError("%s: %s: L %s has no entry in lengths" % (path, where, json.dumps(L)))
        ls = lengths[str(L)]
        check_sets(m.get("set", {}), where + ".set", path)
        name = m.get("name", "%s-L%d" % (m["method"], L))
        if name in names:
            raise UserError("%s: %s: two models are named '%s' (give one a \"name\")" % (path, where, name))
        names.add(name)
        lvalid = print_lengths(bin_dir, ls["lvalid"], L, "%s: lengths.%d.lvalid" % (path, L))
        # the tables, the claims and sliding.md compare with L_valid = L
        lvalid = sorted(set(lvalid) | {L})
        # --set order: the method first (setting it resets the other position keys), then the
        # preset's, the length's and the model's own keys, then where the data is
        sets = [("model.position.type", m["method"]), ("train.seq_len", L)]
        sets += list(pr.sets.items()) + list(ls.get("set", {}).items()) + list(m.get("set", {}).items())
        sets += list(user_sets)  # reproduce.sh --set: every model, after the preset's own keys
        sets.append(("data.dir", pr.data_dir))
        pp = ls.get("per_position")
        stride = ls.get("sliding_stride")
        for what, v in (("per_position", pp), ("sliding_stride", stride)):
            if v is not None and (not isinstance(v, int) or v <= 0):
                raise UserError("%s: lengths.%d.%s must be a positive integer" % (path, L, what))
        if stride is not None and stride > L:
            raise UserError("%s: lengths.%d.sliding_stride %d is above L" % (path, L, stride))
        # sliding windows past L with a small stride (claim 8, the paper's Appendix B)
        long_ = ls.get("sliding_long")
        if long_ is not None:
            check_keys(long_, {"stride", "lvalid", "methods"}, "lengths.%d.sliding_long" % L, path)
            S, lvs = long_.get("stride"), long_.get("lvalid")
            if (not isinstance(S, int) or S <= 0 or not isinstance(lvs, list) or not lvs or
                    not all(isinstance(v, int) and v >= S for v in lvs)):
                raise UserError("%s: lengths.%d.sliding_long needs a positive integer stride and "
                                "a list of L_valid, each at least the stride" % (path, L))
            only = long_.get("methods", methods)
            if not isinstance(only, list) or not all(x in methods for x in only):
                raise UserError("%s: lengths.%d.sliding_long.methods must list registered "
                                "methods" % (path, L))
            long_ = (S, lvs) if m["method"] in only else None
        d = describe(bin_dir, config_path, sets, pr.vocab_size,
                     lvalid + ([pp] if pp else []) + (long_[1] if long_ else []),
                     "%s: %s (%s)" % (path, where, name))
        flops = {int(T): f for T, f in d["flops_per_token"].items()}
        for seed in pr.seeds:
            # one seed keeps the model's name (and the runs of before); several get -s<seed>
            one = pr.seeds == [1]
            run = name if one else "%s-s%d" % (name, seed)
            cfg = json.loads(json.dumps(d["config"]))
            cfg["train"]["seed"] = seed if not one else cfg["train"]["seed"]
            seed_sets = sets[:-1] + ([] if one else [("train.seed", seed)]) + sets[-1:]
            models.append(Model(name=run, base=name, seed=seed, method=m["method"], L=L,
                                sets=seed_sets, cfg=cfg, params=d["params"], flops=flops,
                                lvalid_spec=str(ls["lvalid"]), lvalid=lvalid, per_position=pp,
                                stride=stride, sliding_long=long_, dir=os.path.join(pr.runs, run)))
    # every model's first seed before any second one: a preset cut short has whole seeds
    return sorted(models, key=lambda x: pr.seeds.index(x.seed))


# ---- the state of a run directory ----

def safetensors_metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)).get("__metadata__", {})


def run_config(m, what, user_keys=()):
    """The run's config.json, refused if it was made by another version of the preset or with
    other --set values."""
    try:
        with open(os.path.join(m.dir, "config.json")) as f:
            run_cfg = json.load(f)
    except (OSError, ValueError):
        raise UserError("%s: cannot read %s or config.json; delete the directory to retrain"
                        % (m.dir, what))
    for key in ("model.position.type", "train.seq_len", "train.steps", "train.seed") + tuple(user_keys):
        have, asked = results.get(run_cfg, key), results.get(m.cfg, key)
        if asked is not None and have != asked:
            raise UserError("%s was trained with %s=%s but the preset asks for %s: delete it to "
                            "retrain" % (m.dir, key, json.dumps(have), json.dumps(asked)))
    return run_cfg


def logged_step(m):
    """The last training step in the run's log.jsonl (0 without one)."""
    rows = results.read_jsonl(os.path.join(m.dir, "log.jsonl"))
    return max((r.get("step", 0) for r in rows if "loss" in r), default=0)


def train_state(pr, m):
    """("done" | "resume" | "new" | "logged", steps done, steps in total) for a model's run
    directory; "logged": no checkpoint, but its log.jsonl reaches the last step."""
    want = results.get(m.cfg, "train.steps")
    ckpt = os.path.join(m.dir, "model.safetensors")
    if not os.path.isfile(ckpt):
        if not os.path.isfile(os.path.join(m.dir, "config.json")):
            return "new", 0, want
        try:
            total = results.get(run_config(m, "log.jsonl", pr.user_keys), "train.steps")
        except UserError:
            return "new", 0, want  # not this preset's model: started over, its files set aside
        return ("logged" if logged_step(m) >= total else "new"), 0, want
    try:
        step = int(safetensors_metadata(ckpt)["step"])
    except (OSError, ValueError, KeyError, struct.error):
        raise UserError("%s: cannot read its checkpoint model.safetensors; delete the directory "
                        "to retrain" % m.dir)
    total = results.get(run_config(m, "model.safetensors", pr.user_keys), "train.steps")
    return ("done" if step >= total else "resume"), step, total


def eval_rows_done(m):
    """(split, mode, stride, L_valid) of every evaluation whose row is in eval.jsonl and whose
    segments are in segments.jsonl (an evaluation without them is done again: --skip-done then
    computes only the segments)."""
    key = lambda r: (r.get("split"), r.get("mode"), r.get("stride"), r.get("lvalid"))
    rows = {key(r) for r in results.read_jsonl(os.path.join(m.dir, "eval.jsonl"))}
    segs = {key(r) for r in results.read_jsonl(os.path.join(m.dir, "segments.jsonl"))}
    return rows & segs


def per_position_done(m, split):
    return {r.get("lvalid") for r in results.read_jsonl(os.path.join(m.dir, "per_position.jsonl"))
            if r.get("split") == split and r.get("mode") == "nonoverlapping"}


# ---- jobs ----

class Job:
    def __init__(self, kind, model, title, cmd, estimate, check=None, run=None):
        self.kind, self.model, self.title, self.cmd = kind, model, title, cmd
        self.estimate, self.check, self.run = estimate, check, run


def set_arg(k, v):
    return "%s=%s" % (k, v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))


def train_cmd(pr, m, bin_dir):
    cmd = [os.path.join(bin_dir, "train"), "--config", pr.base_path, "--out", m.dir]
    for k, v in m.sets:
        cmd += ["--set", set_arg(k, v)]
    return cmd


def eval_cmd(pr, m, bin_dir, lengths, sliding=None, per_position=False, split=None):
    cmd = [os.path.join(bin_dir, "eval"), "--ckpt", m.dir, "--split", split or pr.split,
           "--lvalid", ",".join(str(v) for v in lengths),
           "--json", os.path.join(m.dir, "eval.jsonl"),
           "--segments", os.path.join(m.dir, "segments.jsonl")]
    if sliding:
        cmd += ["--mode", "sliding", "--stride", str(sliding)]
    if per_position:
        # no --skip-done: the profile is what is missing even if the row is already there
        cmd += ["--per-position", os.path.join(m.dir, "per_position.jsonl"),
                "--per-position-buckets", str(pr.pp_buckets), "--per-position-scale", pr.pp_scale]
    else:
        cmd += ["--skip-done"]
    return cmd


def show(cmd):
    return " ".join(shlex.quote(c) for c in cmd)


def estimate_train(pr, m, steps_left):
    g = lambda k: results.get(m.cfg, k)
    tokens = steps_left * g("train.batch") * g("train.accum") * m.L
    t = 3.0 * m.flops[m.L] * tokens / (TRAIN_GFLOPS * 1e9)
    # periodic validation on train.eval_tokens tokens at L, and the final one
    every, n_val = g("train.eval_every"), g("train.eval_tokens")
    n_val = pr.valid_tokens if n_val == 0 else min(n_val, pr.valid_tokens)
    checks = (steps_left // every if every else 0) + 1
    t += checks * n_val * m.flops[m.L] / (eval_gflops(m.L) * 1e9)
    return t + JOB_OVERHEAD_S


def estimate_eval(pr, m, lengths, stride=None):
    t = JOB_OVERHEAD_S
    for T in lengths:
        read = pr.valid_tokens * (T / float(stride) if stride else 1.0)
        t += read * m.flops[T] / (eval_gflops(T) * 1e9)
    return t


def lengths_text(ls):
    if len(ls) <= 6:
        return "L_valid " + ",".join(str(v) for v in ls)
    return "L_valid %d..%d (%d lengths)" % (ls[0], ls[-1], len(ls))


def data_jobs(pr):
    """Jobs that put the corpus in place, and notes on what is missing (a real run stops there)."""
    jobs, problems = [], []
    if pr.synthetic is not None and not pr.data_overridden:
        files = ["wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens", "vocab.txt"]
        if all(os.path.isfile(os.path.join(pr.data_dir, f)) for f in files):
            return jobs, problems
        s = pr.synthetic
        script = "scripts/make_synthetic_corpus"
        if not os.path.isfile(script):
            problems.append("%s not found (it writes the %s preset's synthetic corpus)" % (script, pr.name))
        cmd = [script, "--vocab", s["vocab"], "--tokens", str(s["tokens"]), "--out", pr.data_dir,
               "--seed", str(s.get("seed", 1)), "--force"]  # --force: a run cut short left train only
        jobs.append(Job("data", None, "data: synthetic corpus of %d tokens in %s" % (s["tokens"], pr.data_dir),
                        cmd, 10.0, run=lambda: make_synthetic(pr, cmd)))
        return jobs, problems
    missing = [f for f in pr.need if not os.path.isfile(os.path.join(pr.data_dir, f))]
    if not missing:
        return jobs, problems
    shared = os.path.join(SHARED_DATA, pr.shared) if pr.shared and not pr.data_overridden else None
    if shared and all(os.path.isfile(os.path.join(shared, f)) for f in missing):
        cmd = ["scripts/get_data.sh", pr.shared, "--from", SHARED_DATA]
        jobs.append(Job("data", None, "data: copy %s from %s" % (", ".join(missing), shared), cmd, 5.0))
        return jobs, problems
    where = os.path.join(pr.data_dir, missing[0])
    hint = ("; get it with %s" % pr.get_hint) if pr.get_hint else ""
    problems.append("preset %s needs %s, which is missing%s" % (pr.name, where, hint))
    return jobs, problems


def make_synthetic(pr, cmd):
    """The synthetic corpus; if the generator wrote no valid/test split, a second corpus with
    another seed provides them (its training text, so valid never repeats train)."""
    run_checked(cmd, "scripts/make_synthetic_corpus")
    d = pr.data_dir
    if not (os.path.isfile(os.path.join(d, "wiki.valid.tokens")) and
            os.path.isfile(os.path.join(d, "wiki.test.tokens"))):
        s = pr.synthetic
        tmp = os.path.join(d, ".valid")
        shutil.rmtree(tmp, ignore_errors=True)
        run_checked(["scripts/make_synthetic_corpus", "--vocab", s["vocab"], "--tokens",
                     str(s.get("valid_tokens", s["tokens"] // 10)), "--out", tmp,
                     "--seed", str(s.get("seed", 1) + 1000), "--force"], "scripts/make_synthetic_corpus")
        for split in ("valid", "test"):
            shutil.copyfile(os.path.join(tmp, "wiki.train.tokens"),
                            os.path.join(d, "wiki.%s.tokens" % split))
        shutil.rmtree(tmp, ignore_errors=True)


def eval_jobs(pr, m, bin_dir, rows, profiles):
    """The evaluation jobs of a trained model still to run, and the number already done, given
    the (split, mode, stride, L_valid) evaluations and the per-position L_valid already written."""
    jobs, done = [], 0
    rows = set(rows)
    main = pr.split
    if m.per_position:
        if m.per_position in profiles:
            done += 1
        else:
            jobs.append(Job("eval", m, "eval %s: per-position losses at L_valid %d" % (m.name, m.per_position),
                            eval_cmd(pr, m, bin_dir, [m.per_position], per_position=True),
                            estimate_eval(pr, m, [m.per_position])))
            rows.add((main, "nonoverlapping", m.per_position, m.per_position))
    for split in pr.splits:
        todo = [v for v in m.lvalid if (split, "nonoverlapping", v, v) not in rows]
        if todo:
            on = "" if split == main else " (%s split)" % split
            jobs.append(Job("eval", m, "eval %s: %s%s" % (m.name, lengths_text(todo), on),
                            eval_cmd(pr, m, bin_dir, todo, split=split), estimate_eval(pr, m, todo)))
        else:
            done += 1
    if m.stride:
        if (main, "sliding", m.stride, m.L) in rows:
            done += 1
        else:
            jobs.append(Job("eval", m, "eval %s: sliding window L_valid %d, stride %d" % (m.name, m.L, m.stride),
                            eval_cmd(pr, m, bin_dir, [m.L], sliding=m.stride),
                            estimate_eval(pr, m, [m.L], m.stride)))
    if m.sliding_long:
        S, lvs = m.sliding_long
        todo = [v for v in lvs if (main, "sliding", S, v) not in rows]
        if todo:
            jobs.append(Job("eval", m, "eval %s: sliding windows L_valid %s, stride %d"
                            % (m.name, ",".join(map(str, todo)), S),
                            eval_cmd(pr, m, bin_dir, todo, sliding=S),
                            estimate_eval(pr, m, todo, S)))
        else:
            done += 1
    return jobs, done


def plan(pr, bin_dir):
    """Every job still to run, and the number already done."""
    jobs, done = [], 0
    for m in pr.models:
        state, step, total = train_state(pr, m)
        # rows written beside an unfinished training belong to a model that is not there yet
        rows, profiles = set(), set()
        if state in ("done", "logged"):
            rows, profiles = eval_rows_done(m), per_position_done(m, pr.split)
        evals, n = eval_jobs(pr, m, bin_dir, rows, profiles)
        if state == "logged":
            # trained without a checkpoint: done if nothing is left to evaluate, else retrained
            state = "new" if evals else "done"
            if state == "new":
                evals, n = eval_jobs(pr, m, bin_dir, set(), set())
        if state == "done":
            done += 1
        else:
            if state == "resume":
                cmd = [os.path.join(bin_dir, "train"), "--resume", m.dir]
                title = "train %s (%s, L=%d): resume at step %d of %d" % (m.name, m.method, m.L, step, total)
            else:
                cmd = train_cmd(pr, m, bin_dir)
                title = "train %s (%s, L=%d): %d steps" % (m.name, m.method, m.L, total)
            jobs.append(Job("train", m, title, cmd, estimate_train(pr, m, total - step),
                            check=lambda m=m: check_trained(pr, m),
                            run=(lambda m=m, cmd=cmd: train_fresh(m, cmd)) if state == "new" else None))
        jobs += evals
        done += n
    return jobs, done


def canonical_commands(pr, bin_dir):
    """The commands that produce every run of the preset from scratch (for results/README.md)."""
    out = {}
    for m in pr.models:
        cmds = [train_cmd(pr, m, bin_dir)]
        if m.per_position:
            cmds.append(eval_cmd(pr, m, bin_dir, [m.per_position], per_position=True))
        for split in pr.splits:
            cmds.append(eval_cmd(pr, m, bin_dir, m.lvalid, split=split))
        if m.stride:
            cmds.append(eval_cmd(pr, m, bin_dir, [m.L], sliding=m.stride))
        if m.sliding_long:
            cmds.append(eval_cmd(pr, m, bin_dir, m.sliding_long[1], sliding=m.sliding_long[0]))
        out[m.name] = [show(c) for c in cmds]
    return out


def train_fresh(m, cmd):
    """A new run. A log or evaluation rows left in its directory belong to a model that is gone
    (killed before its first checkpoint, or its checkpoint deleted before every evaluation was
    written): set them aside, as ./train refuses to start beside them."""
    for f in ("log.jsonl", "eval.jsonl", "per_position.jsonl", "segments.jsonl"):
        path = os.path.join(m.dir, f)
        if os.path.isfile(path):
            os.replace(path, path + ".old")
            print("reproduce: %s has no checkpoint to resume or evaluate: its %s is now %s.old"
                  % (m.dir, f, f), flush=True)
    run_checked(cmd, cmd[0])


def check_trained(pr, m):
    state, step, total = train_state(pr, m)
    if state != "done":
        print("reproduce: %s stopped at step %d of %d; run the same command again to resume it"
              % (m.name, step, total), flush=True)
        sys.exit(130)


# ---- running ----

def run_checked(cmd, what):
    """Runs cmd with the terminal as its output. Ctrl-C reaches the child too (same process
    group): ./train then writes a checkpoint and exits, and we wait for it before stopping."""
    try:
        child = subprocess.Popen(cmd)
    except OSError as e:
        raise UserError("cannot run %s: %s" % (cmd[0], e.strerror))
    while True:
        try:
            rc = child.wait()
            break
        except KeyboardInterrupt:
            continue  # let the child finish its checkpoint
    if rc in (-signal.SIGINT, -signal.SIGTERM, 130):
        print("reproduce: %s was interrupted; run the same command again to continue" % what, flush=True)
        sys.exit(130)
    if rc != 0:
        print("error: %s failed (exit status %d): %s" % (what, rc, show(cmd)), file=sys.stderr, flush=True)
        sys.exit(1)


def write_atomic(path, text):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def print_plan(pr, jobs, done, args, problems):
    total = sum(j.estimate for j in jobs)
    print("reproduce: preset %s (%s): %s" % (pr.name, pr.path, pr.description))
    print("  runs in %s, results in %s, data in %s" % (pr.runs, args.out, pr.data_dir))
    for p in problems:
        print("  missing: %s (a real run stops here)" % p)
    width = len(str(len(jobs)))
    for i, j in enumerate(jobs):
        print("  %*d. %-72s %8s" % (width, i + 1, j.title, fmt_duration(j.estimate)))
        print("  %*s    %s" % (width, "", show(j.cmd)))
    by_kind = lambda k: sum(j.estimate for j in jobs if j.kind == k)
    print("%d jobs to run (%d already done), estimated %s (%s): training %s, evaluation %s"
          % (len(jobs), done, fmt_duration(total), hours(total), fmt_duration(by_kind("train")),
             fmt_duration(by_kind("eval"))))
    print("  estimate: FLOPs per token from ./train --describe (src/model.c model_flops_per_token; "
          "training 3x forward) at %.0f GFLOP/s for training and %.0f-%.0f GFLOP/s for evaluation "
          "(L_valid 512 to 16,000), 2 cores with AVX-512; vocabulary %d, %d %s tokens; +%.0f s per "
          "job" % (TRAIN_GFLOPS, eval_gflops(512), eval_gflops(16000), pr.vocab_size,
                   pr.valid_tokens, pr.split, JOB_OVERHEAD_S))
    for m in pr.models:
        print("  model %s: %d parameters, %.0f FLOP/token training at L = %d, L_valid %s = %s"
              % (m.name, m.params, 3 * m.flops[m.L], m.L, m.lvalid_spec,
                 ",".join(str(v) for v in m.lvalid)))


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="scripts/reproduce.sh",
        description="Train and evaluate every model of a preset, then write results/<preset>/ "
                    "(docs/reproduce.md).")
    ap.add_argument("--preset", required=True, help="smoke, quick, wt2-paper, cpu-paper, or a preset .json file")
    ap.add_argument("--dry-run", action="store_true", help="list the jobs still to run with a time estimate; run, build and write nothing")
    ap.add_argument("--out", help="results directory (default results/<preset>)")
    ap.add_argument("--runs", help="run directories (default runs/<preset>)")
    ap.add_argument("--data-dir", help="read the corpus from this directory instead of the preset's")
    ap.add_argument("--no-build", action="store_true", help="do not run make first")
    ap.add_argument("--no-figures", action="store_true", help="write the markdown only")
    ap.add_argument("--seeds", metavar="LIST",
                    help="train every model once per seed (train.seed), e.g. 1,2,3; default: the "
                         "preset's \"seeds\" (1 if it has none); runs of several seeds are named "
                         "<model>-s<seed>")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="a config key for every model, after the preset's (e.g. "
                         "train.precision=bf16); needs --runs and --out, so runs/<preset> and "
                         "results/<preset> stay as they are")
    ap.error = lambda msg: die("reproduce.sh: %s (see --help)" % msg)
    args = ap.parse_args(argv)
    # reproduce.sh runs us from the repository root; paths typed by the user are relative to
    # where they typed them
    cwd = os.environ.get("TRAINSHORT_CWD", os.getcwd())
    if os.path.realpath(cwd) != os.path.realpath(ROOT):
        for k in ("out", "runs", "data_dir"):
            if getattr(args, k):
                setattr(args, k, os.path.join(cwd, getattr(args, k)))
        if args.preset.endswith(".json") or "/" in args.preset:
            args.preset = os.path.join(cwd, args.preset)
    os.chdir(ROOT)
    bin_dir = os.environ.get("TRAINSHORT_BIN") or "."
    try:
        user_sets = parse_user_sets(args.set)
        if user_sets and not (args.runs and args.out):
            raise UserError("--set changes every model: give --runs and --out too, so "
                            "runs/<preset> and results/<preset> stay as they are")
        # the binaries describe every model, so they are built (or found) first; a dry run
        # builds nothing
        if not args.no_build and not args.dry_run:
            if subprocess.call(["make", "-s", "all"]) != 0:
                raise UserError("make failed (see above); fix the build, or use --no-build")
        for b in ("train", "eval"):
            p = os.path.join(bin_dir, b)
            if not os.access(p, os.X_OK):
                raise UserError("%s not found: build it with make" % p)
        pr = load_preset(args.preset, args.runs, args.data_dir, bin_dir, user_sets, args.seeds)
        args.out = args.out or os.path.join("results", pr.name)
        jobs, problems = data_jobs(pr)
        model_jobs, done = plan(pr, bin_dir)
        jobs += model_jobs
        if args.dry_run:
            print_plan(pr, jobs, done, args, problems)
            return 0
        if problems:
            raise UserError(problems[0] + " (--dry-run lists the jobs without it)")
    except UserError as e:
        die(str(e))

    os.makedirs(pr.runs, exist_ok=True)
    if pr.base_inline:
        write_atomic(pr.base_path, json.dumps(pr.base, indent=2) + "\n")
    manifest = {
        "preset": pr.name, "preset_file": pr.path, "description": pr.description,
        "notes": pr.notes, "base_config": pr.base_path, "data_dir": pr.data_dir, "dataset": pr.data_name,
        "split": pr.split, "figure4": pr.figure4 or [],
        "seeds": pr.seeds, "splits": pr.splits,
        "models": [{"name": m.name, "model": m.base, "seed": m.seed, "method": m.method, "L": m.L,
                    "lvalid": m.lvalid_spec,
                    "per_position": m.per_position, "sliding_stride": m.stride,
                    "sliding_long": m.sliding_long} for m in pr.models],
        "commands": canonical_commands(pr, "."),
    }
    write_atomic(os.path.join(pr.runs, "manifest.json"), json.dumps(manifest, indent=1) + "\n")

    total_est = sum(j.estimate for j in jobs)
    print("reproduce: preset %s: %d jobs to run (%d already done), estimated %s; runs in %s"
          % (pr.name, len(jobs), done, fmt_duration(total_est), pr.runs), flush=True)
    spent = {"train": [0.0, 0.0], "eval": [0.0, 0.0]}  # kind -> [actual s, estimated s]

    def scale(kind):
        a, e = spent.get(kind, [0.0, 0.0])
        return a / e if e > 30 else 1.0  # calibrate once jobs long enough to measure have run

    for i, j in enumerate(jobs):
        left = sum(k.estimate * scale(k.kind) for k in jobs[i:])
        print("reproduce: [%d/%d] %s | ~%s | overall ETA %s"
              % (i + 1, len(jobs), j.title, fmt_duration(j.estimate * scale(j.kind)), fmt_duration(left)),
              flush=True)
        t0 = time.time()
        if j.run:
            j.run()
        else:
            run_checked(j.cmd, j.cmd[0])
        if j.check:
            j.check()
        dt = time.time() - t0
        if j.kind in spent:
            spent[j.kind][0] += dt
            spent[j.kind][1] += j.estimate
        print("reproduce: [%d/%d] done in %s" % (i + 1, len(jobs), fmt_duration(dt)), flush=True)

    rargs = ["--runs", pr.runs, "--out", args.out, "--preset", pr.path]
    if args.no_figures:
        rargs.append("--no-figures")
    return results.main(rargs)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nreproduce: interrupted; run the same command again to continue", flush=True)
        sys.exit(130)
