/* replay.c - the fuzz targets' saved inputs as an ordinary test.
 *
 * Runs every file of fuzz/regressions/<target>/ and fuzz/corpus/<target>/
 * through the same harness code libFuzzer runs (fuzz_api.c, fuzz_diff.c, fuzz_kv.c and,
 * built with -DREPLAY_NPY and the CLI's npy.c / zipread.c, fuzz_npy.c), with
 * any compiler and no fuzzing runtime: a crash fixed once stays fixed in
 * `make test`, and the sanitizer build checks the same inputs with ASan.
 *
 *   fuzz_replay [FUZZ_DIR]      (default: the directory of this source file)
 *
 * A harness check that fails aborts, naming the input file first. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>

#define LLVMFuzzerTestOneInput api_one
#define LLVMFuzzerInitialize   api_init
#include "fuzz_api.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize

#define LLVMFuzzerTestOneInput diff_one
#include "fuzz_diff.c"
#undef LLVMFuzzerTestOneInput

#define LLVMFuzzerTestOneInput kv_one
#define LLVMFuzzerInitialize   kv_init
#include "fuzz_kv.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize

#ifdef REPLAY_NPY
#define LLVMFuzzerTestOneInput npy_one
#include "fuzz_npy.c"
#undef LLVMFuzzerTestOneInput
#endif

typedef int (*one_fn)(const uint8_t *, size_t);

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of dir through fn. @return the number run. */
static int replay_dir(const char *dir, const char *target, one_fn fn) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof *names);
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, by_name);
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        if (f) {
            unsigned char *buf = NULL;
            size_t len = 0, got;
            unsigned char chunk[4096];
            while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
                buf = realloc(buf, len + got);
                memcpy(buf + len, chunk, got);
                len += got;
            }
            fclose(f);
            fprintf(stderr, "%s: %s\n", target, path); /* named before it can abort */
            fn(buf ? buf : (const unsigned char *)"", len);
            free(buf);
            ran++;
        }
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv) {
    char root[4096];
    if (argc > 1) {
        snprintf(root, sizeof root, "%s", argv[1]);
    } else {
        snprintf(root, sizeof root, "%s", __FILE__);
        char *slash = strrchr(root, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(root, sizeof root, ".");
    }
    api_init(NULL, NULL);
    struct {
        const char *name;
        one_fn fn;
    } targets[] = {
        {"fuzz_api", api_one},
        {"fuzz_diff", diff_one},
        {"fuzz_kv", kv_one},
#ifdef REPLAY_NPY
        {"fuzz_npy", npy_one},
#endif
    };
    int total = 0;
    for (size_t t = 0; t < sizeof targets / sizeof targets[0]; t++) {
        int reg = 0, seeds = 0;
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/regressions/%s", root, targets[t].name);
        reg = replay_dir(dir, targets[t].name, targets[t].fn);
        snprintf(dir, sizeof dir, "%s/corpus/%s", root, targets[t].name);
        seeds = replay_dir(dir, targets[t].name, targets[t].fn);
        printf("%s: %d regression inputs and %d corpus inputs replayed, all held\n",
               targets[t].name, reg, seeds);
        total += reg + seeds;
    }
    static const char *const calls[17] = {
        "softmax",          "sdpa",        "merge",         "linear",    "layer_norm",
        "split_qkv",        "mha (fused)", "mha (stacked)", "self_attn", "cross_attention",
        "helpers",          "split+sdpa",  "rope",          "rms_norm",  "gqa split/fused",
        "mha gqa+inv_freq", "fold"};
    printf("fuzz_api statuses per entry point (OK NULL SHAPE STRIDE OVERFLOW NOMEM ARG ISA):\n");
    for (int c = 0; c < 17; c++) {
        printf("  %-16s", calls[c]);
        for (int s = 0; s <= ATTN_ERR_ISA; s++)
            printf(" %6ld", api_hist[c][s]);
        printf("\n");
    }
    if (total == 0) {
        printf("no inputs found under %s\n", root);
        return 1;
    }
    return 0;
}
