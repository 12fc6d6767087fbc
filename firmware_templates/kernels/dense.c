/*
 * Classifier head on float features: out = W x + b. The only layer with float
 * multiplications besides the first (analog) convolution.
 * weight_oi: [out_c][in_c] (PyTorch order).
 */
#include "svt_kernels.h"

void svt_dense(const float *in, uint32_t in_c, const float *weight_oi, const float *bias,
               uint32_t out_c, float *out)
{
    for (uint32_t o = 0; o < out_c; ++o) {
        const float *row = weight_oi + o * in_c;
        float acc = 0.0f;
        for (uint32_t c = 0; c < in_c; ++c) {
            acc += row[c] * in[c];
        }
        out[o] = acc + bias[o];
    }
}
