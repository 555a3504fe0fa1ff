// cuemu.h: CUDA's execution model on the CPU, so that g++ compiles the same kernels/*.cu that
// NVRTC compiles (the `emu` device). The build script (build/emu.rs) includes this header first
// in a wrapper file per kernel source; NVRTC never sees it. The runtime behind it is cuemu.cpp.
//
// Model: one OS thread runs one block at a time; every CUDA thread of the block is a fiber on
// that OS thread, so `__shared__` (= thread_local) is private to the block and the fibers of a
// block see the same copy; it starts as NaN bytes in every block (MTOSI_EMU_SHARED_FRESH).
// `__syncthreads()` and the warp collectives switch fibers. A cooperative launch runs every block
// at once, each on its own OS thread, and `mtosi_emu_grid_sync` (the emu side of
// `grid_barrier_sync` in kernels/common.cuh) holds a block until every block has arrived.
#pragma once

// System headers first: the macros below (`__noinline__`, `__device__` …) break libstdc++.
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <type_traits>
#include <utility>

// ---- qualifiers -------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __shared__ thread_local
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

// ---- built-in vector types and indices --------------------------------------------------------
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};
struct float2 {
    float x, y;
};
struct float4 {
    float x, y, z, w;
};
struct int2 {
    int x, y;
};
struct int4 {
    int x, y, z, w;
};
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }

// Variables, not macros: a kernel local named `blockDim` then shadows instead of breaking.
// The scheduler sets threadIdx before it resumes a fiber; the fiber re-reads it after any call.
#define MTOSI_EMU_TLS __thread
extern MTOSI_EMU_TLS uint3 threadIdx;
extern MTOSI_EMU_TLS uint3 blockIdx;
extern MTOSI_EMU_TLS uint3 blockDim;
extern MTOSI_EMU_TLS uint3 gridDim;
constexpr int warpSize = 32;

// The one dynamic shared memory array (a launch's shared_mem_bytes); kernels reach it through
// `dynamic_shared<T>()` of kernels/common.cuh. Capacity: CUDA's default limit, 48 KiB.
#define MTOSI_EMU_DYNAMIC_SHARED_BYTES 49152
extern MTOSI_EMU_TLS unsigned char mtosi_dynamic_shared[MTOSI_EMU_DYNAMIC_SHARED_BYTES]
    __attribute__((aligned(16)));

// ---- runtime entry points (cuemu.cpp) ---------------------------------------------------------
extern "C" {
void mtosi_emu_syncthreads(const char* file, int line);
void mtosi_emu_grid_sync(const char* file, int line);
int mtosi_emu_syncthreads_reduce(int op, int predicate, const char* file, int line);
uint64_t mtosi_emu_warp_collective(int op, unsigned mask, uint64_t value, int arg, int width,
                                   const char* file, int line);
[[noreturn]] void mtosi_emu_assert_fail(const char* expr, const char* file, int line);
void mtosi_emu_shared_fresh(void* variable, size_t bytes);
void mtosi_emu_register_file_shared(void* (*address)(), size_t bytes);
}

// build/shared_memory.rs puts this after every static `__shared__` declaration of the emu copy of a source:
// the first thread of a block to pass it fills the variable with NaN bytes, as uninitialised
// shared memory on a GPU (a thread_local would keep the previous block's values).
#define MTOSI_EMU_SHARED_FRESH(v) mtosi_emu_shared_fresh((void*)&(v), sizeof(v))
// The same for a `__shared__` variable at file scope, where no statement can run: a static
// registration, and the runtime fills every registered variable at the start of each block.
namespace mtosi_emu {
struct FileShared {
    FileShared(void* (*address)(), size_t bytes) { mtosi_emu_register_file_shared(address, bytes); }
};
}  // namespace mtosi_emu
#define MTOSI_EMU_FILE_SHARED(v) \
    static mtosi_emu::FileShared mtosi_emu_file_shared_##v([]() -> void* { return (void*)&(v); }, sizeof(v));

enum {
    MTOSI_EMU_SHFL_IDX,
    MTOSI_EMU_SHFL_UP,
    MTOSI_EMU_SHFL_DOWN,
    MTOSI_EMU_SHFL_XOR,
    MTOSI_EMU_BALLOT,
    MTOSI_EMU_ALL,
    MTOSI_EMU_ANY,
    MTOSI_EMU_SYNCWARP,
};
enum { MTOSI_EMU_SYNC_COUNT, MTOSI_EMU_SYNC_AND, MTOSI_EMU_SYNC_OR };

