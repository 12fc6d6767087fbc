/*
 * On an emulated Cortex-M4/M7 (tests/test_event_kernels.py): the DSP column adds into
 * int32 sums (add_column_q_dsp.c) and into int16 lanes (add_lanes_q_dsp.c) against their
 * portable references (add_column_q.c, add_lanes_q.c) for 1 to 9 columns at once, and the
 * whole event path (events_q.c, built twice: with the DSP add,
 * and with the portable one, its functions renamed *_reference) on empty, full and sparse
 * spike trains and on counts (enough of them that some steps outgrow the lanes). Links with the firmware's start-up code; exits through semihosting with
 * the number of mismatches (0: all equal).
 */
#include "semihosting.h"
#include "svt_kernels.h"

void svt_events_begin_reference(svt_events_t *ev, svt_sums_t *sums, int32_t *storage,
                                uint32_t out_c, uint32_t bits, uint32_t T);
void svt_add_events_q_reference(svt_events_t *ev, const uint8_t *rows, uint32_t row_bytes,
                                const uint8_t *in, svt_format_t in_fmt, uint32_t first,
                                uint32_t n);
void svt_events_end_reference(svt_events_t *ev);
void svt_on_tick(void);

#define MAX_N 520u
#define GUARD 8u
#define MAX_COLUMNS 9u

static uint32_t rng_state = 0x12345678u;

static uint32_t next_random(void) /* xorshift32 */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static uint8_t column[MAX_COLUMNS][MAX_N + 4u] __attribute__((aligned(8)));
static int32_t got[MAX_N + GUARD], want[MAX_N + GUARD];
static int16_t got_lanes[MAX_N + GUARD], want_lanes[MAX_N + GUARD];

static uint32_t differences(uint32_t n)
{
    uint32_t bad = 0;
    for (uint32_t j = 0; j < n; ++j) {
        bad += got[j] != want[j];
    }
    return bad;
}

static uint32_t check_column_add(uint32_t n, uint32_t bits, uint32_t count)
{
    const uint8_t *columns[MAX_COLUMNS];
    for (uint32_t c = 0; c < count; ++c) {
        for (uint32_t j = 0; j < MAX_N; ++j) {
            column[c][j] = (uint8_t)next_random();
        }
        columns[c] = column[c];
    }
    for (uint32_t j = 0; j < n + GUARD; ++j) {
        got[j] = want[j] = (int32_t)(next_random() >> 8) - (1 << 23);
    }
    svt_add_columns_q_dsp(got, columns, count, n, bits);
    svt_add_columns_q_ref(want, columns, count, n, bits);
    return differences(n + GUARD); /* the guard words past n must stay untouched */
}

/* misalign: 0 puts every column on a word (the LDRD path), else the last one a byte off */
static uint32_t check_lane_add(uint32_t n, uint32_t count, uint32_t misalign)
{
    const uint8_t *columns[MAX_COLUMNS];
    for (uint32_t c = 0; c < count; ++c) {
        for (uint32_t j = 0; j < MAX_N + 4u; ++j) {
            column[c][j] = (uint8_t)next_random();
        }
        columns[c] = column[c] + (c + 1u == count ? misalign : 0u);
    }
    for (uint32_t j = 0; j < MAX_N + GUARD; ++j) { /* room for 9 columns of +-128 */
        got_lanes[j] = want_lanes[j] = (int16_t)((int32_t)(next_random() % 40000u) - 20000);
    }
    svt_add_lanes_q_dsp(got_lanes, columns, count, n);
    svt_add_lanes_q_ref(want_lanes, columns, count, n);
    uint32_t bad = 0;
    for (uint32_t j = 0; j < MAX_N + GUARD; ++j) { /* lanes past n must stay untouched */
        bad += got_lanes[j] != want_lanes[j];
    }
    return bad;
}

#define TOKENS 3u
#define IN_C 101u /* with T = 4: 404 bits a token, off word boundaries; full counts
                   * (1..3 each) overflow the lanes of some steps */
#define OUT_C 27u
#define STEPS 4u

static uint8_t trains[TOKENS * IN_C * STEPS];
static uint8_t rows[IN_C * OUT_C];

static uint32_t check_events(svt_format_t fmt, uint32_t percent, uint32_t bits)
{
    for (uint32_t i = 0; i < sizeof trains; ++i) {
        trains[i] = 0;
    }
    for (uint32_t p = 0; p < TOKENS * IN_C * STEPS; ++p) {
        if (next_random() % 100u < percent) {
            if (fmt == SVT_SPIKES) {
                trains[p >> 3] = (uint8_t)(trains[p >> 3] | (1u << (p & 7u)));
            } else {
                trains[p] = (uint8_t)(1u + next_random() % 3u);
            }
        }
    }
    for (uint32_t i = 0; i < sizeof rows; ++i) {
        rows[i] = (uint8_t)next_random();
    }
    uint32_t row_bytes = svt_row_bytes(OUT_C, bits), bad = 0;
    for (uint32_t n = 0; n < TOKENS; ++n) {
        svt_events_t ev, ev_reference;
        svt_sums_t sums, sums_reference;
        svt_events_begin(&ev, &sums, got, OUT_C, bits, STEPS);
        svt_add_events_q(&ev, rows, row_bytes, trains, fmt, n * IN_C, IN_C);
        svt_events_end(&ev);
        svt_events_begin_reference(&ev_reference, &sums_reference, want, OUT_C, bits, STEPS);
        svt_add_events_q_reference(&ev_reference, rows, row_bytes, trains, fmt, n * IN_C, IN_C);
        svt_events_end_reference(&ev_reference);
        bad += sums.wide != sums_reference.wide;
        for (uint32_t t = 0; t < STEPS; ++t) {
            for (uint32_t j = 0; j < OUT_C; ++j) {
                bad += svt_sums_get(&sums, t, j) != svt_sums_get(&sums_reference, t, j);
            }
        }
    }
    return bad;
}

void svt_on_tick(void)
{
}

int main(void)
{
    uint32_t bad = 0;
    static const uint32_t bit_widths[2] = {8u, 4u};
    static const uint32_t densities[4] = {0u, 100u, 5u, 30u};
    for (uint32_t b = 0; b < 2u; ++b) {
        for (uint32_t count = 1; count <= MAX_COLUMNS; ++count) {
            for (uint32_t n = 0; n <= 40u; ++n) {
                bad += check_column_add(n, bit_widths[b], count);
            }
            bad += check_column_add(64u, bit_widths[b], count);
            bad += check_column_add(255u, bit_widths[b], count);
            bad += check_column_add(512u, bit_widths[b], count);
            if (b == 0u) {
                for (uint32_t n = 0; n <= 40u; ++n) {
                    bad += check_lane_add(n, count, 0u) + check_lane_add(n, count, 1u);
                }
                bad += check_lane_add(512u, count, 0u) + check_lane_add(512u, count, 3u);
            }
        }
        for (uint32_t d = 0; d < 4u; ++d) {
            bad += check_events(SVT_SPIKES, densities[d], bit_widths[b]);
            bad += check_events(SVT_COUNTS, densities[d], bit_widths[b]);
        }
    }
    svt_semihost_write(bad == 0u ? "column add: DSP == reference\n"
                                 : "column add: DSP != reference\n");
    svt_semihost_exit(bad);
}
