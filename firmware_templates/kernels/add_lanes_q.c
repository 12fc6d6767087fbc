/*
 * Portable reference: the int8 weight columns of `count` events added into int16 lane
 * sums, lanes[svt_lane(j)] += columns[c][j] for j < n (svt_kernels.h says why lanes and in
 * which order). The optimized variants (add_lanes_q_dsp.c, add_lanes_q_sse.c) are tested
 * against this one. The caller keeps every lane within int16 (at most SVT_LANE_EVENTS
 * columns), so the narrowing store is exact.
 */
#include "svt_kernels.h"

void svt_add_lanes_q_ref(int16_t *lanes, const uint8_t *const *columns, uint32_t count,
                         uint32_t n)
{
    for (uint32_t c = 0; c < count; ++c) {
        const int8_t *w = (const int8_t *)(const void *)columns[c];
        for (uint32_t j = 0; j < n; ++j) {
            int16_t *lane = lanes + svt_lane(j);
            *lane = (int16_t)(*lane + w[j]);
        }
    }
}
