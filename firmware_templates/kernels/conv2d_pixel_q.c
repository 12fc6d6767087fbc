/*
 * The integer sums of one output pixel of a conv2d fed by spikes (or counts), for all T
 * steps: acc[t * out_c + c]. Event-driven: per kernel tap, the in_c inputs of its input
 * pixel are contiguous in the trains, and only the active ones add their weight column (a
 * count of k adds it k times; events_q.c); no scale, no float. `--kernels dense` builds
 * conv2d_pixel_dense_q.c in its place.
 */
#include "svt_kernels.h"

void svt_conv2d_pixel_sums_q(const uint8_t *in, svt_format_t in_fmt,
                             const svt_conv2d_q_t *conv, uint32_t oy, uint32_t ox,
                             uint32_t T, int32_t *acc)
{
    const uint32_t in_c = conv->in_c, out_c = conv->out_c, k = conv->kernel;
    const uint32_t row = svt_row_bytes(out_c, conv->bits);
    svt_events_t ev;
    svt_events_begin(&ev, acc, out_c, conv->bits, T);
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
            svt_add_events_q(&ev, conv->weight + (ky * k + kx) * in_c * row, row, in, in_fmt,
                             pixel * in_c, in_c);
        }
    }
    svt_events_end(&ev);
}
