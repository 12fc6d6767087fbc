/*
 * Residual add: spikes and/or counts in, counts out (one byte per neuron and step). The
 * output may be the same buffer as a counts input: each element is read before it is
 * written. Sums stay small (one per residual branch), far below 255.
 */
#include "svt_kernels.h"

void svt_add(const uint8_t *a, svt_format_t a_fmt, const uint8_t *b, svt_format_t b_fmt,
             uint32_t neurons, uint32_t T, uint8_t *out_counts)
{
    for (uint32_t i = 0; i < neurons; ++i) {
        for (uint32_t t = 0; t < T; ++t) {
            uint32_t sum = svt_activity(a, a_fmt, i, t, T) + svt_activity(b, b_fmt, i, t, T);
            out_counts[i * T + t] = (uint8_t)sum;
        }
    }
}
