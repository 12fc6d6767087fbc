/*
 * Integer classifier head: scores = W s + b on the int32 readout sums s. One weight scale
 * for every class, and the readout's divisor folded into b, so the int32 scores of all
 * classes are in one unit and compare directly.
 * dense->weight_oi: one row per class, in_c weights each.
 */
#include "svt_kernels.h"

void svt_dense_q(const int32_t *in, const svt_dense_q_t *dense, int32_t *scores)
{
    const uint32_t in_c = dense->in_c, bits = dense->bits;
    for (uint32_t o = 0; o < dense->out_c; ++o) {
        const uint8_t *row = dense->weight_oi + o * svt_row_bytes(in_c, bits);
        int32_t acc = dense->bias[o];
        for (uint32_t c = 0; c < in_c; ++c) {
            acc += svt_weight_q(row, c, bits) * in[c];
        }
        scores[o] = acc;
    }
}
