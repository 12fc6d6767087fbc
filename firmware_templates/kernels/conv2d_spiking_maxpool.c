/*
 * Conv2d fed by spikes, then a max-pool of its currents, fused: the Spike-driven
 * Transformer's stem pools BatchNorm outputs, and pooling each conv output pixel into the
 * windows that contain it as soon as it is computed means the conv's full-resolution
 * currents (T floats per neuron) never exist: only the pooled membrane does.
 * out: pooled membrane floats [pooled neuron][t]. scratch: T * out_c floats.
 * Padding never wins a max (PyTorch pads with -inf): every window holds a real pixel.
 */
#include <float.h>

#include "svt_kernels.h"

/* First pooled row/column whose window, pool->kernel wide at pool->stride, covers i. */
static uint32_t first_window(uint32_t i, const svt_pool_t *pool)
{
    int32_t reach = (int32_t)i + (int32_t)pool->pad - (int32_t)pool->kernel + 1;
    if (reach <= 0) {
        return 0u;
    }
    return ((uint32_t)reach + pool->stride - 1u) / pool->stride;
}

void svt_conv2d_spiking_maxpool(const uint8_t *in, svt_format_t in_fmt,
                                const svt_conv2d_t *conv, const svt_pool_t *pool, uint32_t T,
                                float *out, float *scratch)
{
    const uint32_t out_c = conv->out_c, conv_h = conv->out_h, conv_w = conv->out_w;
    for (uint32_t i = 0; i < pool->out_h * pool->out_w * out_c * T; ++i) {
        out[i] = -FLT_MAX;
    }
    for (uint32_t oy = 0; oy < conv_h; ++oy) {
        for (uint32_t ox = 0; ox < conv_w; ++ox) {
            svt_conv2d_pixel_currents(in, in_fmt, conv, oy, ox, T, scratch);
            for (uint32_t py = first_window(oy, pool);
                 py < pool->out_h && py * pool->stride <= oy + pool->pad; ++py) {
                for (uint32_t px = first_window(ox, pool);
                     px < pool->out_w && px * pool->stride <= ox + pool->pad; ++px) {
                    float *dst = out + (py * pool->out_w + px) * out_c * T;
                    for (uint32_t c = 0; c < out_c; ++c) {
                        for (uint32_t t = 0; t < T; ++t) {
                            float v = scratch[t * out_c + c];
                            if (v > dst[c * T + t]) {
                                dst[c * T + t] = v;
                            }
                        }
                    }
                }
            }
        }
    }
}