// Barriers record the call site so that misuse is reported as file:line.
#define __syncthreads() mtosi_emu_syncthreads(__FILE__, __LINE__)
#define __syncthreads_count(p) mtosi_emu_syncthreads_reduce(MTOSI_EMU_SYNC_COUNT, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_and(p) mtosi_emu_syncthreads_reduce(MTOSI_EMU_SYNC_AND, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_or(p) mtosi_emu_syncthreads_reduce(MTOSI_EMU_SYNC_OR, (p) != 0, __FILE__, __LINE__)

#undef assert
#define assert(e) ((e) ? (void)0 : mtosi_emu_assert_fail(#e, __FILE__, __LINE__))

namespace mtosi_emu {
template <typename T>
inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type over 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    return bits;
}
template <typename T>
inline T from_bits(uint64_t bits) {
    T v;
    memcpy(&v, &bits, sizeof(T));
    return v;
}
template <typename T>
inline T shuffle(int op, const char* file, int line, unsigned mask, T var, int arg, int width = 32) {
    return from_bits<T>(mtosi_emu_warp_collective(op, mask, to_bits(var), arg, width, file, line));
}
inline unsigned vote(int op, const char* file, int line, unsigned mask, int predicate) {
    return (unsigned)mtosi_emu_warp_collective(op, mask, predicate != 0, 0, 32, file, line);
}
struct SyncwarpAt {
    const char* file;
    int line;
    void operator()(unsigned mask = 0xffffffffu) const {
        mtosi_emu_warp_collective(MTOSI_EMU_SYNCWARP, mask, 0, 0, 32, file, line);
    }
};

// Calls a kernel with arguments given as CUDA's `void** kernelParams`: args[i] points at the
// value of parameter i. build/emu.rs generates one such entry per `extern "C" __global__` kernel.
template <typename... P, size_t... I>
inline void invoke_indexed(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::decay_t<P>*>(args[I])...);
}
template <typename... P>
inline void invoke(void (*kernel)(P...), void** args) {
    invoke_indexed(kernel, args, std::index_sequence_for<P...>{});
}
}  // namespace mtosi_emu

#define __shfl_sync(...) mtosi_emu::shuffle(MTOSI_EMU_SHFL_IDX, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) mtosi_emu::shuffle(MTOSI_EMU_SHFL_UP, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) mtosi_emu::shuffle(MTOSI_EMU_SHFL_DOWN, __FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) mtosi_emu::shuffle(MTOSI_EMU_SHFL_XOR, __FILE__, __LINE__, __VA_ARGS__)
#define __ballot_sync(mask, p) mtosi_emu::vote(MTOSI_EMU_BALLOT, __FILE__, __LINE__, mask, p)
#define __all_sync(mask, p) ((int)mtosi_emu::vote(MTOSI_EMU_ALL, __FILE__, __LINE__, mask, p))
#define __any_sync(mask, p) ((int)mtosi_emu::vote(MTOSI_EMU_ANY, __FILE__, __LINE__, mask, p))
// An object-like macro: `__syncwarp()` and `__syncwarp(mask)` both call SyncwarpAt's operator().
#define __syncwarp mtosi_emu::SyncwarpAt{__FILE__, __LINE__}

