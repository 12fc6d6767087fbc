/*
 * First layer, integer: conv2d on the uint8 image (pixel minus the input's zero point,
 * times int8/int4 weights, into int32), then LIF. The pixel scale (1/255, over the
 * normalization's std) is folded into the layer's units, so no float is needed. The
 * image repeats at every step: one current per neuron drives all T steps.
 * conv->weight: rows of in_c * kernel * kernel weights, one per output channel (OIHW).
 */
#include <string.h>

#include "svt_kernels.h"

void svt_conv2d_analog_lif_q(const uint8_t *image, const svt_conv2d_q_t *conv, uint32_t T,
                             const svt_lif_q_t *lif, uint8_t *out_spikes)
{
    const uint32_t in_c = conv->in_c, in_h = conv->in_h, in_w = conv->in_w;
    const uint32_t out_c = conv->out_c, out_h = conv->out_h, out_w = conv->out_w;
    const uint32_t kernel = conv->kernel, stride = conv->stride, pad = conv->pad;
    const uint32_t row_len = in_c * kernel * kernel;
    const int32_t unit = (int32_t)(1u << conv->frac_bits);
    memset(out_spikes, 0, (out_h * out_w * out_c * T + 7u) / 8u);
    for (uint32_t oy = 0; oy < out_h; ++oy) {
        for (uint32_t ox = 0; ox < out_w; ++ox) {
            uint32_t first = (oy * out_w + ox) * out_c;
            for (uint32_t co = 0; co < out_c; ++co) {
                const uint8_t *row = conv->weight + co * svt_row_bytes(row_len, conv->bits);
                int32_t acc = 0;
                for (uint32_t ci = 0; ci < in_c; ++ci) {
                    for (uint32_t ky = 0; ky < kernel; ++ky) {
                        int32_t iy = (int32_t)(oy * stride + ky) - (int32_t)pad;
                        if (iy < 0 || iy >= (int32_t)in_h) {
                            continue;  /* zero padding: 0.0, i.e. no contribution */
                        }
                        for (uint32_t kx = 0; kx < kernel; ++kx) {
                            int32_t ix = (int32_t)(ox * stride + kx) - (int32_t)pad;
                            if (ix < 0 || ix >= (int32_t)in_w) {
                                continue;
                            }
                            int32_t pixel = (int32_t)image[(ci * in_h + (uint32_t)iy) * in_w
                                                           + (uint32_t)ix];
                            acc += svt_weight_q(row, (ci * kernel + ky) * kernel + kx,
                                                conv->bits)
                                 * (pixel - conv->input_zero_point);
                        }
                    }
                }
                int32_t current = acc * unit + conv->bias[co];
                svt_spikes_or(out_spikes, first + co, T,
                              svt_lif_train_q(&current, 0, T, lif->threshold[co],
                                              lif->decay_shift));
            }
        }
    }
}
