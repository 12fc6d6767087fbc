/*
 * On an emulated Cortex-M4/M7 (tests/test_event_kernels.py): the DSP column add
 * (add_column_q_dsp.c) against the portable reference (add_column_q.c) for 1 to 9
 * columns at once, and the whole event path (events_q.c, built twice: with the DSP add,
 * and with the portable one, its functions renamed *_reference) on empty, full and sparse
 * spike trains and on counts. Links with the firmware's start-up code; exits through semihosting with
 * the number of mismatches (0: all equal).
 */
#include "semihosting.h"
#include "svt_kernels.h"

void svt_events_begin_reference(svt_events_t *ev, int32_t *acc, uint32_t out_c, uint32_t bits,
                                uint32_t T);
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

static uint8_t column[MAX_COLUMNS][MAX_N];
static int32_t got[MAX_N + GUARD], want[MAX_N + GUARD];

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

#define TOKENS 3u
#define IN_C 45u /* with T = 4: 180 bits a token, off word boundaries */
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
        svt_events_begin(&ev, got, OUT_C, bits, STEPS);
        svt_add_events_q(&ev, rows, row_bytes, trains, fmt, n * IN_C, IN_C);
        svt_events_end(&ev);
        svt_events_begin_reference(&ev_reference, want, OUT_C, bits, STEPS);
        svt_add_events_q_reference(&ev_reference, rows, row_bytes, trains, fmt, n * IN_C, IN_C);
        svt_events_end_reference(&ev_reference);
        bad += differences(STEPS * OUT_C);
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
