/* membw: memory read bandwidth of this machine, the physical ceiling for
 * decode speed (each decoded token streams all weights + the KV cache).
 *
 * Streams a large buffer (default 1 GiB, well past any cache) with wide loads,
 * split evenly across T threads, for several passes, and prints the best pass
 * for each thread count as GB/s (10^9 bytes/s), then the overall best.
 *
 *   gcc -O3 -march=native -pthread bench/membw.c -o build/membw
 *   ./build/membw [MiB=1024] [passes=8] [max_threads=nproc]
 *
 * Last line of output is machine-readable: "best_GBps <value> threads <T>".
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

typedef struct {
    const uint8_t *p;
    size_t n;
    pthread_barrier_t *start, *stop;
    int passes;
    uint64_t sink;
} job_t;

static uint64_t read_range(const uint8_t *p, size_t n) {
#if defined(__AVX512F__)
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 256 <= n; i += 256) {
        a0 = _mm512_add_epi64(a0, _mm512_load_si512((const void *)(p + i)));
        a1 = _mm512_add_epi64(a1, _mm512_load_si512((const void *)(p + i + 64)));
        a2 = _mm512_add_epi64(a2, _mm512_load_si512((const void *)(p + i + 128)));
        a3 = _mm512_add_epi64(a3, _mm512_load_si512((const void *)(p + i + 192)));
    }
    a0 = _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3));
    uint64_t s = (uint64_t)_mm512_reduce_add_epi64(a0);
    for (; i < n; i++) s += p[i];
    return s;
#elif defined(__AVX2__)
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, a0);
    uint64_t s = t[0] + t[1] + t[2] + t[3];
    for (; i < n; i++) s += p[i];
    return s;
#else
    const uint64_t *q = (const uint64_t *)p;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t m = n / 8, i = 0;
    for (; i + 4 <= m; i += 4) { s0 += q[i]; s1 += q[i + 1]; s2 += q[i + 2]; s3 += q[i + 3]; }
    for (; i < m; i++) s0 += q[i];
    return s0 + s1 + s2 + s3;
#endif
}

static void *worker(void *arg) {
    job_t *j = arg;
    for (int k = 0; k < j->passes; k++) {
        pthread_barrier_wait(j->start);
        j->sink += read_range(j->p, j->n);
        pthread_barrier_wait(j->stop);
    }
    return NULL;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    int passes = argc > 2 ? atoi(argv[2]) : 8;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int maxt = argc > 3 ? atoi(argv[3]) : (int)(ncpu > 0 ? ncpu : 1);
    if (mib < 64 || passes < 1 || maxt < 1) {
        fprintf(stderr, "usage: %s [MiB>=64] [passes] [max_threads]\n", argv[0]);
        return 2;
    }
    size_t bytes = mib << 20;
    uint8_t *buf = aligned_alloc(4096, bytes);
    if (!buf) { perror("aligned_alloc"); return 1; }
    memset(buf, 1, bytes); /* fault every page in; nonzero so no zero-page tricks */

    double best_all = 0; int best_t = 1; uint64_t sink = 0;
    printf("buffer %zu MiB, %d passes per thread count\n", mib, passes);
    for (int t = 1; t <= maxt; t++) {
        pthread_barrier_t start, stop;
        pthread_barrier_init(&start, NULL, (unsigned)t + 1);
        pthread_barrier_init(&stop, NULL, (unsigned)t + 1);
        job_t *jobs = calloc((size_t)t, sizeof *jobs);
        pthread_t *th = calloc((size_t)t, sizeof *th);
        size_t chunk = (bytes / (size_t)t) & ~(size_t)4095;
        for (int i = 0; i < t; i++) {
            jobs[i] = (job_t){ buf + (size_t)i * chunk, i == t - 1 ? bytes - (size_t)i * chunk : chunk,
                               &start, &stop, passes, 0 };
            pthread_create(&th[i], NULL, worker, &jobs[i]);
        }
        double best = 0, sum = 0;
        for (int k = 0; k < passes; k++) {
            pthread_barrier_wait(&start);
            double t0 = now_s();
            pthread_barrier_wait(&stop);
            double gbps = (double)bytes / (now_s() - t0) / 1e9;
            sum += gbps;
            if (gbps > best) best = gbps;
        }
        for (int i = 0; i < t; i++) { pthread_join(th[i], NULL); sink += jobs[i].sink; }
        printf("threads %d: best %.2f GB/s, mean %.2f GB/s\n", t, best, sum / passes);
        if (best > best_all) { best_all = best; best_t = t; }
        pthread_barrier_destroy(&start);
        pthread_barrier_destroy(&stop);
        free(jobs); free(th);
    }
    fprintf(stderr, "(checksum %llu)\n", (unsigned long long)sink);
    printf("best_GBps %.2f threads %d\n", best_all, best_t);
    free(buf);
    return 0;
}
