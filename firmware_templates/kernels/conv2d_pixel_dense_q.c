/*
 * The integer sums of one output pixel of a conv2d fed by spikes (or counts), for all T
 * steps: acc[t * out_c + c]. The dense baseline of conv2d_pixel_q.c (`--kernels dense`):
 * every weight of every tap, input channel and step is multiplied by its input's activity,
 * zero or not, as a dense int8 engine would; same results, the work of the dense shape.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_conv2d_pixel_sums_q(const uint8_t *in, svt_format_t in_fmt,
                             const svt_conv2d_q_t *conv, uint32_t oy, uint32_t ox,
                             uint32_t T, int32_t *acc, svt_sums_t *sums)
{
    const uint32_t in_c = conv->in_c, out_c = conv->out_c, k = conv->kernel;
    const uint32_t row = svt_row_bytes(out_c, conv->bits);
    *sums = (svt_sums_t){acc, out_c, out_c, 1};
    memset(acc, 0, (size_t)T * out_c * sizeof(int32_t));
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
            const uint8_t *columns = conv->weight + (ky * k + kx) * in_c * row;
            for (uint32_t ci = 0; ci < in_c; ++ci) {
                for (uint32_t t = 0; t < T; ++t) {
                    int32_t a = (int32_t)svt_activity(in, in_fmt, (pixel * in_c + ci), t, T);
                    svt_accumulate_q(acc + t * out_c, columns + ci * row, out_c, conv->bits, a);
                }
            }
        }
    }
}
