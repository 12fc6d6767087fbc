/*
 * Integer conv2d fed by spikes (or counts), then LIF, one output pixel at a time (its
 * sums from conv2d_pixel_q.c). conv->weight: HWIO columns, one row per (ky, kx, in).
 * acc: T * out_c int32 of storage for the sums (int16 lanes or int32, svt_sums_t).
 */
#include <string.h>

#include "svt_kernels.h"

void svt_conv2d_spiking_lif_q(const uint8_t *in, svt_format_t in_fmt,
                              const svt_conv2d_q_t *conv, uint32_t T, const svt_lif_q_t *lif,
                              uint8_t *out_spikes, int32_t *acc)
{
    const uint32_t out_c = conv->out_c, out_h = conv->out_h, out_w = conv->out_w;
    memset(out_spikes, 0, (out_h * out_w * out_c * T + 7u) / 8u);
    for (uint32_t oy = 0; oy < out_h; ++oy) {
        for (uint32_t ox = 0; ox < out_w; ++ox) {
            svt_sums_t sums;
            svt_conv2d_pixel_sums_q(in, in_fmt, conv, oy, ox, T, acc, &sums);
            svt_sums_out_q(&sums, conv->bias, conv->frac_bits, (oy * out_w + ox) * out_c, T,
                           lif, out_spikes);
        }
    }
}
