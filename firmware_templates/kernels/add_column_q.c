/*
 * Portable reference: the weight columns of `count` events added into int32 sums,
 * acc[j] += columns[c][j] for j < n (int8, or int4 two per byte). The optimized variant
 * (add_column_q_dsp.c) is tested against this one.
 */
#include "svt_kernels.h"

void svt_add_columns_q_ref(int32_t *acc, const uint8_t *const *columns, uint32_t count,
                           uint32_t n, uint32_t bits)
{
    for (uint32_t c = 0; c < count; ++c) {
        svt_accumulate_q(acc, columns[c], n, bits, 1);
    }
}
