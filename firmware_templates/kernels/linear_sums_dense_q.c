/*
 * The dense baseline of linear_sums_q.c (`--kernels dense`): every weight of every input
 * and step is multiplied by its input's activity, zero or not; same results, the work of
 * the dense shape.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_linear_token_sums_q(const uint8_t *in, svt_format_t in_fmt,
                             const svt_linear_q_t *linear, uint32_t n, uint32_t T,
                             int32_t *acc, svt_sums_t *sums)
{
    const uint32_t in_c = linear->in_c, out_c = linear->out_c;
    const uint32_t row = svt_row_bytes(out_c, linear->bits);
    *sums = (svt_sums_t){acc, out_c, out_c, 1};
    memset(acc, 0, (size_t)T * out_c * sizeof(int32_t));
    for (uint32_t ci = 0; ci < in_c; ++ci) {
        for (uint32_t t = 0; t < T; ++t) {
            int32_t a = (int32_t)svt_activity(in, in_fmt, n * in_c + ci, t, T);
            svt_accumulate_q(acc + t * out_c, linear->weight_io + ci * row, out_c,
                             linear->bits, a);
        }
    }
}
