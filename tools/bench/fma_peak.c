// The machine's per-core vector peak, for the GFLOP/s figures of BENCHMARKS.md: 12 independent
// chains of 512-bit float32 FMAs (32 flop each) and of AVX512-BF16 vdpbf16ps (64 flop each) on
// one thread. Run one copy per core (e.g. `./fma_peak & ./fma_peak`) for the 2-core figure.
//
//   gcc -O3 -march=native -o /tmp/fma_peak tools/bench/fma_peak.c && /tmp/fma_peak
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(i * 1e-3f);
    __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-4f);
    long n = 200000000;
    double t = now();
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    double dt = now() - t;
    float s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
    printf("float32 FMA (512-bit): %.1f GFLOP/s on one core (checksum %g)\n", n * 12 * 32 / dt / 1e9, s);
#ifdef __AVX512BF16__
    __m512bh bx = (__m512bh)_mm512_set1_epi16(0x3f80), by = (__m512bh)_mm512_set1_epi16(0x3800);
    n = 100000000;
    t = now();
    for (long k = 0; k < n; k++)
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], bx, by);
    dt = now() - t;
    s = 0;
    for (int i = 0; i < 12; i++) s += _mm512_reduce_add_ps(a[i]);
    printf("bf16 vdpbf16ps (512-bit): %.1f GFLOP/s on one core (checksum %g)\n", n * 12 * 64 / dt / 1e9, s);
#endif
    return 0;
}
