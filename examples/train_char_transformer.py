#!/usr/bin/python3
"""A small character-level transformer trained in PyTorch, twice.

The text is a licence Debian ships (/usr/share/common-licenses/GPL-3). The
model (token + position embeddings, pre-norm blocks of causal multi-head
self-attention and an MLP, a linear head) is trained twice from the same
seed, with dropout 0 and the same batches:
  1. attention = torch.nn.MultiheadAttention (PyTorch's own),
  2. attention = attn.torch.MultiheadAttention (the drop-in: same
     constructor, so the same initial weights; attn computes the attention
     and its gradients, PyTorch everything else).
The two runs step in lockstep (a step of each in turn, the order swapped
every step) so that changes of the shared machine's load hit both alike.
It prints both loss curves and step times, the final losses and their
relative difference, and draws loss and step time against the step as a PNG.

Run from a build tree:
    PYTHONPATH=build/python /usr/bin/python3 examples/train_char_transformer.py
Options: --steps, --batch, --seq, --d-model, --heads, --layers, --lr, --seed,
--threads (torch's threads, which attn follows), --png, --text.
The default run takes a minute or two (80 s with 1 thread on the shared
2-core machine of docs/torch.md).
"""

import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import attn.torch as attn_torch
except ImportError:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "build", "python"))
    try:
        import attn.torch as attn_torch
    except ImportError:
        sys.exit("train_char_transformer: cannot import attn; build it (make) and run with "
                 "PYTHONPATH=build/python, or install it (see README)")

TEXT = "/usr/share/common-licenses/GPL-3"


class Block(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x)); x (B, T, D)."""

    def __init__(self, mha_cls, D, H):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.attn = mha_cls(D, H, dropout=0.0, batch_first=True)
        self.ln2 = nn.LayerNorm(D)
        self.fc = nn.Linear(D, 4 * D)
        self.proj = nn.Linear(4 * D, D)

    def forward(self, x, causal):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, attn_mask=causal, need_weights=False)
        x = x + a
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class CharTransformer(nn.Module):
    def __init__(self, mha_cls, vocab, T, D, H, layers):
        super().__init__()
        self.tok = nn.Embedding(vocab, D)
        self.pos = nn.Embedding(T, D)
        self.blocks = nn.ModuleList(Block(mha_cls, D, H) for _ in range(layers))
        self.ln = nn.LayerNorm(D)
        self.head = nn.Linear(D, vocab)
        # True = masked (MHA's convention): key j > query i
        self.register_buffer("causal", torch.ones(T, T, dtype=torch.bool).triu(1),
                             persistent=False)

    def forward(self, idx):  # idx (B, T) -> logits (B, T, vocab)
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(T))
        for b in self.blocks:
            x = b(x, self.causal[:T, :T])
        return self.head(self.ln(x))


def load_text(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    ix = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([ix[c] for c in text], dtype=torch.long)
    return data, len(chars)


def batches(data, steps, B, T, seed):
    """The same (B, T) input/target batches for every run."""
    g = torch.Generator()
    g.manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(data) - T - 1, (B,), generator=g)
        x = torch.stack([data[j:j + T] for j in i.tolist()])
        y = torch.stack([data[j + 1:j + T + 1] for j in i.tolist()])
        yield x, y


class Run:
    """One model, its optimiser and its records."""

    def __init__(self, name, mha_cls, vocab, args):
        torch.manual_seed(args.seed)
        self.name = name
        self.model = CharTransformer(mha_cls, vocab, args.seq, args.d_model, args.heads,
                                     args.layers)
        self.init = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=0.0)
        warm = max(1, args.steps // 10)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(
                math.pi * s / args.steps)))
        self.losses, self.times = [], []
        self.model.train()

    def step(self, x, y, vocab):
        t0 = time.perf_counter()
        logits = self.model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        self.times.append(time.perf_counter() - t0)
        self.losses.append(loss.item())


def train(specs, data, vocab, args):
    """Train every run on the same batches in lockstep: step s of one run,
    then of the other, the order swapped every step, so that a change of the
    machine's load (it is shared) hits both alike."""
    runs = [Run(name, cls, vocab, args) for name, cls in specs]
    for step, (x, y) in enumerate(batches(data, args.steps, args.batch, args.seq, args.seed)):
        for r in (runs if step % 2 == 0 else runs[::-1]):
            r.step(x, y, vocab)
        if step % args.print_every == 0 or step == args.steps - 1:
            print("  step %4d  " % step + "  ".join(
                "%s loss %.4f %.1f ms" % (r.name, r.losses[-1], 1e3 * r.times[-1])
                for r in runs), flush=True)
    return {r.name: dict(losses=r.losses, times=r.times, init=r.init) for r in runs}


