"""Forward + backward of attention in PyTorch: attn.torch against PyTorch 1.13.

Usage: PYTHONPATH=build/python /usr/bin/python3 bench/bench_torch.py
           [--threads 1,2] [--cases S1,S2c,S3] [--no-train] [--train-args "..."]
(bench/run.sh, and so `make bench`, runs it.)

Per case of bench/bench.c (S1, S2c, S3: float32, B, H, N, d below), one
training step of the attention alone: out = attention(q, k, v), then
out.backward(dout), q, k, v leaves that need grad. Three ways:
  compose  PyTorch autograd of s = q @ k^T * scale (masked_fill -inf above
           the diagonal when causal), p = softmax(s, -1), out = p @ v
  private  PyTorch 1.13's private F._scaled_dot_product_attention (its own
           composition in C++, autograd; no public SDPA in 1.13)
  attn     attn.torch.scaled_dot_product_attention (attn's forward and
           attn_sdpa_backward)
Each thread count T runs in its own process with OPENBLAS_NUM_THREADS=T,
OMP_NUM_THREADS=T and torch.set_num_threads(T) (attn follows torch's
count); each way keeps its best T; the ratio is best(PyTorch way) /
best(attn). Times are the best of several repetitions after a warm-up.
Results are checked against each other (max |difference| of out and dq).

Then the training example (examples/train_char_transformer.py, default
configuration, 2 torch threads): its median step times and final losses.
The machine is shared with other work: ratios of runs side by side in one
process are the figures to read, absolute times vary.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

CASES = {
    # name: B, H, N, d, causal
    "S1": (1, 12, 1024, 64, True),
    "S2c": (1, 8, 4096, 64, True),
    "S3": (8, 12, 256, 64, False),
}
WAYS = ("compose", "private", "attn")
HERE = os.path.dirname(os.path.abspath(__file__))


def child(threads, cases, min_s):
    import torch
    import torch.nn.functional as F

    import attn.torch as T

    torch.set_num_threads(threads)
    assert T.get_num_threads() == threads

    def compose(q, k, v, causal):
        s = torch.matmul(q, k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)
        if causal:
            n = q.shape[-2]
            s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        return torch.matmul(torch.softmax(s, -1), v)

    if hasattr(F, "_scaled_dot_product_attention"):  # PyTorch 1.13
        def private(q, k, v, causal):
            return F._scaled_dot_product_attention(q, k, v, None, 0.0, False, causal)[0]
    else:  # later versions: the public function takes its place
        def private(q, k, v, causal):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def ours(q, k, v, causal):
        return T.scaled_dot_product_attention(q, k, v, is_causal=causal)

    fns = dict(compose=compose, private=private, attn=ours)
    for name in cases:
        B, H, N, d, causal = CASES[name]
        g = torch.Generator().manual_seed(1)
        q, k, v, dout = (torch.randn(B, H, N, d, generator=g) for _ in range(4))
        res = {}
        for way in WAYS:
            leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]

            def step():
                for t in leaves:
                    t.grad = None
                out = fns[way](*leaves, causal)
                out.backward(dout)
                return out

            out = step()  # warm-up, and the result to compare
            res[way] = (out.detach(), leaves[0].grad.clone())
            best, cpu, total, reps = float("inf"), float("inf"), 0.0, 0
            while reps < 3 or (total < min_s and reps < 20):
                c0, t0 = time.process_time(), time.perf_counter()
                step()
                t, c = time.perf_counter() - t0, time.process_time() - c0
                best, cpu, total, reps = min(best, t), min(cpu, c), total + t, reps + 1
            print(json.dumps(dict(case=name, way=way, threads=threads, seconds=best, cpu=cpu,
                                  reps=reps)), flush=True)
        for way in ("compose", "private"):
            do = float((res["attn"][0] - res[way][0]).abs().max())
            dq = float((res["attn"][1] - res[way][1]).abs().max())
            print(json.dumps(dict(case=name, check=way, threads=threads, out=do, dq=dq)),
                  flush=True)
        del res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--cases", default="S1,S2c,S3")
    ap.add_argument("--min-seconds", type=float, default=1.0)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--train-args", default="")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    cases = [c for c in a.cases.split(",") if c]
    if a.child:
        child(a.child, cases, a.min_seconds)
        return
    import torch

    print("# bench_torch.py: attention forward + backward, float32, PyTorch %s; the machine "
          "is shared (absolute times vary, compare ratios)" % torch.__version__)
    best, checks, cpu1 = {}, {}, {}
    for T in [int(t) for t in a.threads.split(",")]:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(T), OMP_NUM_THREADS=str(T))
        cmd = [sys.executable, os.path.abspath(__file__), "--child", str(T), "--cases",
               ",".join(cases), "--min-seconds", str(a.min_seconds)]
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
        if r.returncode != 0:
            print("# threads=%d: the timing process failed (exit %d)" % (T, r.returncode))
            continue
        for line in r.stdout.splitlines():
            d = json.loads(line)
            if "way" in d:
                key = (d["case"], d["way"])
                if key not in best or d["seconds"] < best[key][0]:
                    best[key] = (d["seconds"], T)
                if T == 1:
                    cpu1[key] = d["cpu"]
            else:
                checks[(d["case"], d["check"], T)] = (d["out"], d["dq"])
    print("%-4s %-18s %12s %12s %12s %9s %9s" % ("case", "B,H,N,d,causal", "compose ms",
                                                "private ms", "attn ms", "x compose",
                                                "x private"))
    for c in cases:
        if any((c, w) not in best for w in WAYS):
            continue
        t = {w: best[(c, w)] for w in WAYS}
        B, H, N, d, causal = CASES[c]
        print("%-4s %-18s %8.1f (%d) %8.1f (%d) %8.1f (%d) %8.2fx %8.2fx" % (
            c, "%d,%d,%d,%d,%s" % (B, H, N, d, "c" if causal else "-"),
            1e3 * t["compose"][0], t["compose"][1], 1e3 * t["private"][0], t["private"][1],
            1e3 * t["attn"][0], t["attn"][1], t["compose"][0] / t["attn"][0],
            t["private"][0] / t["attn"][0]))
    print("# (n) = the thread count that was best; ratios = PyTorch's time / attn's; "
          "target >= 3x")
    if cpu1:
        # CPU time of one thread is the work itself, little changed by other
        # processes' load (which the wall clock above is not)
        print("# one thread, process CPU time (robust to the machine's load):")
        for c in cases:
            if all((c, w) in cpu1 for w in WAYS):
                t = {w: cpu1[(c, w)] for w in WAYS}
                print("#   %-4s compose %8.1f ms  private %8.1f ms  attn %8.1f ms  %6.2fx %6.2fx"
                      % (c, 1e3 * t["compose"], 1e3 * t["private"], 1e3 * t["attn"],
                         t["compose"] / t["attn"], t["private"] / t["attn"]))
    worst = max([v[0] for v in checks.values()] + [0.0]), max([v[1] for v in checks.values()] +
                                                               [0.0])
    print("# agreement, attn vs PyTorch, every case and thread count: max |out| diff %.2e, "
          "max |dq| diff %.2e" % worst)
    if a.no_train:
        return
    print("# training example: examples/train_char_transformer.py, 2 torch threads %s"
          % a.train_args)
    ex = os.path.join(HERE, "..", "examples", "train_char_transformer.py")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    cmd = [sys.executable, ex, "--threads", "2"] + shlex.split(a.train_args)
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    for line in r.stdout.splitlines():
        if line.startswith(("final loss", "median step", "plot", "model", "initial")):
            print("# " + line)
    if r.returncode != 0:
        print("# the training example failed (exit %d)" % r.returncode)


if __name__ == "__main__":
    main()
