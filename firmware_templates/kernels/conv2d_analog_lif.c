/*
 * First layer: conv2d on the analog image (CHW floats, BN folded into weight/bias), then
 * LIF. Direct encoding repeats the image at every step, so the input current of each
 * output neuron is computed once and drives all T steps.
 * conv->weight: [out_c][in_c][kernel][kernel] (PyTorch order). scratch: out_c floats.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_conv2d_analog_lif(const float *image, const svt_conv2d_t *conv, uint32_t T,
                           const svt_lif_t *lif, uint8_t *out_spikes, float *scratch)
{
    const uint32_t in_c = conv->in_c, in_h = conv->in_h, in_w = conv->in_w;
    const uint32_t out_c = conv->out_c, out_h = conv->out_h, out_w = conv->out_w;
    const uint32_t kernel = conv->kernel, stride = conv->stride, pad = conv->pad;
    const float *weight = conv->weight, *bias = conv->bias;
    memset(out_spikes, 0, (out_h * out_w * out_c * T + 7u) / 8u);
    for (uint32_t oy = 0; oy < out_h; ++oy) {
        for (uint32_t ox = 0; ox < out_w; ++ox) {
            for (uint32_t co = 0; co < out_c; ++co) {
                const float *w = weight + co * in_c * kernel * kernel;
                float acc = 0.0f;
                for (uint32_t ci = 0; ci < in_c; ++ci) {
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
                            acc += w[(ci * kernel + ky) * kernel + kx]
                                 * image[(ci * in_h + (uint32_t)iy) * in_w + (uint32_t)ix];
                        }
                    }
                }
                scratch[co] = acc + bias[co];
            }
            uint32_t first = (oy * out_w + ox) * out_c;
            for (uint32_t co = 0; co < out_c; ++co) {
                svt_spikes_or(out_spikes, first + co, T,
                              svt_lif_train_constant(scratch[co], T, lif));
            }
        }
    }
}
