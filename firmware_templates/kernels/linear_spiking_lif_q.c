/*
 * Integer linear layer over tokens fed by spikes or counts, then LIF: each token's sums
 * (linear_sums_q.c: its active inputs add their int8/int4 weight columns into int32; or
 * linear_sums_dense_q.c with `--kernels dense`) become its currents and spike trains.
 * linear->weight_io: one row per input, out_c weights each. acc: T * out_c int32 of storage
 * for the sums (int16 lanes or int32, svt_sums_t).
 */
#include <string.h>

#include "svt_kernels.h"

void svt_linear_spiking_lif_q(const uint8_t *in, svt_format_t in_fmt,
                              const svt_linear_q_t *linear, uint32_t T, const svt_lif_q_t *lif,
                              uint8_t *out_spikes, int32_t *acc)
{
    const uint32_t tokens = linear->tokens, out_c = linear->out_c;
    memset(out_spikes, 0, (tokens * out_c * T + 7u) / 8u);
    for (uint32_t n = 0; n < tokens; ++n) {
        svt_sums_t sums;
        svt_linear_token_sums_q(in, in_fmt, linear, n, T, acc, &sums);
        svt_sums_out_q(&sums, linear->bias, linear->frac_bits, n * out_c, T, lif, out_spikes);
    }
}