def plot(runs, path, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    style = {"pytorch": dict(color="tab:blue", lw=1.6),
             "attn": dict(color="tab:orange", lw=1.0, ls="--")}
    labels = {"pytorch": "torch.nn.MultiheadAttention",
              "attn": "attn.torch.MultiheadAttention"}
    for name, r in runs.items():
        a1.plot(r["losses"], label=labels[name], **style[name])
        a2.plot([1e3 * t for t in r["times"]], label="%s (median %.0f ms)" % (
            labels[name], 1e3 * median(r["times"])), **style[name])
    a1.set_xlabel("step")
    a1.set_ylabel("training loss (cross-entropy, nats/char)")
    a1.set_title("Loss, same seed and batches, dropout 0")
    a1.legend()
    a2.set_xlabel("step")
    a2.set_ylabel("step time (ms): forward + backward + AdamW")
    a2.set_title("Step time, %d torch thread(s)" % torch.get_num_threads())
    a2.set_ylim(bottom=0)
    a2.legend()
    fig.suptitle("char transformer on GPL-3: B=%d T=%d D=%d H=%d layers=%d, %d steps"
                 % (args.batch, args.seq, args.d_model, args.heads, args.layers, args.steps))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--text", default=TEXT)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (attn follows it); default: torch's")
    p.add_argument("--png", default="train_char_transformer.png")
    p.add_argument("--print-every", type=int, default=25)
    return p.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data, vocab = load_text(args.text)
    print("text: %s, %d characters, vocabulary %d" % (args.text, len(data), vocab))
    print("model: B=%d T=%d D=%d heads=%d layers=%d, %d steps, AdamW lr %g (gradient norm "
          "clipped at 1), %d torch thread(s), attn threads %d"
          % (args.batch, args.seq, args.d_model, args.heads, args.layers, args.steps, args.lr,
             torch.get_num_threads(), attn_torch.get_num_threads()))
    print("training both in lockstep (same batches):")
    runs = train((("pytorch", nn.MultiheadAttention), ("attn", attn_torch.MultiheadAttention)),
                 data, vocab, args)
    same_init = all(torch.equal(runs["pytorch"]["init"][k], runs["attn"]["init"][k])
                    for k in runs["pytorch"]["init"])
    print("initial weights identical: %s" % same_init)
    k = min(10, args.steps)
    res = {}
    for name, r in runs.items():
        res[name] = dict(final=sum(r["losses"][-k:]) / k, step=median(r["times"][1:] or r["times"]),
                         losses=r["losses"], times=r["times"])
    rel = abs(res["attn"]["final"] - res["pytorch"]["final"]) / res["pytorch"]["final"]
    print("loss curves (every %d steps):" % args.print_every)
    print("  step  " + "  ".join("%8s" % n for n in runs))
    for s in list(range(0, args.steps, args.print_every)) + [args.steps - 1]:
        print("  %4d  " % s + "  ".join("%8.4f" % runs[n]["losses"][s] for n in runs))
    print("step times (ms, every %d steps):" % args.print_every)
    for s in list(range(0, args.steps, args.print_every)) + [args.steps - 1]:
        print("  %4d  " % s + "  ".join("%8.1f" % (1e3 * runs[n]["times"][s]) for n in runs))
    print("final loss (mean of the last %d steps): pytorch %.4f, attn %.4f, relative "
          "difference %.3f%%" % (k, res["pytorch"]["final"], res["attn"]["final"], 100 * rel))
    sp = res["pytorch"]["step"] / res["attn"]["step"]
    print("median step time: pytorch %.1f ms, attn %.1f ms: attn's step %.2fx %s" % (
        1e3 * res["pytorch"]["step"], 1e3 * res["attn"]["step"], sp if sp >= 1 else 1 / sp,
        "faster" if sp >= 1 else "slower"))
    if args.png:
        plot(runs, args.png, args)
        print("plot: %s" % args.png)
    return dict(runs=res, rel_diff=rel, speedup=sp, same_init=same_init)


if __name__ == "__main__":
    main()
