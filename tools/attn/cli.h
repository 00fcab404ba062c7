/* cli.h - what the subcommands of the attn command share. Public API only. */
#ifndef ATTN_CLI_H
#define ATTN_CLI_H

#include "attn.h"

#include <stdint.h>
#include <stdio.h>

/* Exit codes, documented in `attn --help`. */
enum {
    EXIT_OK = 0,
    EXIT_COMPUTE = 1, /* the library refused or a check (demo) failed */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_INPUT = 3,   /* an input file is unreadable, malformed or has the wrong shape */
    EXIT_OUTPUT = 4,  /* an output file could not be written */
};

#define EXIT_CODES_HELP                                                                            \
    "Exit codes:\n"                                                                                \
    "  0  success\n"                                                                               \
    "  1  computation error: the library refused the inputs, or a check failed\n"                  \
    "  2  usage error: unknown option, missing or invalid argument\n"                              \
    "  3  input file error: unreadable, malformed, unsupported dtype, or arrays\n"                 \
    "     whose shapes do not fit the operation\n"                                                 \
    "  4  output file error: the result could not be written\n"

int cmd_demo(int argc, char **argv);
int cmd_explain(int argc, char **argv);
/* attn explain --visibility (cmd_visibility.c). */
int cmd_visibility(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);

/* Print "attn CMD: message" on stderr. @return code. */
int cli_error(int code, const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Option parsing. argv[*i] is the current word. If it is `name` (then the
 * value is argv[*i + 1]) or `name=VALUE`, store the value, advance *i past
 * it and return 1; a missing value returns -1; another word returns 0. */
int opt_value(int argc, char **argv, int *i, const char *name, const char **value);

/* Parse numbers strictly (the whole string, in range). @return 0 or -1. */
int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
int parse_f32(const char *s, float *out);
int parse_u64(const char *s, uint64_t *out);

/* "none" | "top_left" | "bottom_right" (Python's spelling; also "top-left",
 * "bottom-right", "tl", "br"). @return 0 or -1. */
int parse_causal(const char *s, attn_causal *out);

/* "LEFT,RIGHT", each -1 (unbounded) or 0..2^40. @return 0 or -1. */
int parse_window(const char *s, int64_t *left, int64_t *right);

/* A bare --causal (no rule after it) is causal where that is unambiguous:
 * with Nq == Nkv and no key lengths, top_left and bottom_right are the same
 * lower triangle j <= i; anywhere else it is a usage error asking for one of
 * them (the same rule as Python's causal=True). Stored as CLI_CAUSAL_BARE
 * until the shapes are known. */
#define CLI_CAUSAL_BARE ((attn_causal)99)
int cli_bare_causal(int argc, char **argv, int i);
/* Replace CLI_CAUSAL_BARE by the rule it means, or print the error and
 * return -1. */
int resolve_causal(attn_causal *c, int64_t Nq, int64_t Nkv, int key_lengths, const char *cmd);
const char *causal_name(attn_causal c);
/* "auto" | "reference" | "flash". */
int parse_algo(const char *s, attn_algo *out);
const char *algo_name(attn_algo a);

/* The number of online CPUs, what num_threads <= 0 means. */
int cli_default_threads(void);

/* Wall-clock seconds (monotonic). */
double now_seconds(void);

/* Deterministic generator (splitmix64) for generated data. */
typedef struct cli_rng {
    uint64_t s;
} cli_rng;
uint64_t rng_next(cli_rng *r);
/* Uniform in [-a, a). */
float rng_uniform(cli_rng *r, float a);

/* A scratch-memory tracker installed with attn_set_allocator: counts bytes
 * currently held and the peak since the last reset. */
void track_install(void);
void track_reset(void);
int64_t track_peak(void);
void track_uninstall(void);

/* Format a shape "(2, 3, 4)" into buf; @return buf. */
const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

/* max |a - b| and max |a| over n elements (contiguous); NaN propagates. */
double max_abs_diff(const float *a, const float *b, int64_t n);
double max_abs(const float *a, int64_t n);

/* Number of floating point operations of causal or full attention:
 * 2*B*H*Nq*Nkv*(d + dv) for NONE, about half for the causal forms (the
 * visible keys are counted exactly). */
double sdpa_flops(int64_t B, int64_t H, int64_t Nq, int64_t Nkv, int64_t d, int64_t dv,
                  attn_causal causal);

#endif /* ATTN_CLI_H */
