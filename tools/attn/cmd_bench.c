/* cmd_bench.c - `attn bench`: attn_sdpa on standard shapes, fast path vs
 * reference path: time, GFLOP/s, ratio, and peak scratch memory measured by
 * an allocator installed with attn_set_allocator. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char bench_help[] =
    "Usage: attn bench [OPTIONS]\n"
    "Time attn_sdpa on a few standard shapes, fast path (auto) against the\n"
    "reference path, and print a table: shape, time (best of --repeat runs),\n"
    "GFLOP/s (visible keys only), speed-up over the reference, and the peak\n"
    "scratch memory each path allocated. Progress goes to stderr.\n"
    "\n"
    "Options:\n"
    "  --quick          smaller shapes (a quarter of the tokens), for a fast look\n"
    "  --repeat R       timed runs per path, best kept (3; the reference runs once)\n"
    "  --threads T      threads (default: all online CPUs)\n"
    "  --no-reference   time the fast path only\n"
    "  --filter NAME    only the cases whose name contains NAME\n"
    "  -h, --help       this text\n"
    "\n" EXIT_CODES_HELP;

typedef struct bench_case {
    const char *name;
    int64_t B, H, Hkv, Nq, Nkv, d;
    attn_causal causal;
} bench_case;

static const bench_case cases[] = {
    {"gpt2-prefill", 1, 12, 12, 1024, 1024, 64, ATTN_CAUSAL_TOP_LEFT},
    {"gpt2-full", 1, 12, 12, 512, 512, 64, ATTN_CAUSAL_NONE},
    {"long-causal", 1, 12, 12, 2048, 2048, 64, ATTN_CAUSAL_TOP_LEFT},
    {"gqa-d128", 1, 32, 8, 512, 512, 128, ATTN_CAUSAL_TOP_LEFT},
    {"cross", 2, 8, 8, 256, 1024, 64, ATTN_CAUSAL_NONE},
    {"decode", 4, 32, 8, 1, 4096, 128, ATTN_CAUSAL_BOTTOM_RIGHT},
};

static int run_case(const bench_case *bc, int quick, int repeat, int threads, int with_ref,
                    int index, int count) {
    int64_t Nq = bc->Nq, Nkv = bc->Nkv;
    if (quick) {
        Nq = Nq > 4 ? Nq / 4 : Nq;
        Nkv = Nkv > 4 ? Nkv / 4 : Nkv;
    }
    int64_t nq = bc->B * bc->H * Nq * bc->d, nkv = bc->B * bc->Hkv * Nkv * bc->d;
    float *q = malloc((size_t)nq * 4), *k = malloc((size_t)nkv * 4), *v = malloc((size_t)nkv * 4),
          *o = malloc((size_t)nq * 4);
    if (!q || !k || !v || !o) {
        free(q), free(k), free(v), free(o);
        return cli_error(EXIT_COMPUTE, "bench", "out of memory for %s", bc->name);
    }
    cli_rng r = {1234};
    for (int64_t i = 0; i < nq; i++)
        q[i] = rng_uniform(&r, 1.0f);
    for (int64_t i = 0; i < nkv; i++)
        k[i] = rng_uniform(&r, 1.0f);
    for (int64_t i = 0; i < nkv; i++)
        v[i] = rng_uniform(&r, 1.0f);
    attn_view qv = attn_view_4d(q, bc->B, bc->H, Nq, bc->d);
    attn_view kv = attn_view_4d(k, bc->B, bc->Hkv, Nkv, bc->d);
    attn_view vv = attn_view_4d(v, bc->B, bc->Hkv, Nkv, bc->d);
    attn_view ov = attn_view_4d(o, bc->B, bc->H, Nq, bc->d);
    attn_opts opts = attn_opts_default();
    opts.causal = bc->causal;
    opts.num_threads = threads;
    double flops = sdpa_flops(bc->B, bc->H, Nq, Nkv, bc->d, bc->d, bc->causal);
    double t_ref = 0.0, t_fast = 1e30;
    int64_t peak_ref = 0, peak_fast = 0;
    attn_status st = ATTN_OK;
    if (with_ref) {
        fprintf(stderr, "[%d/%d] %s: reference ...\n", index, count, bc->name);
        opts.algo = ATTN_ALGO_REFERENCE;
        track_reset();
        double t0 = now_seconds();
        st = attn_sdpa(&qv, &kv, &vv, &ov, &opts);
        t_ref = now_seconds() - t0;
        peak_ref = track_peak();
    }
    opts.algo = ATTN_ALGO_AUTO;
    fprintf(stderr, "[%d/%d] %s: fast path x%d ...\n", index, count, bc->name, repeat);
    for (int rep = 0; rep < repeat && st == ATTN_OK; rep++) {
        track_reset();
        double t0 = now_seconds();
        st = attn_sdpa(&qv, &kv, &vv, &ov, &opts);
        double t = now_seconds() - t0;
        if (t < t_fast) t_fast = t;
        if (track_peak() > peak_fast) peak_fast = track_peak();
    }
    free(q), free(k), free(v), free(o);
    if (st != ATTN_OK)
        return cli_error(EXIT_COMPUTE, "bench", "%s: %s", bc->name, attn_last_error());
    char shape[64];
    snprintf(shape, sizeof shape, "%lldx%lld/%lldx%lldx%lldx%lld", (long long)bc->B,
             (long long)bc->H, (long long)bc->Hkv, (long long)Nq, (long long)Nkv, (long long)bc->d);
    printf("%-13s %-26s %-12s %9.2f %8.1f", bc->name, shape, causal_name(bc->causal), t_fast * 1e3,
           flops / t_fast * 1e-9);
    if (with_ref)
        printf(" %9.2f %8.1f %7.1fx %9.2f %9.2f\n", t_ref * 1e3, flops / t_ref * 1e-9,
               t_ref / t_fast, (double)peak_fast / 1024.0, (double)peak_ref / 1024.0);
    else
        printf(" %9s %8s %8s %9.2f %9s\n", "-", "-", "-", (double)peak_fast / 1024.0, "-");
    fflush(stdout);
    return EXIT_OK;
}

int cmd_bench(int argc, char **argv) {
    int quick = 0, with_ref = 1, threads = 0;
    int64_t repeat = 3;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        const char *val;
        int r;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(bench_help, stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if (strcmp(argv[i], "--no-reference") == 0) {
            with_ref = 0;
        } else if ((r = opt_value(argc, argv, &i, "--repeat", &val)) != 0) {
            if (r < 0 || parse_i64(val, 1, 1000, &repeat) != 0)
                return cli_error(EXIT_USAGE, "bench", "--repeat needs an integer in 1..1000");
        } else if ((r = opt_value(argc, argv, &i, "--threads", &val)) != 0) {
            int64_t t;
            if (r < 0 || parse_i64(val, 0, 4096, &t) != 0)
                return cli_error(EXIT_USAGE, "bench", "--threads needs an integer in 0..4096");
            threads = (int)t;
        } else if ((r = opt_value(argc, argv, &i, "--filter", &val)) != 0) {
            if (r < 0) return cli_error(EXIT_USAGE, "bench", "--filter needs a name");
            filter = val;
        } else {
            return cli_error(EXIT_USAGE, "bench", "unknown option '%s' (see attn bench --help)",
                             argv[i]);
        }
    }
    int count = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        count += !filter || strstr(cases[c].name, filter) != NULL;
    if (count == 0) return cli_error(EXIT_USAGE, "bench", "no case matches '%s'", filter);
    int nthreads = threads > 0 ? threads : cli_default_threads();
    printf("attn bench: attn_sdpa, attn %s, isa %s, %d thread%s%s\n", attn_version(),
           attn_isa_name(attn_get_isa()), nthreads, nthreads == 1 ? "" : "s",
           quick ? ", --quick shapes" : "");
    printf("shape = B x H / Hkv x Nq x Nkv x d; time = best of %lld; GFLOP/s counts visible keys; "
           "peak = scratch memory\n",
           (long long)repeat);
    printf("%-13s %-26s %-12s %9s %8s %9s %8s %8s %9s %9s\n", "case", "shape", "causal", "fast ms",
           "GFLOP/s", "ref ms", "GFLOP/s", "speedup", "peak KiB", "ref KiB");
    track_install();
    int rc = EXIT_OK, index = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0] && rc == EXIT_OK; c++) {
        if (filter && !strstr(cases[c].name, filter)) continue;
        rc = run_case(&cases[c], quick, (int)repeat, threads, with_ref, ++index, count);
    }
    track_uninstall();
    return rc;
}
