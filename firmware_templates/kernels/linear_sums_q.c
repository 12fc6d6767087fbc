/*
 * The integer sums of token n of a linear layer fed by spikes (or counts), all T steps.
 * Event-driven: the token's in_c inputs are contiguous in the trains, and only the active
 * ones add their weight column (events_q.c). `--kernels dense` builds linear_sums_dense_q.c
 * in its place.
 */
#include "svt_kernels.h"

void svt_linear_token_sums_q(const uint8_t *in, svt_format_t in_fmt,
                             const svt_linear_q_t *linear, uint32_t n, uint32_t T,
                             int32_t *storage, svt_sums_t *sums)
{
    const uint32_t in_c = linear->in_c, out_c = linear->out_c;
    svt_events_t ev;
    svt_events_begin(&ev, sums, storage, out_c, linear->bits, T);
    svt_add_events_q(&ev, linear->weight_io, svt_row_bytes(out_c, linear->bits), in, in_fmt,
                     n * in_c, in_c);
    svt_events_end(&ev);
}
