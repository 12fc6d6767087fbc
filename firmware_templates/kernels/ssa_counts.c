/*
 * The integer part of Spikformer's spiking self-attention, shared by the fp32 and the
 * integer kernel. q, k and v are binary, so per head and step
 *     (q k^T) v = q (k^T v)
 * is a count: k^T v (head_dim x head_dim per head and step) counts tokens where both are
 * active; it is built once, then every token's output row adds the k^T v rows of its
 * active q channels. Channel c = head * head_dim + j (the usual head-major split).
 * kv: T * C * head_dim entries of kv_bytes (1 while tokens <= 255, else 2).
 * Both follow the events: a token's C * T bits of k (or q) are scanned 32 at a time and
 * each set bit found with count-trailing-zeros (bit p: channel p / T at step p % T).
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

/* Bit `bit` of a packed bit array. */
static inline uint32_t bit_at(const uint8_t *buf, uint32_t bit)
{
    return (uint32_t)(buf[bit >> 3] >> (bit & 7u)) & 1u;
}

void svt_ssa_build_kv(const uint8_t *k, const uint8_t *v, uint32_t tokens, uint32_t C,
                      uint32_t head_dim, uint32_t kv_bytes, uint32_t T, void *kv)
{
    const uint32_t bits = C * T;
    memset(kv, 0, (size_t)T * C * head_dim * kv_bytes);
    for (uint32_t m = 0; m < tokens; ++m) {
        for (uint32_t base = 0; base < bits; base += 32u) {
            uint32_t left = bits - base;
            uint32_t word = svt_bits32(k, m * bits + base, left < 32u ? left : 32u);
            while (word != 0u) {
                uint32_t p = base + svt_ctz32(word), ci = p / T, t = p - ci * T;
                word &= word - 1u;
                /* v of this token's head channels at step t: bits (m*C + head_base + j)*T + t */
                uint32_t v_bit = (m * C + ci - ci % head_dim) * T + t;
                uint32_t row = (t * C + ci) * head_dim;
                for (uint32_t j = 0; j < head_dim; ++j, v_bit += T) {
                    if (bit_at(v, v_bit)) {
                        kv_increment(kv, kv_bytes, row + j);
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
