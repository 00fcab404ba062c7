/* bench/bench_modifiers.c - the cost of the score modifiers (issue 13's
 * targets), each timed against the same case without it, in one run.
 *
 * attn_bench_modifiers [--threads T] [--rounds R] [--only NAME] [--quick] [--cpu]
 *
 * Every row is a pair (base, modified) on the same inputs: the two calls
 * alternate call by call for about R x 0.5 s per side (at least R calls
 * each), best time of each, so a busy moment of a shared machine spoils
 * both sides alike.
 *   window   causal with window_left = W - 1 at N = 65536, d = 64, against
 *            full causal scaled by the visible pairs:
 *            target  t_window <= 1.15 x (pairs_window / pairs_causal) x t_causal
 *   softcap  softcap 50 (Gemma 2's attention cap) on S2 at d = 64 and d = 128
 *   alibi    the paper's slopes on S1 and S2;  sinks  per-head sinks on S1, S2
 *   decode   S4 (B=1 H=32 Nkv=4096 d=128) with each modifier */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include "attn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* --cpu: the process's CPU time instead of the wall clock (bench_clock). */
static int use_cpu_clock = 0;

static double now(void) {
    return bench_clock(use_cpu_clock);
}

enum mod { WINDOW, SOFTCAP, ALIBI, SINKS };
static const char *const mod_names[] = {"window", "softcap", "alibi", "sinks"};

typedef struct pcase {
    const char *name;
    int64_t B, H, Nq, Nkv, d;
    attn_causal causal;
    enum mod mod;
    double target; /* allowed ratio modified / base (WINDOW: / visible-pair ratio) */
} pcase;

