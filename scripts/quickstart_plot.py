#!/usr/bin/env python3
"""quickstart_plot.py — the end of `make quickstart`: perplexity against L_valid for the models
it trained, as a table, a text plot in the terminal and (with matplotlib) a figure.

  scripts/quickstart_plot.py --runs runs/quickstart --methods alibi,sinusoidal --train-len 128

Reads <runs>/<method>/eval.jsonl (written by ./eval --json: one row per L_valid), keeps the
nonoverlapping rows of the valid split, the last one per length, and writes
<runs>/extrapolation.png. Labels and colours are the registry's (./train --list-positions,
through scripts/results.py). A run without rows is one "error: " line and exit status 2.
"""
import argparse
import importlib.util
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402  (scripts/results.py: read_jsonl, label, color)

PLOT_ROWS = 12  # height of the text plot
MARKS = "ox+#@%"  # one mark per method, in --methods order; '*' where two meet


def curves(runs, methods):
    """method -> [(L_valid, ppl)] ascending, from each run's eval.jsonl."""
    out = {}
    for m in methods:
        path = os.path.join(runs, m, "eval.jsonl")
        rows = {}
        for r in results.read_jsonl(path):
            if r.get("split") == "valid" and r.get("mode") == "nonoverlapping" and "ppl" in r:
                rows[r["lvalid"]] = r["ppl"]
        if not rows:
            results.die("%s has no evaluation rows: run ./eval --ckpt %s --json %s first"
                        % (path, os.path.join(runs, m), path))
        out[m] = sorted(rows.items())
    return out


def table(data, methods):
    lengths = sorted({L for m in methods for L, _ in data[m]})
    head = "%8s" % "L_valid" + "".join("%17s" % (results.label(m) + " ppl") for m in methods)
    lines = [head]
    for L in lengths:
        cells = [dict(data[m]).get(L) for m in methods]
        lines.append("%8d" % L + "".join("%17s" % ("%.2f" % c if c else "-") for c in cells))
    return "\n".join(lines)


def text_plot(data, methods, train_len):
    """Perplexity (rows, linear) against L_valid (columns, one per length: they double)."""
    lengths = sorted({L for m in methods for L, _ in data[m]})
    ppls = [p for m in methods for _, p in data[m]]
    lo, hi = min(ppls), max(ppls)
    span = (hi - lo) or 1.0
    col = 8
    grid = [[" "] * (col * len(lengths)) for _ in range(PLOT_ROWS)]
    for k, m in enumerate(methods):
        for L, p in data[m]:
            row = PLOT_ROWS - 1 - int(round((p - lo) / span * (PLOT_ROWS - 1)))
            x = lengths.index(L) * col + col // 2
            grid[row][x] = MARKS[k % len(MARKS)] if grid[row][x] == " " else "*"
    lines = []
    for i, cells in enumerate(grid):
        value = hi - span * i / (PLOT_ROWS - 1)
        lines.append("%9.1f |%s" % (value, "".join(cells).rstrip()))
    lines.append(" " * 10 + "+" + "-" * (col * len(lengths)))
    lines.append(" " * 11 + "".join(("%d" % L).center(col) for L in lengths))
    lines.append(" " * 11 + "L_valid (tokens; trained at L = %d)" % train_len)
    legend = ", ".join("%s %s" % (MARKS[k % len(MARKS)], results.label(m))
                       for k, m in enumerate(methods))
    lines.append(" " * 11 + "perplexity, lower is better: " + legend + " (* both)")
    return "\n".join(lines)


def figure(data, methods, train_len, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m in methods:
        xs, ys = zip(*data[m])
        ax.plot(xs, ys, marker="o", lw=2, color=results.color(m), label=results.label(m))
    ax.axvline(train_len, color="0.5", ls=":", lw=1)
    ax.annotate("L = %d (training)" % train_len, (train_len, 0.97), xycoords=("data", "axes fraction"),
                xytext=(4, 0), textcoords="offset points", va="top", fontsize=9, color="0.3")
    ax.set_xscale("log", base=2)
    ax.set_xticks([L for L, _ in data[methods[0]]])
    ax.set_xticklabels([str(L) for L, _ in data[methods[0]]])
    ax.set_xlabel("evaluation length L_valid (tokens)")
    ax.set_ylabel("validation perplexity")
    ax.set_title("Train short, test long: trained at L = %d" % train_len)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scripts/quickstart_plot.py", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="directory holding one run per method")
    ap.add_argument("--methods", required=True, help="comma-separated run names (= methods)")
    ap.add_argument("--train-len", type=int, required=True, help="the models' training length")
    ap.error = lambda msg: results.die("quickstart_plot: %s" % msg)
    a = ap.parse_args(argv)
    methods = [m for m in a.methods.split(",") if m]
    data = curves(a.runs, methods)
    print(table(data, methods))
    print()
    print(text_plot(data, methods, a.train_len))
    if importlib.util.find_spec("matplotlib") is None:
        print("\nquickstart: no matplotlib, so no figure (apt-get install python3-matplotlib)")
        return 0
    path = os.path.join(a.runs, "extrapolation.png")
    figure(data, methods, a.train_len, path)
    print("\nquickstart: figure in %s" % path)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
