// adam: one torch.optim.Adam step over a whole parameter arena in one launch, one thread per
// parameter. The per-step factors (bias corrections, the scheduler's learning rate) are computed
// on the host in f64 exactly as the CPU does (src/train/adam.rs) and passed as floats; the
// per-element float32 operations are the CPU's, fused where it fuses, so results agree bit for
// bit wherever sqrtf and the division are IEEE-rounded (NVRTC's default).
#include "common.cuh"

extern "C" __global__ void adam_update(int n, float lerp_weight, float beta2, float sq_weight,
                                       float bias_correction2_sqrt, float eps, float neg_step_size,
                                       float* __restrict__ params, const float* __restrict__ grads,
                                       float* __restrict__ exp_avg, float* __restrict__ exp_avg_sq) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float g = grads[i];
        float m = exp_avg[i];
        // exp_avg.lerp_(grad, 1 - beta1)
        m = fmaf(lerp_weight, g - m, m);
        // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        float scaled = exp_avg_sq[i] * beta2;
        float v = fmaf(sq_weight * g, g, scaled);
        // denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps
        float root = sqrtf(v);
        float denom = root / bias_correction2_sqrt + eps;
        // param.addcdiv_(exp_avg, denom, value=-step_size)
        float step = neg_step_size * m;
        params[i] += step / denom;
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
    }
}
