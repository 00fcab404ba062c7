#!/usr/bin/python3
"""bench/plot.py OUTPUT.txt PICTURE.png - draw what `make bench` printed.

Reads the markdown tables of attn_bench's output (bench/run.sh saves it) and
draws, side by side:
  - GFLOP/s per case for attn, NumPy and PyTorch (their rates are attn's
    divided by the "x NumPy" / "x PyTorch" factors of the same run), with the
    same-run OpenBLAS SGEMM rate as a dashed line;
  - every table that has "attn GB/s" and "stream GB/s" columns (decode over
    views, decode over the KV cache): attn's rate beside the read-only
    stream over the same bytes, its bound.
Uses Debian's matplotlib (python3-matplotlib), with the Agg backend.
"""
import re
import sys


def tables(text):
    """Every markdown table as (header, rows), rows as dicts."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            head = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows.append(dict(zip(head, cells)))
                i += 1
            out.append((head, rows))
        else:
            i += 1
    return out


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: bench/plot.py OUTPUT.txt PICTURE.png")
    text = open(argv[1]).read()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = re.search(r"SGEMM 2048\^3, (\d+) threads: ([\d.]+) GFLOP/s", text)
    sgemm, threads = (float(m.group(2)), m.group(1)) if m else (None, "?")
    date = re.search(r"# date: ([^,]+)", text)
    all_tables = tables(text)
    main_t = next((rows for head, rows in all_tables if "GFLOP/s" in head and "x NumPy" in head), [])
    stream_ts = [rows for head, rows in all_tables if "attn GB/s" in head and "stream GB/s" in head]
    # Tables timed against a bound (decode over the KV cache): time / bound.
    bound_ts = [rows for head, rows in all_tables if "attend ms" in head and "bound ms" in head]
    if not main_t:
        sys.exit(f"bench/plot.py: no results table in {argv[1]}")

    extra = len(stream_ts) + len(bound_ts)
    fig, axes = plt.subplots(1, 1 + extra, figsize=(6 + 4.5 * extra, 4.6),
                             gridspec_kw={"width_ratios": [1.6] + [1] * extra})
    axes = list(axes) if extra else [axes]
    ax = axes[0]
    names = [r["case"] for r in main_t]
    ours = [num(r["GFLOP/s"]) or 0.0 for r in main_t]
    def other(col):
        return [o / f if (f := num(r.get(col))) else 0.0 for o, r in zip(ours, main_t)]
    x = range(len(names))
    w = 0.27
    ax.bar([i - w for i in x], ours, w, label="attn", color="#31688e")
    ax.bar(list(x), other("x NumPy"), w, label="NumPy", color="#35b779")
    ax.bar([i + w for i in x], other("x PyTorch"), w, label="PyTorch", color="#fde725")
    if sgemm:
        ax.axhline(sgemm, ls="--", color="#440154", label=f"OpenBLAS SGEMM ({sgemm:.0f})")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=30)
    ax.set_ylabel("GFLOP/s")
    ax.set_title(f"attention, float32, {threads} threads")
    ax.set_ylim(0, 1.25 * max(ours + ([sgemm] if sgemm else [])))
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    for ax, rows in zip(axes[1:], stream_ts):
        labels = [" ".join(v for k, v in r.items() if k in ("case", "cache", "dtype", "block")) for r in rows]
        a = [num(r["attn GB/s"]) or 0.0 for r in rows]
        s = [num(r["stream GB/s"]) or 0.0 for r in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], a, 0.4, label="attn", color="#31688e")
        ax.bar([i + 0.2 for i in x], s, 0.4, label="read-only stream (bound)", color="#bbbbbb")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=30, fontsize=8)
        ax.set_ylabel("GB/s of K and V read")
        ax.set_title("decode vs memory bandwidth")
        ax.legend(fontsize=8)
    for ax, rows in zip(axes[1 + len(stream_ts):], bound_ts):
        labels = [" ".join(r.get(k, "") for k in ("case", "dtype", "cache")) for r in rows]
        ratio = [(num(r["attend ms"]) or 0.0) / (num(r["bound ms"]) or float("inf")) for r in rows]
        x = range(len(rows))
        ax.bar(list(x), ratio, 0.6, color="#31688e", label="attend time / bound")
        ax.axhline(1.0, ls="--", color="#440154", label="bound (memory or SGEMM rate)")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, rotation=60, fontsize=7)
        ax.set_ylabel("time / bound (lower is better)")
        ax.set_ylim(0, 1.3 * max(ratio + [1.0]))
        ax.set_title("decode over the KV cache vs its bound")
        ax.legend(fontsize=8)
    if date:
        fig.suptitle(f"make bench, {date.group(1)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    print(f"bench/plot.py: wrote {argv[2]}")


if __name__ == "__main__":
    main(sys.argv)
