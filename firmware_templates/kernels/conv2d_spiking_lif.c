/*
 * Conv2d fed by spikes (or spike counts), then LIF. Accumulate only: for every active
 * input (pixel, channel, step) the weight column of that input is added to the step's
 * output currents; a count of k adds it k times. No float multiplications.
 * weight_hwio: [kernel][kernel][in_c][out_c], so one input's column is contiguous.
 * scratch: T * out_c floats (the currents of one output pixel).
 * lif == NULL: no LIF; the currents are kept as membrane floats [neuron][t] in out_spikes
 * (cast), for layers whose output feeds a residual stream or a max-pool.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_conv2d_spiking_lif(const uint8_t *in, svt_format_t in_fmt, uint32_t in_c,
                            uint32_t in_h, uint32_t in_w, const float *weight_hwio,
                            const float *bias, uint32_t out_c, uint32_t kernel,
                            uint32_t stride, uint32_t pad, uint32_t out_h, uint32_t out_w,
                            uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes,
                            float *scratch)
{
    if (lif != NULL) {
        memset(out_spikes, 0, (out_h * out_w * out_c * T + 7u) / 8u);
    }
    for (uint32_t oy = 0; oy < out_h; ++oy) {
        for (uint32_t ox = 0; ox < out_w; ++ox) {
            for (uint32_t t = 0; t < T; ++t) {
                memcpy(scratch + t * out_c, bias, out_c * sizeof(float));
            }
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
                    uint32_t pixel = (uint32_t)iy * in_w + (uint32_t)ix;
                    const float *columns = weight_hwio + (ky * kernel + kx) * in_c * out_c;
                    for (uint32_t ci = 0; ci < in_c; ++ci) {
                        const float *column = columns + ci * out_c;
                        uint32_t neuron = pixel * in_c + ci;
                        if (in_fmt == SVT_SPIKES) {
                            uint32_t train = svt_spikes_get(in, neuron, T);
                            for (uint32_t t = 0; train != 0u; ++t, train >>= 1) {
                                if (train & 1u) {
                                    svt_accumulate(scratch + t * out_c, column, out_c);
                                }
                            }
                        } else {
                            for (uint32_t t = 0; t < T; ++t) {
                                for (uint32_t k = in[neuron * T + t]; k > 0u; --k) {
                                    svt_accumulate(scratch + t * out_c, column, out_c);
                                }
                            }
                        }
                    }
                }
            }
            svt_currents_out(scratch, (oy * out_w + ox) * out_c, out_c, T, lif, out_spikes);
        }
    }
}