#define W4096 4096
static const pcase cases[] = {
    {"W1", 1, 1, 65536, 65536, 64, ATTN_CAUSAL_TOP_LEFT, WINDOW, 1.15},
    {"C2", 1, 8, 4096, 4096, 64, ATTN_CAUSAL_NONE, SOFTCAP, 1.15},
    {"C2d128", 1, 8, 4096, 4096, 128, ATTN_CAUSAL_NONE, SOFTCAP, 1.10},
    {"A1", 1, 12, 1024, 1024, 64, ATTN_CAUSAL_TOP_LEFT, ALIBI, 1.10},
    {"A2", 1, 8, 4096, 4096, 64, ATTN_CAUSAL_NONE, ALIBI, 1.10},
    {"K1", 1, 12, 1024, 1024, 64, ATTN_CAUSAL_TOP_LEFT, SINKS, 1.10},
    {"K2", 1, 8, 4096, 4096, 64, ATTN_CAUSAL_NONE, SINKS, 1.10},
    {"D4w", 1, 32, 1, 4096, 128, ATTN_CAUSAL_NONE, WINDOW, 1.05},
    {"D4c", 1, 32, 1, 4096, 128, ATTN_CAUSAL_NONE, SOFTCAP, 1.05},
    {"D4a", 1, 32, 1, 4096, 128, ATTN_CAUSAL_NONE, ALIBI, 1.05},
    {"D4k", 1, 32, 1, 4096, 128, ATTN_CAUSAL_NONE, SINKS, 1.05},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

/* Visible (query, key) pairs of causal attention, N x N, with window_left =
 * W - 1 (W <= 0: no window). */
static double visible_pairs(int64_t N, int64_t W) {
    double n = 0;
    for (int64_t i = 0; i < N; i++)
        n += (double)(W > 0 && i + 1 > W ? W : i + 1);
    return n;
}

typedef struct inputs {
    float *q, *k, *v, *out, slopes[64], sinks[64];
    attn_view qv, kv, vv, ov;
} inputs;

static void run(const pcase *c, inputs *in, int modified, int nt) {
    attn_opts o = attn_opts_default();
    o.causal = c->causal;
    o.num_threads = nt;
    if (modified) switch (c->mod) {
        case WINDOW:
            /* decode: the newest W keys of Nkv (the window of a Mistral-style cache) */
            o.window_left = c->Nq == 1 ? c->Nkv / 2 - 1 : W4096 - 1;
            break;
        case SOFTCAP:
            o.softcap = 50.0f;
            break;
        case ALIBI:
            o.alibi_slopes = in->slopes;
            break;
        case SINKS:
            o.sinks = in->sinks;
            break;
        }
    if (attn_sdpa(&in->qv, &in->kv, &in->vv, &in->ov, &o)) {
        fprintf(stderr, "attn_bench_modifiers: %s: %s\n", c->name, attn_last_error());
        exit(1);
    }
}

int main(int argc, char **argv) {
    int nt = 2, rounds = 3;
    double min_s = 0.5;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            nt = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--cpu") == 0)
            use_cpu_clock = 1;
        else if (strcmp(argv[i], "--quick") == 0)
            rounds = 1, min_s = 0.2;
        else {
            fprintf(stderr, "usage: attn_bench_modifiers [--threads T] [--rounds R] [--only NAME] "
                            "[--quick] [--cpu]\n");
            return 2;
        }
    }
    printf("# attn_bench_modifiers: %d threads, %s; best of alternating calls, ~%d x %.1f s per "
           "side; %s\n\n",
           nt, attn_build_info(), rounds, min_s, use_cpu_clock ? "process CPU time" : "wall clock");
    printf("| case | shape | modifier | base ms | with ms | ratio | target | met |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int ci = 0; ci < N_CASES; ci++) {
        const pcase *c = &cases[ci];
        if (only && strcmp(only, c->name) != 0) continue;
        inputs in;
        in.q = bench_rand(c->B * c->H * c->Nq * c->d, 1, 1.0f);
        in.k = bench_rand(c->B * c->H * c->Nkv * c->d, 2, 1.0f);
        in.v = bench_rand(c->B * c->H * c->Nkv * c->d, 3, 1.0f);
        in.out = bench_rand(c->B * c->H * c->Nq * c->d, 4, 1.0f);
        in.qv = attn_view_4d(in.q, c->B, c->H, c->Nq, c->d);
        in.kv = attn_view_4d(in.k, c->B, c->H, c->Nkv, c->d);
        in.vv = attn_view_4d(in.v, c->B, c->H, c->Nkv, c->d);
        in.ov = attn_view_4d(in.out, c->B, c->H, c->Nq, c->d);
        attn_alibi_slopes(c->H, in.slopes);
        for (int h = 0; h < c->H; h++)
            in.sinks[h] = 0.25f * (float)(h % 5) - 0.5f;
        double best[2] = {INFINITY, INFINITY};
        run(c, &in, 0, nt), run(c, &in, 1, nt); /* warm-up */
        double total = 0;
        for (int rep = 0; rep < 100000 && (rep < 2 * rounds || total < 2 * rounds * min_s); rep++) {
            const int side = rep % 2; /* base and modified alternate call by call */
            const double t0 = now();
            run(c, &in, side, nt);
            const double t = now() - t0;
            total += t;
            if (t < best[side]) best[side] = t;
        }
        double ratio = best[1] / best[0];
        char target[64];
        if (c->mod == WINDOW && c->Nq > 1) {
            const double pr = visible_pairs(c->Nq, W4096) / visible_pairs(c->Nq, 0);
            ratio /= pr;
            snprintf(target, sizeof target, "<= %.2f x pairs (%.4f)", c->target, pr);
        } else if (c->mod == WINDOW) {
            /* decode with a window of half the keys: compared with half the time */
            ratio /= 0.5;
            snprintf(target, sizeof target, "<= %.2f x 0.5 (half the keys)", c->target);
        } else {
            snprintf(target, sizeof target, "<= %.2f", c->target);
        }
        char shape[96];
        snprintf(shape, sizeof shape, "B=%lld H=%lld Nq=%lld Nkv=%lld d=%lld%s", (long long)c->B,
                 (long long)c->H, (long long)c->Nq, (long long)c->Nkv, (long long)c->d,
                 c->causal ? " causal" : "");
        printf("| %s | %s | %s | %.3f | %.3f | %.3f | %s | %s |\n", c->name, shape,
               mod_names[c->mod], best[0] * 1e3, best[1] * 1e3, ratio, target,
               ratio <= c->target ? "yes" : "**no**");
        fflush(stdout);
        free(in.q), free(in.k), free(in.v), free(in.out);
    }
    return 0;
}
