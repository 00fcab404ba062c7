/* test_threads.c - concurrency and thread-count determinism.
 *
 * 1. Many pthreads call attn_sdpa (reference and flash, prefill and decode
 *    shapes) and attn_mha at once, each on its own data, several rounds;
 *    every result must equal, bit for bit, the one computed serially first
 *    with the same options. Each thread also makes a failing call whose
 *    message names its own sizes, and checks attn_last_error() is its own.
 * 2. attn_sdpa's result is bit-identical for num_threads 1, 2, 3 and 5, for
 *    both algorithms, every supported ISA, prefill and decode shapes.
 * 3. A row computed alone equals the same row inside a batch (flash).
 *
 * Run under ThreadSanitizer by `make test-tsan` (clang, OpenMP off).
 * ATTN_TEST_QUICK=1 shrinks the sizes and rounds. */
#define _POSIX_C_SOURCE 200809L
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>

static int quick = 0;

/* ---- one job: a problem, its serial answer, and a scratch output -------- */

typedef struct {
    int kind; /* 0: sdpa, 1: mha */
    attn_algo algo;
    int threads; /* num_threads of each call */
    int64_t B, H, Hkv, Nq, Nkv, d;
    attn_causal causal;
    float *q, *k, *v;            /* sdpa inputs */
    float *x, *Wqkv, *bqkv, *Wo; /* mha inputs: x (B, Nq, D), D = H*d */
    float *want, *got;
    int64_t n_out;
    int rounds, mismatches, errors, msg_wrong;
} job;

static attn_status job_run(job *J, float *out) {
    attn_opts o = attn_opts_default();
    o.algo = J->algo;
    o.causal = J->causal;
    o.num_threads = J->threads;
    if (J->kind == 0) {
        attn_view q = attn_view_4d(J->q, J->B, J->H, J->Nq, J->d);
        attn_view k = attn_view_4d(J->k, J->B, J->Hkv, J->Nkv, J->d);
        attn_view v = attn_view_4d(J->v, J->B, J->Hkv, J->Nkv, J->d);
        attn_view ov = attn_view_4d(out, J->B, J->H, J->Nq, J->d);
        return attn_sdpa(&q, &k, &v, &ov, &o);
    }
    const int64_t D = J->H * J->d;
    attn_view W = attn_view_2d(J->Wqkv, D, 3 * D), b = attn_view_1d(J->bqkv, 3 * D);
    attn_view Wo = attn_view_2d(J->Wo, D, D);
    attn_mha_params p;
    attn_status s = attn_mha_from_fused(&W, &b, J->H, &Wo, NULL, &p);
    if (s) return s;
    attn_view x = attn_view_3d(J->x, J->B, J->Nq, D), ov = attn_view_3d(out, J->B, J->Nq, D);
    return attn_mha(&p, &x, NULL, &ov, &o);
}

static void job_make(job *J, int kind, attn_algo algo, int threads, int64_t B, int64_t H,
                     int64_t Hkv, int64_t Nq, int64_t Nkv, int64_t d, attn_causal causal) {
    memset(J, 0, sizeof *J);
    J->kind = kind;
    J->algo = algo;
    J->threads = threads;
    J->B = B, J->H = H, J->Hkv = Hkv, J->Nq = Nq, J->Nkv = Nkv, J->d = d;
    J->causal = causal;
    if (kind == 0) {
        J->q = tu_rand(B * H * Nq * d, -1, 1);
        J->k = tu_rand(B * Hkv * Nkv * d, -1, 1);
        J->v = tu_rand(B * Hkv * Nkv * d, -1, 1);
        J->n_out = B * H * Nq * d;
    } else {
        const int64_t D = H * d;
        J->x = tu_rand(B * Nq * D, -1, 1);
        J->Wqkv = tu_rand(D * 3 * D, -0.3f, 0.3f);
        J->bqkv = tu_rand(3 * D, -0.1f, 0.1f);
        J->Wo = tu_rand(D * D, -0.3f, 0.3f);
        J->n_out = B * Nq * D;
    }
    J->want = tu_zeros(J->n_out);
    J->got = tu_zeros(J->n_out);
    CHECK_OK(job_run(J, J->want));
}

