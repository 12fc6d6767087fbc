/*
 * Conv2d fed by spikes (or spike counts), then LIF, streaming one output pixel at a time
 * (its currents from conv2d_pixel.c).
 * conv->weight: HWIO [kernel][kernel][in_c][out_c], so one input's column is contiguous.
 * scratch: T * out_c floats (the currents of one output pixel).
 * lif == NULL: no LIF; the currents are kept as membrane floats [neuron][t] in out_spikes
 * (cast), for layers whose output feeds a residual stream.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_conv2d_spiking_lif(const uint8_t *in, svt_format_t in_fmt, const svt_conv2d_t *conv,
                            uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes,
                            float *scratch)
{
    const uint32_t out_c = conv->out_c, out_h = conv->out_h, out_w = conv->out_w;
    if (lif != NULL) {
        memset(out_spikes, 0, (out_h * out_w * out_c * T + 7u) / 8u);
    }
    for (uint32_t oy = 0; oy < out_h; ++oy) {
        for (uint32_t ox = 0; ox < out_w; ++ox) {
            svt_conv2d_pixel_currents(in, in_fmt, conv, oy, ox, T, scratch);
            svt_currents_out(scratch, (oy * out_w + ox) * out_c, out_c, T, lif, out_spikes);
        }
    }
}
