/*
 * The event-driven core of the spike-fed integer layers: only active inputs cost work.
 * Spike trains are scanned 32 bits at a time and each set bit found with count-trailing-
 * zeros; counts (one byte per input and step) four at a time, each nonzero byte found the
 * same way (little-endian: the first byte is the lowest). Bit/byte p of the range is
 * input p / T at step p % T. Its weight column is queued for step t and the queue is
 * added when full (SVT_EVENT_BATCH columns in one pass over the step's sums).
 */
#include "svt_kernels.h"

void svt_events_begin(svt_events_t *ev, int32_t *acc, uint32_t out_c, uint32_t bits,
                      uint32_t T)
{
    ev->acc = acc;
    ev->out_c = out_c;
    ev->bits = bits;
    ev->T = T;
    memset(acc, 0, (size_t)T * out_c * sizeof(int32_t));
    memset(ev->count, 0, sizeof ev->count);
}

static inline void queue(svt_events_t *ev, uint32_t t, const uint8_t *column)
{
    uint32_t c = ev->count[t];
    ev->columns[t][c] = column;
    if (++c == SVT_EVENT_BATCH) {
        svt_add_columns_q(ev->acc + t * ev->out_c, ev->columns[t], c, ev->out_c, ev->bits);
        c = 0;
    }
    ev->count[t] = c;
}

void svt_add_events_q(svt_events_t *ev, const uint8_t *rows, uint32_t row_bytes,
                      const uint8_t *in, svt_format_t in_fmt, uint32_t first, uint32_t n)
{
    const uint32_t T = ev->T, positions = n * T, start = first * T;
    if (in_fmt == SVT_SPIKES) {
        for (uint32_t base = 0; base < positions; base += 32u) {
            uint32_t left = positions - base;
            uint32_t word = svt_bits32(in, start + base, left < 32u ? left : 32u);
            while (word != 0u) {
                uint32_t p = base + svt_ctz32(word), r = p / T;
                word &= word - 1u;
                queue(ev, p - r * T, rows + r * row_bytes);
            }
        }
        return;
    }
    const uint8_t *counts = in + start;
    for (uint32_t base = 0; base < positions; base += 4u) {
        uint32_t left = positions - base, word = 0;
        if (left >= 4u) {
            memcpy(&word, counts + base, 4u);
        } else {
            for (uint32_t b = 0; b < left; ++b) {
                word |= (uint32_t)counts[base + b] << (8u * b);
            }
        }
        while (word != 0u) {
            uint32_t lane = svt_ctz32(word) >> 3, p = base + lane, r = p / T;
            uint32_t count = (word >> (8u * lane)) & 0xFFu;
            word &= ~(0xFFu << (8u * lane));
            for (; count > 0u; --count) { /* a count of k is k events */
                queue(ev, p - r * T, rows + r * row_bytes);
            }
        }
    }
}

void svt_events_end(svt_events_t *ev)
{
    for (uint32_t t = 0; t < ev->T; ++t) {
        if (ev->count[t] != 0u) {
            svt_add_columns_q(ev->acc + t * ev->out_c, ev->columns[t], ev->count[t], ev->out_c,
                              ev->bits);
            ev->count[t] = 0;
        }
    }
}