static void job_free(job *J) {
    free(J->q), free(J->k), free(J->v), free(J->x), free(J->Wqkv), free(J->bqkv), free(J->Wo);
    free(J->want), free(J->got);
}

static void *worker(void *arg) {
    job *J = arg;
    for (int r = 0; r < J->rounds; r++) {
        memset(J->got, 0, (size_t)J->n_out * sizeof(float));
        if (job_run(J, J->got) != ATTN_OK) {
            J->errors++;
            continue;
        }
        if (memcmp(J->got, J->want, (size_t)J->n_out * sizeof(float)) != 0) J->mismatches++;
        /* A failing call: the message must name this job's own size. */
        attn_view q = attn_view_4d(J->got, 1, 1, 1, J->d);
        attn_view k = attn_view_4d(J->got, 1, 1, 1, J->d + 1);
        attn_view o = attn_view_4d(J->got + J->d + 1, 1, 1, 1, J->d);
        char want[96];
        snprintf(want, sizeof want, "k.shape[3]=%lld but q.shape[3]=%lld", (long long)(J->d + 1),
                 (long long)J->d);
        if (attn_sdpa(&q, &k, &k, &o, NULL) != ATTN_ERR_SHAPE ||
            strstr(attn_last_error(), want) == NULL)
            J->msg_wrong++;
    }
    return NULL;
}

static void concurrent_callers(void) {
    enum { NJ = 12 };
    job jobs[NJ];
    const int64_t n = quick ? 40 : 120;
    for (int t = 0; t < NJ; t++) {
        const attn_algo algo = (t % 3 == 0) ? ATTN_ALGO_REFERENCE : ATTN_ALGO_FLASH;
        const int64_t d = 8 + 4 * t; /* distinct head sizes: distinct messages */
        if (t % 4 == 3)
            job_make(&jobs[t], 1, algo, 1 + t % 2, 2, 2, 2, n / 2 + t, n / 2 + t, d,
                     ATTN_CAUSAL_TOP_LEFT);
        else if (t % 4 == 2) /* decode: split over threads when threads > 1 */
            job_make(&jobs[t], 0, algo, 1 + t % 2, 1, 4, 1, 1, quick ? 1500 : 5000, d,
                     ATTN_CAUSAL_NONE);
        else
            job_make(&jobs[t], 0, algo, 1 + t % 2, 2, 4, 2, n + t, n + 2 * t, d,
                     t % 2 ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE);
        jobs[t].rounds = quick ? 3 : 20;
    }
    pthread_t th[NJ];
    for (int t = 0; t < NJ; t++)
        CHECK(pthread_create(&th[t], NULL, worker, &jobs[t]) == 0, "pthread_create %d", t);
    for (int t = 0; t < NJ; t++)
        pthread_join(th[t], NULL);
    int calls = 0;
    for (int t = 0; t < NJ; t++) {
        CHECK(jobs[t].errors == 0, "thread %d: %d calls failed", t, jobs[t].errors);
        CHECK(jobs[t].mismatches == 0,
              "thread %d (%s, %s, %d thr): %d of %d results differ "
              "from the serial one",
              t, jobs[t].kind ? "mha" : "sdpa",
              jobs[t].algo == ATTN_ALGO_FLASH ? "flash" : "reference", jobs[t].threads,
              jobs[t].mismatches, jobs[t].rounds);
        CHECK(jobs[t].msg_wrong == 0, "thread %d: %d error messages were not its own", t,
              jobs[t].msg_wrong);
        calls += jobs[t].rounds;
        job_free(&jobs[t]);
    }
    printf("  %d pthreads x %d rounds (%d calls + %d failing calls) at once: results equal "
           "the serial ones\n",
           NJ, jobs[0].rounds, calls, calls);
}

/* ---- bit-identical results for any thread count ------------------------- */

