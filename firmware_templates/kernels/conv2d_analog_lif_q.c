/*
 * First layer, integer: conv2d on the uint8 image (pixel minus the input's zero point,
 * times int8/int4 weights, into int32), then LIF. The pixel scale (1/255, over the
 * normalization's std) is folded into the layer's units, so no float is needed. The
 * image repeats at every step: one current per neuron drives all T steps.
 * conv->weight: rows of in_c * kernel * kernel weights, one per output channel (OIHW).
 * Per output pixel, its window (zero-point removed, zeros for the padding) is gathered
 * once into `patch` (in_c * kernel^2 int32), then every output channel is one dot product.
 */
#include <string.h>

#include "svt_kernels.h"

static void gather_patch(const uint8_t *image, const svt_conv2d_q_t *conv, uint32_t oy,
                         uint32_t ox, int32_t *patch)
{
    const uint32_t k = conv->kernel;
    for (uint32_t ci = 0; ci < conv->in_c; ++ci) {
        for (uint32_t ky = 0; ky < k; ++ky) {
            int32_t iy = (int32_t)(oy * conv->stride + ky) - (int32_t)conv->pad;
            for (uint32_t kx = 0; kx < k; ++kx, ++patch) {
                int32_t ix = (int32_t)(ox * conv->stride + kx) - (int32_t)conv->pad;
                int inside = iy >= 0 && iy < (int32_t)conv->in_h && ix >= 0
                             && ix < (int32_t)conv->in_w;
                /* zero padding is 0.0, i.e. no contribution */
                *patch = inside ? (int32_t)image[(ci * conv->in_h + (uint32_t)iy) * conv->in_w
                                                 + (uint32_t)ix] - conv->input_zero_point
                                : 0;
            }
        }
    }
}

static inline int32_t dot(const uint8_t *row, const int32_t *patch, uint32_t n, uint32_t bits)
{
    int32_t acc = 0;
    if (bits == 8u) {
        const int8_t *w = (const int8_t *)(const void *)row;
        SVT_UNROLL_STEPS /* a 3x3 window of one channel is 9 products: no loop left */
        for (uint32_t j = 0; j < n; ++j) {
            acc += (int32_t)w[j] * patch[j];
        }
        return acc;
    }
    for (uint32_t j = 0; j < n; ++j) {
        acc += svt_weight_q(row, j, 4u) * patch[j];
    }
    return acc;
}

void svt_conv2d_analog_lif_q(const uint8_t *image, const svt_conv2d_q_t *conv, uint32_t T,
                             const svt_lif_q_t *lif, uint8_t *out_spikes, int32_t *patch)
{
    const uint32_t out_c = conv->out_c, out_h = conv->out_h, out_w = conv->out_w;
    const uint32_t row_len = conv->in_c * conv->kernel * conv->kernel;
    const uint32_t row_bytes = svt_row_bytes(row_len, conv->bits);
    const int32_t unit = (int32_t)(1u << conv->frac_bits);
    const int32_t *bias = conv->bias, *threshold = lif->threshold;
    const uint8_t *weight = conv->weight;
    const uint32_t bits = conv->bits, decay_shift = lif->decay_shift;
    T = SVT_STEPS(T);
    memset(out_spikes, 0, (out_h * out_w * out_c * T + 7u) / 8u);
    for (uint32_t oy = 0; oy < out_h; ++oy) {
        for (uint32_t ox = 0; ox < out_w; ++ox) {
            svt_train_packer_t trains = {out_spikes, (oy * out_w + ox) * out_c * T, 0, 0};
            gather_patch(image, conv, oy, ox, patch);
            for (uint32_t co = 0; co < out_c; ++co) {
                int32_t current = dot(weight + co * row_bytes, patch, row_len, bits) * unit
                                  + bias[co];
                svt_pack_trains(&trains, svt_neuron_train_q(&current, 1, 0, 1, 0, threshold[co],
                                                            decay_shift, T),
                                T);
            }
            svt_pack_flush(&trains);
        }
    }
}
