/*
 * The event-driven core of the spike-fed integer layers: only active inputs cost work.
 * Spike trains are scanned 32 bits at a time and each set bit found with count-trailing-
 * zeros; counts (one byte per input and step) four at a time, each nonzero byte found the
 * same way (little-endian: the first byte is the lowest). Bit/byte p of the range is
 * input p / T at step p % T. Its weight column is queued for step t and the queue is
 * added when full (SVT_EVENT_BATCH columns in one pass over the step's sums), into the
 * step's int16 lanes while they stay exact (svt_kernels.h, svt_sums_t), then into int32.
 */
#include "svt_kernels.h"

void svt_events_begin(svt_events_t *ev, svt_sums_t *sums, int32_t *storage, uint32_t out_c,
                      uint32_t bits, uint32_t T)
{
    T = SVT_STEPS(T);
    sums->acc = storage;
    sums->out_c = out_c;
    sums->lane_c = (out_c + 3u) & ~3u;
    /* lanes need 2 * lane_c <= 4 * out_c bytes a step, and the in-place widening needs the
     * same: out_c >= 3; below 4 outputs there is nothing to gain */
    sums->wide = bits != 8u || out_c < 4u;
    ev->sums = sums;
    ev->bits = bits;
    ev->T = T;
    if (sums->wide) {
        memset(storage, 0, (size_t)T * out_c * sizeof(int32_t));
    } else {
        memset(storage, 0, (size_t)T * sums->lane_c * sizeof(int16_t));
    }
    for (uint32_t t = 0; t < T; ++t) {
        ev->added[t] = 0;
        ev->count[t] = 0;
    }
}

void svt_sums_widen(svt_sums_t *sums, uint32_t T)
{
    /* Sum i (step t, output j) moves from byte 2 * (t * lane_c + lane) to byte
     * 4 * (t * out_c + j): never below where it was (out_c >= 3), so going from the last
     * group of four back to the first, each group is read before anything overwrites it. */
    const int16_t *lanes = svt_sums_lanes(sums);
    const uint32_t out_c = sums->out_c, lane_c = sums->lane_c;
    for (uint32_t t = T; t-- > 0u;) {
        for (uint32_t g = lane_c; g != 0u;) {
            g -= 4u;
            int32_t v[4];
            for (uint32_t k = 0; k < 4u; ++k) {
                v[k] = lanes[t * lane_c + svt_lane(g + k)];
            }
            for (uint32_t k = 0; k < 4u && g + k < out_c; ++k) {
                sums->acc[t * out_c + g + k] = v[k];
            }
        }
    }
    sums->wide = 1;
}

/* Add step t's collected columns: into its lanes while they stay exact, else into int32. */
static void add_collected(svt_events_t *ev, uint32_t t, uint32_t count)
{
    svt_sums_t *sums = ev->sums;
    if (!sums->wide) {
        ev->added[t] += count;
        if (ev->added[t] <= SVT_LANE_EVENTS) {
            svt_add_lanes_q(svt_sums_lanes(sums) + t * sums->lane_c, ev->columns[t], count,
                            sums->out_c);
            return;
        }
        svt_sums_widen(sums, ev->T);
    }
    svt_add_columns_q(sums->acc + t * sums->out_c, ev->columns[t], count, sums->out_c,
                      ev->bits);
}

static inline void queue(svt_events_t *ev, uint32_t t, const uint8_t *column)
{
    uint32_t c = ev->count[t];
    ev->columns[t][c] = column;
    if (++c == SVT_EVENT_BATCH) {
        add_collected(ev, t, c);
        c = 0;
    }
    ev->count[t] = c;
}

/* the spikes of `word`: bit b is position base + b */
static inline void queue_spikes(svt_events_t *ev, uint32_t word, uint32_t base,
                                const uint8_t *rows, uint32_t row_bytes, uint32_t T)
{
    while (word != 0u) {
        uint32_t p = base + svt_ctz32(word), r = p / T;
        word &= word - 1u;
        queue(ev, p - r * T, rows + r * row_bytes);
    }
}

void svt_add_events_q(svt_events_t *ev, const uint8_t *rows, uint32_t row_bytes,
                      const uint8_t *in, svt_format_t in_fmt, uint32_t first, uint32_t n)
{
    const uint32_t T = SVT_STEPS(ev->T), positions = n * T, start = first * T;
    if (in_fmt == SVT_SPIKES) {
        uint32_t base = 0;
        if ((start & 7u) == 0u) { /* on a byte boundary (the usual case): whole words */
            for (const uint8_t *bytes = in + start / 8u; base + 32u <= positions;
                 base += 32u, bytes += 4u) {
                uint32_t word;
                memcpy(&word, bytes, 4u);
                queue_spikes(ev, word, base, rows, row_bytes, T);
            }
        }
        for (; base < positions; base += 32u) {
            uint32_t left = positions - base;
            queue_spikes(ev, svt_bits32(in, start + base, left < 32u ? left : 32u), base, rows,
                         row_bytes, T);
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
            add_collected(ev, t, ev->count[t]);
            ev->count[t] = 0;
        }
    }
}
