/* main.c - the attn command: dispatch to subcommands, --help, --version. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "Usage: attn COMMAND [OPTIONS]\n"
    "Transformer attention on the CPU, from the command line.\n"
    "\n"
    "Commands:\n"
    "  demo      GPT-2-small causal multi-head self-attention on generated data:\n"
    "            every step's shape, reference vs fast path checked and timed\n"
    "  explain   print the shape flow and einsum of every step, without computing\n"
    "  run       run an operation on arrays from .npy/.npz files, write .npy\n"
    "  bench     benchmark table of standard shapes (fast vs reference path)\n"
    "  info      list the arrays in .npy/.npz files (shape, dtype, order)\n"
    "\n"
    "Options:\n"
    "  -h, --help     this text; `attn COMMAND --help` describes a command\n"
    "  -V, --version  version, instruction set in use, threads, build\n"
    "\n"
    "Environment:\n"
    "  ATTN_ISA=generic|avx2|avx512|auto   force the kernels' instruction set\n"
    "\n" EXIT_CODES_HELP;

static int print_version(void) {
    attn_isa isa = attn_get_isa();
    /* A tiny call tells whether the selection (ATTN_ISA) is usable. */
    float one = 1.0f, res = 0.0f;
    attn_view q = attn_view_4d(&one, 1, 1, 1, 1), o = attn_view_4d(&res, 1, 1, 1, 1);
    attn_opts opts = attn_opts_default();
    opts.num_threads = 1;
    if (attn_sdpa(&q, &q, &q, &o, &opts) != ATTN_OK) {
        printf("attn %s\n", attn_version());
        printf("isa: unusable: %s\n", attn_last_error());
        printf("build: %s\n", attn_build_info());
        return EXIT_COMPUTE;
    }
    printf("attn %s\n", attn_version());
    printf("isa: %s (supported:%s%s%s)\n", attn_isa_name(isa),
           attn_isa_supported(ATTN_ISA_GENERIC) ? " generic" : "",
           attn_isa_supported(ATTN_ISA_AVX2) ? " avx2" : "",
           attn_isa_supported(ATTN_ISA_AVX512) ? " avx512" : "");
    printf("threads: %d (default: online CPUs; --threads N per command)\n", cli_default_threads());
    printf("build: %s\n", attn_build_info());
    return EXIT_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0)
        return print_version();
    if (strcmp(cmd, "demo") == 0) return cmd_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "explain") == 0) return cmd_explain(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) return cmd_bench(argc - 1, argv + 1);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 1, argv + 1);
    fprintf(stderr, "attn: unknown command '%s' (try attn --help)\n", cmd);
    return EXIT_USAGE;
}
