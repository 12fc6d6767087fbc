/*
 * Spike-driven self-attention (SDSA), first half: k * v is the AND of two spike trains, its
 * sum over tokens an integer count per channel and step, and that count is the current of
 * the attention LIF (threshold 0.5 in the published model). Integer work until the LIF.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_sdsa_kv_lif(const uint8_t *k, const uint8_t *v, uint32_t tokens, uint32_t channels,
                     uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes)
{
    memset(out_spikes, 0, (channels * T + 7u) / 8u);
    for (uint32_t c = 0; c < channels; ++c) {
        uint32_t count[SVT_MAX_TIMESTEPS] = {0};
        for (uint32_t n = 0; n < tokens; ++n) {
            uint32_t both = svt_spikes_get(k, n * channels + c, T)
                          & svt_spikes_get(v, n * channels + c, T);
            for (uint32_t t = 0; both != 0u; ++t, both >>= 1) {
                count[t] += both & 1u;
            }
        }
        float current[SVT_MAX_TIMESTEPS];
        for (uint32_t t = 0; t < T; ++t) {
            current[t] = (float)count[t];
        }
        svt_spikes_or(out_spikes, c, T, svt_lif_train(current, 1u, T, lif));
    }
}
