/*
 * Integer linear layer over tokens fed by spikes or counts, then LIF: each active input
 * adds its int8/int4 weight column into int32 sums (a count of k adds it k times).
 * linear->weight_io: one row per input, out_c weights each. acc: T * out_c int32.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_linear_spiking_lif_q(const uint8_t *in, svt_format_t in_fmt,
                              const svt_linear_q_t *linear, uint32_t T, const svt_lif_q_t *lif,
                              uint8_t *out_spikes, int32_t *acc)
{
    const uint32_t tokens = linear->tokens, in_c = linear->in_c, out_c = linear->out_c;
    const uint32_t row = svt_row_bytes(out_c, linear->bits);
    memset(out_spikes, 0, (tokens * out_c * T + 7u) / 8u);
    for (uint32_t n = 0; n < tokens; ++n) {
        memset(acc, 0, (size_t)T * out_c * sizeof(int32_t));
        for (uint32_t ci = 0; ci < in_c; ++ci) {
            svt_accumulate_input_q(acc, linear->weight_io + ci * row, out_c, linear->bits, in,
                                   in_fmt, n * in_c + ci, T);
        }
        svt_currents_out_q(acc, linear->bias, linear->frac_bits, n * out_c, out_c, T, lif,
                           out_spikes);
    }
}
