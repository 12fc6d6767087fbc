/*
 * Residual add: spikes and/or counts in, counts out (one byte per neuron and step). The
 * output may be the same buffer as a counts input. Sums stay small (one per residual
 * branch), far below 255. Neuron i's step t is bit i*T + t of a spike buffer and byte
 * i*T + t of a counts buffer, so counts add byte by byte and spikes add one per set bit
 * (found 32 at a time, count-trailing-zeros): the work follows the spikes.
 */
#include <string.h>

#include "svt_kernels.h"

static void add_spikes(uint8_t *counts, const uint8_t *spikes, uint32_t n)
{
    for (uint32_t base = 0; base < n; base += 32u) {
        uint32_t left = n - base;
        uint32_t word = svt_bits32(spikes, base, left < 32u ? left : 32u);
        while (word != 0u) {
            counts[base + svt_ctz32(word)]++;
            word &= word - 1u;
        }
    }
}

void svt_add(const uint8_t *a, svt_format_t a_fmt, const uint8_t *b, svt_format_t b_fmt,
             uint32_t neurons, uint32_t T, uint8_t *out_counts)
{
    const uint32_t n = neurons * T;
    if (a_fmt == SVT_COUNTS && b_fmt == SVT_COUNTS) {
        for (uint32_t k = 0; k < n; ++k) {
            out_counts[k] = (uint8_t)(a[k] + b[k]);
        }
        return;
    }
    if (a_fmt == SVT_COUNTS || b_fmt == SVT_COUNTS) {
        const uint8_t *counts = a_fmt == SVT_COUNTS ? a : b;
        if (counts != out_counts) {
            memcpy(out_counts, counts, n);
        }
        add_spikes(out_counts, a_fmt == SVT_COUNTS ? b : a, n);
        return;
    }
    memset(out_counts, 0, n);
    add_spikes(out_counts, a, n);
    add_spikes(out_counts, b, n);
}
