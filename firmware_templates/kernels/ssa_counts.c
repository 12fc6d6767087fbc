/*
 * The integer part of Spikformer's spiking self-attention, shared by the fp32 and the
 * integer kernel. q, k and v are binary, so per head and step
 *     (q k^T) v = q (k^T v)
 * is a count: k^T v (head_dim x head_dim per head and step) counts tokens where both are
 * active; it is built once, then every token's output row adds the k^T v rows of its
 * active q channels. Channel c = head * head_dim + j (the usual head-major split).
 * kv: T * C * head_dim entries of kv_bytes (1 while tokens <= 255, else 2).
 * Both follow the events: a token's C * T bits of k (or q) are scanned 32 at a time and
 * each set bit found with count-trailing-zeros (bit p: channel p / T at step p % T); the
 * active v of a k spike's head likewise, from the token's v laid out step by step in
 * v_masks (T rows of C bits, rounded up to words).
 */
#include <string.h>

#include "svt_kernels.h"

static inline void kv_increment(void *kv, uint32_t kv_bytes, uint32_t idx)
{
    if (kv_bytes == 1u) {
        ((uint8_t *)kv)[idx]++;
    } else {
        ((uint16_t *)kv)[idx]++;
    }
}

void svt_ssa_build_kv(const uint8_t *k, const uint8_t *v, uint32_t tokens, uint32_t C,
                      uint32_t head_dim, uint32_t kv_bytes, uint32_t T, void *kv,
                      uint32_t *v_masks)
{
    const uint32_t bits = C * T, mask_words = (C + 31u) / 32u;
    const uint8_t *masks = (const uint8_t *)v_masks; /* bit c of step t's row: v active */
    T = SVT_STEPS(T);
    memset(kv, 0, (size_t)T * C * head_dim * kv_bytes);
    for (uint32_t m = 0; m < tokens; ++m) {
        /* token m's v, step by step, so that a k spike finds the active v of its head
         * with count-trailing-zeros instead of testing head_dim bits */
        memset(v_masks, 0, (size_t)T * mask_words * sizeof(uint32_t));
        for (uint32_t base = 0; base < bits; base += 32u) {
            uint32_t left = bits - base;
            uint32_t word = svt_bits32(v, m * bits + base, left < 32u ? left : 32u);
            while (word != 0u) {
                uint32_t p = base + svt_ctz32(word), c = p / T, t = p - c * T;
                word &= word - 1u;
                v_masks[t * mask_words + c / 32u] |= 1u << (c % 32u);
            }
        }
        for (uint32_t base = 0; base < bits; base += 32u) {
            uint32_t left = bits - base;
            uint32_t word = svt_bits32(k, m * bits + base, left < 32u ? left : 32u);
            while (word != 0u) {
                uint32_t p = base + svt_ctz32(word), ci = p / T, t = p - ci * T;
                word &= word - 1u;
                uint32_t first = t * mask_words * 32u + (ci - ci % head_dim);
                uint32_t row = (t * C + ci) * head_dim;
                for (uint32_t j0 = 0; j0 < head_dim; j0 += 32u) {
                    uint32_t n = head_dim - j0 < 32u ? head_dim - j0 : 32u;
                    uint32_t active = svt_bits32(masks, first + j0, n);
                    while (active != 0u) {
                        kv_increment(kv, kv_bytes, row + j0 + svt_ctz32(active));
                        active &= active - 1u;
                    }
                }
            }
        }
    }
}

void svt_ssa_token_counts(const uint8_t *q, uint32_t n, uint32_t C, uint32_t head_dim,
                          uint32_t kv_bytes, uint32_t T, const void *kv, int32_t *acc)
{
    const uint32_t bits = C * T;
    memset(acc, 0, (size_t)T * C * sizeof(int32_t));
    for (uint32_t base = 0; base < bits; base += 32u) {
        uint32_t left = bits - base;
        uint32_t word = svt_bits32(q, n * bits + base, left < 32u ? left : 32u);
        while (word != 0u) {
            uint32_t p = base + svt_ctz32(word), ci = p / T, t = p - ci * T;
            word &= word - 1u;
            int32_t *out = acc + t * C + (ci - ci % head_dim);
            uint32_t row = (t * C + ci) * head_dim;
            if (kv_bytes == 1u) {
                const uint8_t *counts = (const uint8_t *)kv + row;
                for (uint32_t j = 0; j < head_dim; ++j) {
                    out[j] += (int32_t)counts[j];
                }
            } else {
                const uint16_t *counts = (const uint16_t *)kv + row;
                for (uint32_t j = 0; j < head_dim; ++j) {
                    out[j] += (int32_t)counts[j];
                }
            }
        }
    }
}
