/*
 * The input currents of one output pixel of a conv2d fed by spikes (or spike counts), for
 * all T steps: scratch[t * out_c + c]. Accumulate only: for every active input (pixel,
 * channel, step) the weight column of that input is added to the step's currents; a count
 * of k adds it k times. No float multiplications. Shared by the conv kernels that differ
 * only in what they do with a pixel's currents.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_conv2d_pixel_currents(const uint8_t *in, svt_format_t in_fmt,
                               const svt_conv2d_t *conv, uint32_t oy, uint32_t ox,
                               uint32_t T, float *scratch)
{
    const uint32_t in_c = conv->in_c, out_c = conv->out_c, k = conv->kernel;
    for (uint32_t t = 0; t < T; ++t) {
        memcpy(scratch + t * out_c, conv->bias, out_c * sizeof(float));
    }
    for (uint32_t ky = 0; ky < k; ++ky) {
        int32_t iy = (int32_t)(oy * conv->stride + ky) - (int32_t)conv->pad;
        if (iy < 0 || iy >= (int32_t)conv->in_h) {
            continue;
        }
        for (uint32_t kx = 0; kx < k; ++kx) {
            int32_t ix = (int32_t)(ox * conv->stride + kx) - (int32_t)conv->pad;
            if (ix < 0 || ix >= (int32_t)conv->in_w) {
                continue;
            }
            uint32_t pixel = (uint32_t)iy * conv->in_w + (uint32_t)ix;
            const float *columns = conv->weight + (ky * k + kx) * in_c * out_c;
            for (uint32_t ci = 0; ci < in_c; ++ci) {
                svt_accumulate_input(scratch, columns + ci * out_c, out_c, in, in_fmt,
                                     pixel * in_c + ci, T);
            }
        }
    }
}
