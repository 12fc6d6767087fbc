/*
 * Linear layer over tokens (nn.Linear or kernel-1 Conv1d) fed by spikes or spike counts,
 * then LIF. Accumulate only: each active input adds its weight column; a count of k adds
 * it k times.
 * weight_io: [in_c][out_c] (transposed, so one input's column is contiguous).
 * scratch: T * out_c floats (the currents of one token).
 * lif == NULL: the currents are kept as membrane floats, as in conv2d_spiking_lif.c.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_linear_spiking_lif(const uint8_t *in, svt_format_t in_fmt,
                            const svt_linear_t *linear, uint32_t T, const svt_lif_t *lif,
                            uint8_t *out_spikes, float *scratch)
{
    const uint32_t tokens = linear->tokens, in_c = linear->in_c, out_c = linear->out_c;
    const float *weight_io = linear->weight_io, *bias = linear->bias;
    if (lif != NULL) {
        memset(out_spikes, 0, (tokens * out_c * T + 7u) / 8u);
    }
    for (uint32_t n = 0; n < tokens; ++n) {
        for (uint32_t t = 0; t < T; ++t) {
            memcpy(scratch + t * out_c, bias, out_c * sizeof(float));
        }
        for (uint32_t ci = 0; ci < in_c; ++ci) {
            svt_accumulate_input(scratch, weight_io + ci * out_c, out_c, in, in_fmt,
                                 n * in_c + ci, T);
        }
        svt_currents_out(scratch, n * out_c, out_c, T, lif, out_spikes);
    }
}
