/* cmd_explain.c - `attn explain` (the shape flow, no computation) and
 * `attn info` (what is inside .npy/.npz files). */
#include "cli.h"
#include "flow.h"
#include "npy.h"

#include <stdlib.h>
#include <string.h>

int flow_parse_option(int argc, char **argv, int *i, flow_cfg *c, int allow_cross, const char *cmd,
                      int *status) {
    struct {
        const char *name;
        int64_t *dst;
        int64_t lo;
    } sizes[] = {{"--seq", &c->Nq, 1},       {"--dim", &c->D, 1},
                 {"--heads", &c->H, 1},      {"--batch", &c->B, 1},
                 {"--nkv", &c->Nkv, 1},      {"--gqa-kv-heads", &c->Hkv, 1},
                 {"--kv-heads", &c->Hkv, 1}, {"--cache", &c->cache, 0}};
    const char *val;
    *status = EXIT_OK;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int r = opt_value(argc, argv, i, sizes[k].name, &val);
        if (r == 0) continue;
        if (!allow_cross &&
            (strcmp(sizes[k].name, "--nkv") == 0 || strcmp(sizes[k].name, "--cache") == 0)) {
            *status = cli_error(EXIT_USAGE, cmd, "%s is only for attn explain", sizes[k].name);
            return 1;
        }
        if (r < 0 || parse_i64(val, sizes[k].lo, (int64_t)1 << 40, sizes[k].dst) != 0)
            *status = cli_error(EXIT_USAGE, cmd, "%s needs a %s integer%s%s", sizes[k].name,
                                sizes[k].lo ? "positive" : "non-negative", r < 0 ? "" : ", got ",
                                r < 0 ? "" : val);
        if (strcmp(sizes[k].name, "--nkv") == 0) c->cross = 1;
        return 1;
    }
    if (allow_cross && strcmp(argv[*i], "--cross") == 0) {
        c->cross = 1;
        return 1;
    }
    if (cli_bare_causal(argc, argv, *i)) {
        c->causal = CLI_CAUSAL_BARE; /* resolved once Nq and Nkv are known */
        return 1;
    }
    int r = opt_value(argc, argv, i, "--causal", &val);
    if (r != 0) {
        if (r < 0 || parse_causal(val, &c->causal) != 0)
            *status = cli_error(EXIT_USAGE, cmd, "--causal takes none, top_left or bottom_right");
        return 1;
    }
    if (strcmp(argv[*i], "--no-causal") == 0) {
        c->causal = ATTN_CAUSAL_NONE;
        return 1;
    }
    return 0;
}

flow_cfg flow_gpt2_small(void) {
    flow_cfg c = {1, 1024, 1024, 768, 12, 12, 0, ATTN_CAUSAL_TOP_LEFT, 0};
    return c;
}

/* After parsing: fill defaults that follow others (Nkv, Hkv). */
void flow_finish(flow_cfg *c, int nkv_set, int hkv_set) {
    if (!nkv_set) c->Nkv = c->Nq;
    if (!hkv_set) c->Hkv = c->H;
    if (c->cache > 0 && !c->cross) {
        c->Nkv = c->cache + c->Nq;
        c->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    }
}

static const char explain_help[] =
    "Usage: attn explain [OPTIONS]\n"
    "Print the shape flow of multi-head attention, step by step, with the einsum\n"
    "of every contraction, and its costs. Nothing is computed.\n"
    "\n"
    "Options (defaults: GPT-2 small, causal self-attention):\n"
    "  --batch B            sequences (1)\n"
    "  --seq N              query tokens (1024)\n"
    "  --dim D              model width (768)\n"
    "  --heads H            query heads (12); head size HS = D / H\n"
    "  --gqa-kv-heads G     key/value heads (H); H must be a multiple of G\n"
    "  --kv-heads G         the same (as in attn run mha --kv-heads)\n"
    "  --cache L            decode with a KV cache holding L tokens: --seq new\n"
    "                       tokens (1 unless given) append k, v to the cache and\n"
    "                       attend to all L + Nq keys, causal bottom-right\n"
    "  --cross              cross-attention: keys/values from a second sequence\n"
    "  --nkv N              key/value tokens of the second sequence (implies --cross)\n"
    "  --causal [RULE]      none | top_left | bottom_right (default top_left); a bare\n"
    "                       --causal needs Nq == Nkv, where both rules agree;\n"
    "                       --no-causal is --causal none\n"
    "  --visibility         instead: which keys each query sees, as a grid (and\n"
    "                       a PNG); see attn explain --visibility --help\n"
    "  -h, --help           this text\n"
    "\n"
    "Examples: attn explain --seq 8 --dim 64 --heads 4 --gqa-kv-heads 2\n"
    "          attn explain --cache 4096 --dim 4096 --heads 32 --kv-heads 8\n"
    "\n" EXIT_CODES_HELP;

int cmd_explain(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--visibility") == 0) return cmd_visibility(argc, argv);
    flow_cfg c = flow_gpt2_small();
    int nkv_set = 0, hkv_set = 0, seq_set = 0, status;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(explain_help, stdout);
            return EXIT_OK;
        }
        int64_t old_nkv = c.Nkv, old_hkv = c.Hkv;
        const char *w = argv[i];
        if (flow_parse_option(argc, argv, &i, &c, 1, "explain", &status)) {
            if (status != EXIT_OK) return status;
            if (strncmp(w, "--nkv", 5) == 0 || c.Nkv != old_nkv) nkv_set = 1;
            if (strncmp(w, "--gqa", 5) == 0 || strncmp(w, "--kv-heads", 10) == 0 ||
                c.Hkv != old_hkv)
                hkv_set = 1;
            if (strncmp(w, "--seq", 5) == 0) seq_set = 1;
            continue;
        }
        return cli_error(EXIT_USAGE, "explain", "unknown option '%s' (see attn explain --help)",
                         argv[i]);
    }
    if (c.cache > 0 && !seq_set) c.Nq = 1; /* decode: one new token */
    if (c.cache > 0 && (c.cross || nkv_set))
        return cli_error(EXIT_USAGE, "explain",
                         "--cache is self-attention decoding: not with --cross or --nkv");
    flow_finish(&c, nkv_set, hkv_set);
    if (resolve_causal(&c.causal, c.Nq, c.Nkv, 0, "explain") != 0) return EXIT_USAGE;
    const char *bad = flow_check(&c);
    if (bad) return cli_error(EXIT_USAGE, "explain", "%s", bad);
    flow_step steps[FLOW_MAX_STEPS];
    int n = flow_build(&c, steps);
    flow_print(stdout, &c, steps, n);
    flow_print_costs(stdout, &c);
    return EXIT_OK;
}

/* ---- attn info ------------------------------------------------------------ */

static const char info_help[] =
    "Usage: attn info FILE...\n"
    "List the arrays of .npy and .npz files: name, shape, dtype, order. Every\n"
    "array is read and checked in full (sizes, CRC-32, header), so this also\n"
    "validates files before `attn run`.\n"
    "\n" EXIT_CODES_HELP;

static int info_one(const char *path) {
    char err[1024];
    npy_array a;
    FILE *f = fopen(path, "rb");
    unsigned char sig[4] = {0};
    size_t got = f ? fread(sig, 1, 4, f) : 0;
    if (f) fclose(f);
    int is_zip = got == 4 && sig[0] == 'P' && sig[1] == 'K';
    if (!is_zip || strstr(path, ".npz:")) {
        if (npy_load(path, NULL, NPY_ALLOW_INT, &a, err, sizeof err) != 0)
            return cli_error(EXIT_INPUT, "info", "%s", err);
        char sb[160];
        printf("%s: shape %s dtype %s %s order\n", path, shape_str(a.ndim, a.shape, sb, sizeof sb),
               a.descr, a.fortran_order ? "Fortran" : "C");
        npy_free(&a);
        return EXIT_OK;
    }
    /* An archive: every member, read and checked in full. */
    npy_archive ar;
    if (npy_archive_open(path, &ar, err, sizeof err) != 0)
        return cli_error(EXIT_INPUT, "info", "%s", err);
    int rc = EXIT_OK;
    for (int64_t i = 0; i < ar.z.n; i++) {
        if (npy_archive_load(&ar, i, NPY_ALLOW_INT, &a, err, sizeof err) != 0) {
            rc = cli_error(EXIT_INPUT, "info", "%s", err);
            break;
        }
        char sb[160];
        printf("%s:%s: shape %s dtype %s %s order (%s)\n", path, ar.z.entries[i].name,
               shape_str(a.ndim, a.shape, sb, sizeof sb), a.descr,
               a.fortran_order ? "Fortran" : "C",
               ar.z.entries[i].method == 8 ? "deflate" : "stored");
        npy_free(&a);
    }
    npy_archive_close(&ar);
    return rc;
}

int cmd_info(int argc, char **argv) {
    if (argc < 2) return cli_error(EXIT_USAGE, "info", "needs at least one FILE (see --help)");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(info_help, stdout);
            return EXIT_OK;
        }
    }
    for (int i = 1; i < argc; i++) {
        int rc = info_one(argv[i]);
        if (rc != EXIT_OK) return rc;
    }
    return EXIT_OK;
}
