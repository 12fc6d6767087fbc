/*
 * Spiking self-attention without softmax, then the attention LIF (threshold 0.5 in
 * Spikformer): out = (q k^T) v * scale, integer counts (ssa_counts.c) until the scale.
 * Exact: the same integers PyTorch gets.
 * kv_scratch: T * C * head_dim entries of kv_bytes; acc_scratch: T * C int32.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_ssa_lif(const uint8_t *q, const uint8_t *k, const uint8_t *v, const svt_ssa_t *ssa,
                 uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes, void *kv_scratch,
                 int32_t *acc_scratch)
{
    const uint32_t tokens = ssa->tokens, head_dim = ssa->head_dim;
    const uint32_t C = ssa->heads * head_dim;
    /* the token counts' scratch holds v's masks until kv is built */
    svt_ssa_build_kv(k, v, tokens, C, head_dim, ssa->kv_bytes, T, kv_scratch,
                     (uint32_t *)(void *)acc_scratch);
    memset(out_spikes, 0, (tokens * C * T + 7u) / 8u);
    for (uint32_t n = 0; n < tokens; ++n) {
        svt_ssa_token_counts(q, n, C, head_dim, ssa->kv_bytes, T, kv_scratch, acc_scratch);
        for (uint32_t c = 0; c < C; ++c) {
            float current[SVT_MAX_TIMESTEPS];
            for (uint32_t t = 0; t < T; ++t) {
                current[t] = (float)acc_scratch[t * C + c] * ssa->scale;
            }
            svt_spikes_or(out_spikes, n * C + c, T, svt_lif_train(current, 1, T, lif));
        }
    }
}
