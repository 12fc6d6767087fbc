/*
 * The integer sums of one output pixel of a conv2d fed by spikes (or counts), for all T
 * steps. Event-driven: per kernel row, the inputs of its taps inside the image are
 * contiguous in the trains, and only the active ones add their weight column (a
 * count of k adds it k times; events_q.c); no scale, no float. `--kernels dense` builds
 * conv2d_pixel_dense_q.c in its place.
 */
#include "svt_kernels.h"

void svt_conv2d_pixel_sums_q(const uint8_t *in, svt_format_t in_fmt,
                             const svt_conv2d_q_t *conv, uint32_t oy, uint32_t ox,
                             uint32_t T, int32_t *storage, svt_sums_t *sums)
{
    const uint32_t in_c = conv->in_c, out_c = conv->out_c, k = conv->kernel;
    const uint32_t row = svt_row_bytes(out_c, conv->bits);
    svt_events_t ev;
    svt_events_begin(&ev, sums, storage, out_c, conv->bits, T);
    /* the taps of one kernel row that fall inside the image are consecutive input pixels,
     * whose in_c inputs are consecutive too, and so are their weight rows: one scan */
    int32_t ix0 = (int32_t)(ox * conv->stride) - (int32_t)conv->pad;
    uint32_t kx0 = ix0 < 0 ? (uint32_t)-ix0 : 0u;
    int32_t end = ix0 + (int32_t)k;
    uint32_t kx1 = end > (int32_t)conv->in_w ? k - (uint32_t)(end - (int32_t)conv->in_w) : k;
    for (uint32_t ky = 0; ky < k && kx0 < kx1; ++ky) {
        int32_t iy = (int32_t)(oy * conv->stride + ky) - (int32_t)conv->pad;
        if (iy < 0 || iy >= (int32_t)conv->in_h) {
            continue;
        }
        uint32_t pixel = (uint32_t)iy * conv->in_w + (uint32_t)(ix0 + (int32_t)kx0);
        svt_add_events_q(&ev, conv->weight + (ky * k + kx0) * in_c * row, row, in, in_fmt,
                         pixel * in_c, (kx1 - kx0) * in_c);
    }
    svt_events_end(&ev);
}
