/*
 * The integer part of Spikformer's spiking self-attention, shared by the fp32 and the
 * integer kernel. q, k and v are binary, so per head and step
 *     (q k^T) v = q (k^T v)
 * is a count: k^T v (head_dim x head_dim per head and step) counts tokens where both are
 * active; it is built once, then every token's output row adds the k^T v rows of its
 * active q channels. Channel c = head * head_dim + j (the usual head-major split).
 * kv: T * C * head_dim entries of kv_bytes (1 while tokens <= 255, else 2).
 */
#include <string.h>

#include "svt_kernels.h"

static inline uint32_t kv_get(const void *kv, uint32_t kv_bytes, uint32_t idx)
{
    return kv_bytes == 1u ? ((const uint8_t *)kv)[idx] : ((const uint16_t *)kv)[idx];
}

static inline void kv_increment(void *kv, uint32_t kv_bytes, uint32_t idx)
{
    if (kv_bytes == 1u) {
        ((uint8_t *)kv)[idx]++;
    } else {
        ((uint16_t *)kv)[idx]++;
    }
}

void svt_ssa_build_kv(const uint8_t *k, const uint8_t *v, uint32_t tokens, uint32_t C,
                      uint32_t head_dim, uint32_t kv_bytes, uint32_t T, void *kv)
{
    memset(kv, 0, (size_t)T * C * head_dim * kv_bytes);
    for (uint32_t m = 0; m < tokens; ++m) {
        for (uint32_t ci = 0; ci < C; ++ci) {
            uint32_t k_train = svt_spikes_get(k, m * C + ci, T);
            if (k_train == 0u) {
                continue;
            }
            uint32_t head_base = ci - ci % head_dim;
            for (uint32_t j = 0; j < head_dim; ++j) {
                uint32_t both = k_train & svt_spikes_get(v, m * C + head_base + j, T);
                for (uint32_t t = 0; both != 0u; ++t, both >>= 1) {
                    if (both & 1u) {
                        kv_increment(kv, kv_bytes, (t * C + ci) * head_dim + j);
                    }
                }
            }
        }
    }
}

void svt_ssa_token_counts(const uint8_t *q, uint32_t n, uint32_t C, uint32_t head_dim,
                          uint32_t kv_bytes, uint32_t T, const void *kv, int32_t *acc)
{
    memset(acc, 0, (size_t)T * C * sizeof(int32_t));
    for (uint32_t ci = 0; ci < C; ++ci) {
        uint32_t q_train = svt_spikes_get(q, n * C + ci, T);
        uint32_t head_base = ci - ci % head_dim;
        for (uint32_t t = 0; q_train != 0u; ++t, q_train >>= 1) {
            if (!(q_train & 1u)) {
                continue;
            }
            int32_t *out = acc + t * C + head_base;
            uint32_t row = (t * C + ci) * head_dim;
            for (uint32_t j = 0; j < head_dim; ++j) {
                out[j] += (int32_t)kv_get(kv, kv_bytes, row + j);
            }
        }
    }
}