// ---- atomics: blocks run on several OS threads, so these are real atomics ---------------------
#define MTOSI_EMU_ATOMIC_INT(T)                                                                          \
    static inline T atomicAdd(T* p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }        \
    static inline T atomicSub(T* p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }        \
    static inline T atomicAnd(T* p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }        \
    static inline T atomicOr(T* p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }          \
    static inline T atomicXor(T* p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }        \
    static inline T atomicExch(T* p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }      \
    static inline T atomicCAS(T* p, T expected, T desired) {                                          \
        __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED); \
        return expected;                                                                               \
    }                                                                                                  \
    static inline T atomicMax(T* p, T v) {                                                            \
        T old = __atomic_load_n(p, __ATOMIC_RELAXED);                                                  \
        while (old < v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
        }                                                                                              \
        return old;                                                                                    \
    }                                                                                                  \
    static inline T atomicMin(T* p, T v) {                                                            \
        T old = __atomic_load_n(p, __ATOMIC_RELAXED);                                                  \
        while (old > v && !__atomic_compare_exchange_n(p, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) { \
        }                                                                                              \
        return old;                                                                                    \
    }
MTOSI_EMU_ATOMIC_INT(int)
MTOSI_EMU_ATOMIC_INT(unsigned int)
MTOSI_EMU_ATOMIC_INT(long long)
MTOSI_EMU_ATOMIC_INT(unsigned long long)
#undef MTOSI_EMU_ATOMIC_INT

#define MTOSI_EMU_ATOMIC_FLOAT(T, U)                                                                     \
    static inline T atomicAdd(T* p, T v) {                                                            \
        U* bits = reinterpret_cast<U*>(p);                                                             \
        U old = __atomic_load_n(bits, __ATOMIC_RELAXED);                                               \
        for (;;) {                                                                                     \
            T sum = mtosi_emu::from_bits<T>(old) + v;                                                 \
            U desired;                                                                                 \
            memcpy(&desired, &sum, sizeof(T));                                                         \
            if (__atomic_compare_exchange_n(bits, &old, desired, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) \
                return mtosi_emu::from_bits<T>(old);                                                   \
        }                                                                                              \
    }                                                                                                  \
    static inline T atomicExch(T* p, T v) {                                                           \
        U desired;                                                                                     \
        memcpy(&desired, &v, sizeof(T));                                                               \
        return mtosi_emu::from_bits<T>(__atomic_exchange_n(reinterpret_cast<U*>(p), desired, __ATOMIC_RELAXED)); \
    }
MTOSI_EMU_ATOMIC_FLOAT(float, uint32_t)
MTOSI_EMU_ATOMIC_FLOAT(double, uint64_t)
#undef MTOSI_EMU_ATOMIC_FLOAT

static inline unsigned int atomicInc(unsigned int* p, unsigned int limit) {
    unsigned int old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(p, &old, old >= limit ? 0u : old + 1u, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
    return old;
}
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---- math: CUDA's intrinsics mapped to the C library ------------------------------------------
// glibc declares a `__name` for every libm function, so these must be macros, not overloads.
#define __expf(x) expf(x)
#define __exp10f(x) exp10f(x)
#define __logf(x) logf(x)
#define __log2f(x) log2f(x)
#define __log10f(x) log10f(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanf(x) tanf(x)
#define __powf(x, y) powf(x, y)
#define __sincosf(x, s, c) sincosf(x, s, c)
#define __fdividef(x, y) ((x) / (y))
#define fdividef(x, y) ((x) / (y))
#define __fadd_rn(x, y) ((x) + (y))
#define __fsub_rn(x, y) ((x) - (y))
#define __fmul_rn(x, y) ((x) * (y))
#define __fdiv_rn(x, y) ((x) / (y))
#define __fmaf_rn(x, y, z) fmaf(x, y, z)
#define __frcp_rn(x) (1.0f / (x))
#define __fsqrt_rn(x) sqrtf(x)
#define __ldg(p) (*(p))
#define __ldcg(p) (*(p))
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline float __int_as_float(int i) { return mtosi_emu::from_bits<float>((uint32_t)i); }
static inline int __float_as_int(float f) { return (int)(uint32_t)mtosi_emu::to_bits(f); }
static inline float __uint_as_float(unsigned int i) { return mtosi_emu::from_bits<float>(i); }
static inline unsigned int __float_as_uint(float f) { return (uint32_t)mtosi_emu::to_bits(f); }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned int __brev(unsigned int x) {
    unsigned int r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
static inline int __mul24(int x, int y) { return x * y; }

// CUDA's min/max, including its mixed signed/unsigned overloads (which C++ lacks).
#define MTOSI_EMU_MINMAX(R, A, B)                                      \
    static inline R min(A a, B b) { return (R)a < (R)b ? (R)a : (R)b; } \
    static inline R max(A a, B b) { return (R)a > (R)b ? (R)a : (R)b; }
MTOSI_EMU_MINMAX(int, int, int)
MTOSI_EMU_MINMAX(unsigned int, unsigned int, unsigned int)
MTOSI_EMU_MINMAX(unsigned int, int, unsigned int)
MTOSI_EMU_MINMAX(unsigned int, unsigned int, int)
MTOSI_EMU_MINMAX(long long, long long, long long)
MTOSI_EMU_MINMAX(unsigned long long, unsigned long long, unsigned long long)
MTOSI_EMU_MINMAX(long, long, long)
MTOSI_EMU_MINMAX(unsigned long, unsigned long, unsigned long)
#undef MTOSI_EMU_MINMAX
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }
