// common.cuh: the one header every kernels/*.cu includes (`#include "common.cuh"`). NVRTC gets it
// as a named header, g++ (the `emu` device) finds it beside the kernel. It must include nothing:
// NVRTC has no system headers.
#pragma once

#ifdef __CUDACC__
// The one dynamic shared memory array; the emu runtime defines the same name (cuemu.h).
extern __shared__ __align__(16) unsigned char mtosi_dynamic_shared[];
#endif

// Dynamic shared memory (the launch's `shared_mem_bytes`), typed:
// `float* tile = dynamic_shared<float>();`. Never declare `extern __shared__` yourself.
template <typename T>
__device__ __forceinline__ T* dynamic_shared() {
    return reinterpret_cast<T*>(mtosi_dynamic_shared);
}

#define MTOSI_FULL_MASK 0xffffffffu
// NVRTC has no <cfloat> or <cmath>: FLT_MAX and INFINITY spelled out.
#define MTOSI_FLT_MAX 3.402823466e+38f
__device__ __forceinline__ float mtosi_infinity() { return __int_as_float(0x7f800000); }

// Sum over the 32 lanes of a full warp; lane 0 gets the total.
__device__ __forceinline__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(MTOSI_FULL_MASK, value, offset);
    return value;
}
