/* cmd_visibility.c - `attn explain --visibility`: which keys each query
 * sees, as a grid in the terminal and, with --png, as a picture.
 *
 * The grid is not drawn from a second copy of the rules: the library itself
 * computes it. With q = k = 0 every visible key scores 0, and with
 * v = identity (Nkv, Nkv) row i of the output is row i of the attention
 * weights: 1/(visible keys + sink) where key j is visible, exactly 0 where
 * it is not. So what is shown is what attn_sdpa does. */
#include "cli.h"
#include "picture.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char vis_help[] =
    "Usage: attn explain --visibility [OPTIONS]\n"
    "Draw which keys each query of one sequence and head sees, as computed by\n"
    "attn_sdpa itself: '#' visible, '.' hidden, '@' a visible key at the\n"
    "query's own position, '-' padding (j >= key length), 'S' the sink logit\n"
    "every row takes (--sinks).\n"
    "\n"
    "Options:\n"
    "  --seq NQ             query tokens (8), at most 256\n"
    "  --nkv NKV            key tokens (NQ), at most 256\n"
    "  --causal RULE        none | top_left | bottom_right (none)\n"
    "  --key-length L       keys j >= L are padding (NKV)\n"
    "  --q-offset P         position of query 0 (default: 0 with top-left,\n"
    "                       else L - NQ, the bottom-right alignment)\n"
    "  --k-offset P         position of key 0 (0)\n"
    "  --window L,R         sliding window: dist <= L and -dist <= R, -1 for\n"
    "                       unbounded (a model's sliding_window = S is S-1,-1)\n"
    "  --sinks              one sink logit per row (gpt-oss)\n"
    "  --png FILE           also write the grid as a PNG picture\n"
    "  -h, --help           this text\n"
    "\n"
    "dist = (q_offset + i) - (k_offset + j); causal means dist >= 0.\n"
    "Example: attn explain --visibility --seq 4 --nkv 12 --causal bottom_right --window 5,-1\n"
    "\n" EXIT_CODES_HELP;

typedef struct vis_cfg {
    int64_t Nq, Nkv, L, q_offset, k_offset, left, right;
    int q_offset_set, sinks;
    attn_causal causal;
    const char *png;
} vis_cfg;

static int parse_args(int argc, char **argv, vis_cfg *c) {
    int nkv_set = 0, L_set = 0;
    const int64_t big = (int64_t)1 << 40;
    for (int i = 1; i < argc; i++) {
        const char *w = argv[i], *val;
        int r;
        if (strcmp(w, "--visibility") == 0) continue;
        if (strcmp(w, "--sinks") == 0) {
            c->sinks = 1;
            continue;
        }
#define NUMBER(NAME, DST, LO, HI, SETFLAG)                                                         \
    if ((r = opt_value(argc, argv, &i, NAME, &val)) != 0) {                                        \
        if (r < 0 || parse_i64(val, LO, HI, DST) != 0)                                             \
            return cli_error(EXIT_USAGE, "explain", "%s needs an integer in %lld..%lld%s%s", NAME, \
                             (long long)(LO), (long long)(HI), r < 0 ? "" : ", got ",              \
                             r < 0 ? "" : val);                                                    \
        SETFLAG;                                                                                   \
        continue;                                                                                  \
    }
        NUMBER("--seq", &c->Nq, 1, 256, (void)0)
        NUMBER("--nkv", &c->Nkv, 1, 256, nkv_set = 1)
        NUMBER("--key-length", &c->L, 0, 256, L_set = 1)
        NUMBER("--q-offset", &c->q_offset, -big, big, c->q_offset_set = 1)
        NUMBER("--k-offset", &c->k_offset, -big, big, (void)0)
#undef NUMBER
        if ((r = opt_value(argc, argv, &i, "--causal", &val)) != 0) {
            if (r < 0 || parse_causal(val, &c->causal) != 0)
                return cli_error(EXIT_USAGE, "explain",
                                 "--causal takes none, top_left or bottom_right");
            continue;
        }
        if ((r = opt_value(argc, argv, &i, "--window", &val)) != 0) {
            if (r < 0 || parse_window(val, &c->left, &c->right) != 0)
                return cli_error(EXIT_USAGE, "explain",
                                 "--window takes LEFT,RIGHT, each -1 (unbounded) or >= 0%s%s",
                                 r < 0 ? "" : ", got ", r < 0 ? "" : val);
            continue;
        }
        if ((r = opt_value(argc, argv, &i, "--png", &val)) != 0) {
            if (r < 0) return cli_error(EXIT_USAGE, "explain", "--png needs a FILE");
            c->png = val;
            continue;
        }
        return cli_error(EXIT_USAGE, "explain",
                         "unknown option '%s' with --visibility (see attn explain "
                         "--visibility --help)",
                         w);
    }
    if (!nkv_set) c->Nkv = c->Nq;
    if (!L_set) c->L = c->Nkv;
    if (c->L > c->Nkv)
        return cli_error(EXIT_USAGE, "explain", "--key-length %lld is more than --nkv %lld",
                         (long long)c->L, (long long)c->Nkv);
    return EXIT_OK;
}

/* vis (Nq, Nkv) from attn_sdpa with q = k = 0 and v = I; see the top. */
static int compute(const vis_cfg *c, unsigned char *vis) {
    const int64_t Nq = c->Nq, Nkv = c->Nkv;
    float *qk = calloc((size_t)(Nq > Nkv ? Nq : Nkv), sizeof(float));
    float *v = calloc((size_t)(Nkv * Nkv), sizeof(float));
    float *out = calloc((size_t)(Nq * Nkv), sizeof(float));
    int rc = EXIT_OK;
    if (!qk || !v || !out) {
        rc = cli_error(EXIT_COMPUTE, "explain", "out of memory");
        goto done;
    }
    for (int64_t j = 0; j < Nkv; j++)
        v[j * Nkv + j] = 1.0f;
    attn_view q = attn_view_4d(qk, 1, 1, Nq, 1), k = attn_view_4d(qk, 1, 1, Nkv, 1);
    attn_view vv = attn_view_4d(v, 1, 1, Nkv, Nkv), o = attn_view_4d(out, 1, 1, Nq, Nkv);
    const int64_t L = c->L, qoff = c->q_offset;
    const float sink = 0.0f;
    attn_opts opts = attn_opts_default();
    opts.causal = c->causal;
    opts.key_lengths = &L;
    opts.q_offset = c->q_offset_set ? &qoff : NULL;
    opts.k_offset = c->k_offset;
    opts.window_left = c->left;
    opts.window_right = c->right;
    opts.sinks = c->sinks ? &sink : NULL;
    opts.num_threads = 1;
    if (attn_sdpa(&q, &k, &vv, &o, &opts) != ATTN_OK) {
        rc = cli_error(EXIT_COMPUTE, "explain", "%s", attn_last_error());
        goto done;
    }
    for (int64_t e = 0; e < Nq * Nkv; e++)
        vis[e] = out[e] > 0.0f;
done:
    free(qk);
    free(v);
    free(out);
    return rc;
}

static int64_t qpos(const vis_cfg *c, int64_t i) {
    if (c->q_offset_set) return c->q_offset + i;
    return (c->causal == ATTN_CAUSAL_TOP_LEFT ? 0 : c->L - c->Nq) + i;
}

int cmd_visibility(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(vis_help, stdout);
            return EXIT_OK;
        }
    vis_cfg c = {8, 8, 8, 0, 0, -1, -1, 0, 0, ATTN_CAUSAL_NONE, NULL};
    int rc = parse_args(argc, argv, &c);
    if (rc != EXIT_OK) return rc;
    const int64_t Nq = c.Nq, Nkv = c.Nkv;
    unsigned char *vis = malloc((size_t)(Nq * Nkv)), *diag = calloc((size_t)(Nq * Nkv), 1);
    if (!vis || !diag) {
        free(vis);
        free(diag);
        return cli_error(EXIT_COMPUTE, "explain", "out of memory");
    }
    if ((rc = compute(&c, vis)) != EXIT_OK) goto done;
    printf("Which keys each query sees (attn_sdpa, one sequence, one head):\n");
    printf("  Nq=%" PRId64 " Nkv=%" PRId64 " key_length=%" PRId64 " causal=%s", Nq, Nkv, c.L,
           causal_name(c.causal));
    printf(" window=%" PRId64 ",%" PRId64 " k_offset=%" PRId64 "%s\n", c.left, c.right, c.k_offset,
           c.sinks ? " sinks" : "");
    printf("  query i is at position q_offset + i = %" PRId64 " + i%s; key j at %" PRId64 " + j\n",
           qpos(&c, 0), c.q_offset_set ? "" : " (default alignment)", c.k_offset);
    printf("  '#' visible  '.' hidden  '@' visible at the query's own position  '-' padding"
           "%s\n\n",
           c.sinks ? "  'S' sink" : "");
    printf("%*s%s", 16, "", c.sinks ? "  " : "");
    for (int64_t j = 0; j < Nkv; j++)
        putchar(j % 10 == 0 ? '0' + (char)(j / 10 % 10) : ' ');
    printf("   key j (tens)\n%*s%s", 16, "", c.sinks ? "  " : "");
    for (int64_t j = 0; j < Nkv; j++)
        putchar('0' + (char)(j % 10));
    printf("   key j (units)\n");
    for (int64_t i = 0; i < Nq; i++) {
        const int64_t p = qpos(&c, i);
        int64_t seen = 0;
        printf("  q %3" PRId64 " @%6" PRId64 " %s", i, p, c.sinks ? "S " : "");
        for (int64_t j = 0; j < Nkv; j++) {
            const int here = p == c.k_offset + j;
            diag[i * Nkv + j] = (unsigned char)here;
            seen += vis[i * Nkv + j];
            putchar(j >= c.L ? '-' : !vis[i * Nkv + j] ? '.' : here ? '@' : '#');
        }
        printf("   %" PRId64 " key%s\n", seen, seen == 1 ? "" : "s");
    }
    if (c.png) {
        char err[512];
        picture pic = {0};
        if (picture_visibility(&pic, vis, diag, Nq, Nkv, c.L, c.sinks, err, sizeof err) != 0 ||
            picture_save_png(&pic, "--png", c.png, err, sizeof err) != 0)
            rc = cli_error(EXIT_OUTPUT, "explain", "%s", err);
        else
            printf("\nwrote %s\n", c.png);
        picture_free(&pic);
    }
done:
    free(vis);
    free(diag);
    return rc;
}