static void thread_counts(void) {
    static const int counts[4] = {1, 2, 3, 5};
    /* {B, H, Hkv, Nq, Nkv, d, causal} */
    const int64_t big = quick ? 700 : 2100;
    const int64_t shapes[4][7] = {
        {2, 4, 2, 130, 200, 32, ATTN_CAUSAL_NONE},
        {1, 2, 1, 300, 300, 24, ATTN_CAUSAL_TOP_LEFT},
        {1, 8, 2, 1, big, 64, ATTN_CAUSAL_NONE},         /* decode, split path */
        {3, 2, 2, 2, big, 16, ATTN_CAUSAL_BOTTOM_RIGHT}, /* chunked prefill */
    };
    const attn_isa isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2, ATTN_ISA_AVX512};
    int compared = 0;
    for (int a = 0; a < 3; a++) {
        if (!attn_isa_supported(isas[a])) continue;
        CHECK_OK(attn_set_isa(isas[a]));
        for (int s = 0; s < 4; s++)
            for (int g = 1; g <= 2; g++) {
                const int64_t *S = shapes[s];
                job J;
                job_make(&J, 0, (attn_algo)g, counts[0], S[0], S[1], S[2], S[3], S[4], S[5],
                         (attn_causal)S[6]);
                for (int c = 1; c < 4; c++) {
                    J.threads = counts[c];
                    CHECK_OK(job_run(&J, J.got));
                    CHECK(memcmp(J.got, J.want, (size_t)J.n_out * sizeof(float)) == 0,
                          "%s, %s, shape %d: %d threads differ from 1 (max diff %g)",
                          attn_isa_name(isas[a]), g == 2 ? "flash" : "reference", s, counts[c],
                          tu_maxdiff(J.got, J.want, J.n_out));
                    compared++;
                }
                job_free(&J);
            }
    }
    CHECK_OK(attn_set_isa(ATTN_ISA_AUTO));
    printf("  num_threads 2, 3, 5 vs 1: %d comparisons, bit for bit\n", compared);
}

/* ---- a row alone equals the row in a batch ------------------------------ */

static void row_alone(void) {
    job J;
    job_make(&J, 0, ATTN_ALGO_FLASH, 2, 2, 4, 2, 90, 700, 16, ATTN_CAUSAL_NONE);
    const int64_t d = J.d;
    float out[16];
    int bad = 0, rows = 0;
    for (int64_t b = 0; b < J.B; b++)
        for (int64_t h = 0; h < J.H; h++)
            for (int64_t i = 0; i < J.Nq; i += 11) {
                const int64_t g = h / (J.H / J.Hkv);
                attn_view q = attn_view_4d(J.q + ((b * J.H + h) * J.Nq + i) * d, 1, 1, 1, d);
                attn_view k = attn_view_4d(J.k + (b * J.Hkv + g) * J.Nkv * d, 1, 1, J.Nkv, d);
                attn_view v = attn_view_4d(J.v + (b * J.Hkv + g) * J.Nkv * d, 1, 1, J.Nkv, d);
                attn_view o = attn_view_4d(out, 1, 1, 1, d);
                attn_opts op = attn_opts_default();
                op.algo = ATTN_ALGO_FLASH;
                op.num_threads = 1 + (int)(i % 3);
                CHECK_OK(attn_sdpa(&q, &k, &v, &o, &op));
                bad += memcmp(out, J.want + ((b * J.H + h) * J.Nq + i) * d, sizeof(float) * d) != 0;
                rows++;
            }
    CHECK(bad == 0, "%d of %d rows computed alone differ from the batch", bad, rows);
    printf("  %d rows computed alone (decode path) equal the batch (prefill path)\n", rows);
    job_free(&J);
}

int main(void) {
    const char *qenv = getenv("ATTN_TEST_QUICK");
    quick = qenv && *qenv && strcmp(qenv, "0") != 0;
    concurrent_callers();
    thread_counts();
    row_alone();
    return tu_summary("test_threads");
}
