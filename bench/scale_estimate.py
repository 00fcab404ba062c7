#!/usr/bin/env python3
"""bench/scale_estimate.py --gflops F - the paper estimate of docs/scale-out.md.

For P nodes each computing F GFLOP/s (the rate measured on this host, as
one node) and a network of BW GB/s per node, a sequence of N tokens in
shards of S = N/P:
  per-step compute   one key shard against the node's S queries:
                     4 * S^2 * H * d / F   (d = dv; causal: half on average)
  per-step transfer  ring (or a pipelined broadcast): S * Hkv * (d+dv) * 4 / BW
                     exact mode as built (the owner sends to each of the
                     P-1 others itself): (P-1) times that, on the owner's link
  smallest shard hiding communication: compute >= transfer, i.e.
                     S >= F * Hkv * (d+dv) / (H * d * BW)   (ring)
                     and P-1 times that for exact mode as built
  memory per rank    q, out (S*H*d and S*H*dv floats), the K/V shard and its
                     packed copy (2 * S*Hkv*(d+dv)), the fold state and result
                     (S*H*(2*dv+4)), three key chunks (two receive slots and
                     the staging chunk: 3 * 512 * Hkv*(d+dv)); ring: two
                     K/V buffers of S keys instead of the chunks.
"""
import argparse


def fmt_s(x):
    return f"{x * 1e3:.3g} ms" if x < 1 else f"{x:.3g} s"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gflops", type=float, required=True, help="measured GFLOP/s of one node")
    a = ap.parse_args()
    F = a.gflops * 1e9
    print(f"Paper estimate, F = {a.gflops:.1f} GFLOP/s per node (measured here, np=1 x 2 threads), B = 1:")
    print()
    print("| model | N | nodes P | shard S | step compute | step transfer 25 / 100 GB/s (ring) "
          "| exact as built 25 / 100 GB/s | smallest hiding S, ring 25 / 100 | exact as built 25 / 100 "
          "| memory/rank exact (ring) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, H, Hkv, d in (("H=8 Hkv=8 d=64", 8, 8, 64), ("H=32 Hkv=8 d=128", 32, 8, 128)):
        N = 1 << 20
        for P in (64, 1024):
            S = N // P
            kvb = Hkv * 2 * d * 4  # bytes of K and V of one token
            tc = 4.0 * S * S * H * d / F
            tr = [S * kvb / (bw * 1e9) for bw in (25, 100)]
            te = [(P - 1) * t for t in tr]
            smin = [F * Hkv * 2 * d / (H * d * bw * 1e9) for bw in (25, 100)]
            smin_e = [(P - 1) * s for s in smin]
            floats = S * H * d + S * H * d + 2 * S * Hkv * 2 * d + S * H * (2 * d + 4)
            mem_e = (floats + 3 * 512 * Hkv * 2 * d) * 4
            mem_r = (floats - S * Hkv * 2 * d + 2 * S * Hkv * 2 * d) * 4
            print(f"| {name} | 2^20 | {P} | {S} | {fmt_s(tc)} | {fmt_s(tr[0])} / {fmt_s(tr[1])} "
                  f"| {fmt_s(te[0])} / {fmt_s(te[1])} | {smin[0]:.3g} / {smin[1]:.3g} "
                  f"| {smin_e[0]:.3g} / {smin_e[1]:.3g} | {mem_e / 2**20:.1f} MiB ({mem_r / 2**20:.1f} MiB) |")


if __name__ == "__main__":
    main()
