/*
 * x86-64 variant of add_lanes_q.c (same lanes, tested against it), for the host build:
 * SSE2, which every x86-64 core has. Sixteen int8 weights come in with one load, are
 * sign-extended to int16 (unpack with themselves, arithmetic shift), put in lane order by
 * a word shuffle per half, and added sixteen at a time; the lanes of sixteen outputs stay
 * in two registers while every column of the batch is added.
 */
#include "svt_kernels.h"

#if defined(__SSE2__)
#include <emmintrin.h>

/* bytes -> int16 words in lane order: outputs 0, 2, 1, 3 of each group of four */
#define SVT_LANE_ORDER _MM_SHUFFLE(3, 1, 2, 0)

static inline __m128i lanes_of(__m128i bytes_doubled)
{
    __m128i words = _mm_srai_epi16(bytes_doubled, 8);
    return _mm_shufflehi_epi16(_mm_shufflelo_epi16(words, SVT_LANE_ORDER), SVT_LANE_ORDER);
}

void svt_add_lanes_q_sse(int16_t *lanes, const uint8_t *const *columns, uint32_t count,
                         uint32_t n)
{
    uint32_t j = 0;
    for (; j + 16u <= n; j += 16u) {
        __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)(lanes + j));
        __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(lanes + j + 8u));
        for (uint32_t c = 0; c < count; ++c) {
            __m128i w = _mm_loadu_si128((const __m128i *)(const void *)(columns[c] + j));
            lo = _mm_add_epi16(lo, lanes_of(_mm_unpacklo_epi8(w, w)));
            hi = _mm_add_epi16(hi, lanes_of(_mm_unpackhi_epi8(w, w)));
        }
        _mm_storeu_si128((__m128i *)(void *)(lanes + j), lo);
        _mm_storeu_si128((__m128i *)(void *)(lanes + j + 8u), hi);
    }
    if (j < n) { /* the last n % 16 outputs (j is a multiple of 4: same lane order) */
        for (uint32_t c = 0; c < count; ++c) {
            const uint8_t *rest = columns[c] + j;
            svt_add_lanes_q_ref(lanes + j, &rest, 1u, n - j);
        }
    }
}

#endif /* __SSE2__ */
