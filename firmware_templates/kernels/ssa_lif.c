/*
 * Spiking self-attention without softmax, then the attention LIF (threshold 0.5 in
 * Spikformer). q, k and v are binary, so per head and step
 *     out = (q k^T) v * scale = q (k^T v) * scale
 * is an integer product until the scale. k^T v (head_dim x head_dim per head and step)
 * counts tokens where both are active: it is built once, then every token's output row
 * adds the k^T v rows of its active q channels. Exact: the same integers PyTorch gets.
 * Channel c = head * head_dim + j (the usual head-major split).
 * kv_scratch: T * C * head_dim entries of kv_bytes (1 while tokens <= 255, else 2).
 * acc_scratch: T * C int32.
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

void svt_ssa_lif(const uint8_t *q, const uint8_t *k, const uint8_t *v, const svt_ssa_t *ssa,
                 uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes, void *kv_scratch,
                 int32_t *acc_scratch)
{
    const uint32_t tokens = ssa->tokens, head_dim = ssa->head_dim, kv_bytes = ssa->kv_bytes;
    const uint32_t C = ssa->heads * head_dim;
    const float scale = ssa->scale;
    memset(kv_scratch, 0, (size_t)T * C * head_dim * kv_bytes);
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
                        kv_increment(kv_scratch, kv_bytes, (t * C + ci) * head_dim + j);
                    }
                }
            }
        }
    }
    memset(out_spikes, 0, (tokens * C * T + 7u) / 8u);
    for (uint32_t n = 0; n < tokens; ++n) {
        memset(acc_scratch, 0, (size_t)T * C * sizeof(int32_t));
        for (uint32_t ci = 0; ci < C; ++ci) {
            uint32_t q_train = svt_spikes_get(q, n * C + ci, T);
            uint32_t head_base = ci - ci % head_dim;
            for (uint32_t t = 0; q_train != 0u; ++t, q_train >>= 1) {
                if (!(q_train & 1u)) {
                    continue;
                }
                int32_t *acc = acc_scratch + t * C + head_base;
                uint32_t row = (t * C + ci) * head_dim;
                for (uint32_t j = 0; j < head_dim; ++j) {
                    acc[j] += (int32_t)kv_get(kv_scratch, kv_bytes, row + j);
                }
            }
        }
        for (uint32_t c = 0; c < C; ++c) {
            float current[SVT_MAX_TIMESTEPS];
            for (uint32_t t = 0; t < T; ++t) {
                current[t] = (float)acc_scratch[t * C + c] * scale;
            }
            svt_spikes_or(out_spikes, n * C + c, T, svt_lif_train(current, 1, T, lif));
        }
    }
}
