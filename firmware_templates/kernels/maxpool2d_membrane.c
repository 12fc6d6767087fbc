/*
 * Max-pool of membrane floats ([neuron][t], HWC), as a max-pool on BatchNorm outputs in the
 * Spike-driven Transformer's stem. Padding never wins a max (PyTorch pads with -inf).
 */
#include "svt_kernels.h"

void svt_maxpool2d_membrane(const float *in, const svt_pool_t *pool, uint32_t T, float *out)
{
    const uint32_t channels = pool->channels, in_h = pool->in_h, in_w = pool->in_w;
    const uint32_t kernel = pool->kernel, stride = pool->stride, pad = pool->pad;
    const uint32_t out_h = pool->out_h, out_w = pool->out_w;
    for (uint32_t oy = 0; oy < out_h; ++oy) {
        for (uint32_t ox = 0; ox < out_w; ++ox) {
            float *dst = out + (oy * out_w + ox) * channels * T;
            uint32_t first = 1u;
            for (uint32_t ky = 0; ky < kernel; ++ky) {
                int32_t iy = (int32_t)(oy * stride + ky) - (int32_t)pad;
                if (iy < 0 || iy >= (int32_t)in_h) {
                    continue;
                }
                for (uint32_t kx = 0; kx < kernel; ++kx) {
                    int32_t ix = (int32_t)(ox * stride + kx) - (int32_t)pad;
                    if (ix < 0 || ix >= (int32_t)in_w) {
                        continue;
                    }
                    const float *src = in + ((uint32_t)iy * in_w + (uint32_t)ix) * channels * T;
                    for (uint32_t j = 0; j < channels * T; ++j) {
                        if (first || src[j] > dst[j]) {
                            dst[j] = src[j];
                        }
                    }
                    first = 0u;
                }
            }
        }
    }
}
