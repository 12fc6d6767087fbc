/*
 * Integer spiking self-attention: the counts (q k^T) v (ssa_counts.c), shifted left by
 * frac_bits, drive the attention LIF; Spikformer's scale is the unit of its threshold
 * (threshold = v_th / scale * 2^frac_bits), so nothing is multiplied.
 * kv_scratch: T * C * head_dim entries of kv_bytes; acc_scratch: T * C int32.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_ssa_lif_q(const uint8_t *q, const uint8_t *k, const uint8_t *v,
                   const svt_ssa_q_t *ssa, uint32_t T, const svt_lif_q_t *lif,
                   uint8_t *out_spikes, void *kv_scratch, int32_t *acc_scratch)
{
    const uint32_t tokens = ssa->tokens, head_dim = ssa->head_dim;
    const uint32_t C = ssa->heads * head_dim;
    /* the token counts' scratch holds v's masks until kv is built */
    svt_ssa_build_kv(k, v, tokens, C, head_dim, ssa->kv_bytes, T, kv_scratch,
                     (uint32_t *)(void *)acc_scratch);
    memset(out_spikes, 0, (tokens * C * T + 7u) / 8u);
    for (uint32_t n = 0; n < tokens; ++n) {
        svt_ssa_token_counts(q, n, C, head_dim, ssa->kv_bytes, T, kv_scratch, acc_scratch);
        svt_currents_out_q(acc_scratch, NULL, ssa->frac_bits, n * C, C, T, lif, out_spikes);
    }
}
