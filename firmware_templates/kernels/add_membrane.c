/*
 * Residual add into the real-valued "membrane shortcut" stream: any two of spikes, counts
 * and membrane floats in, membrane floats out. The output may be the same buffer as a
 * membrane input: each element is read before it is written.
 */
#include "svt_kernels.h"

void svt_add_membrane(const uint8_t *a, svt_format_t a_fmt, const uint8_t *b,
                      svt_format_t b_fmt, uint32_t neurons, uint32_t T, float *out)
{
    for (uint32_t i = 0; i < neurons; ++i) {
        for (uint32_t t = 0; t < T; ++t) {
            float sum = svt_value(a, a_fmt, i, t, T) + svt_value(b, b_fmt, i, t, T);
            out[i * T + t] = sum;
        }
    }
}
