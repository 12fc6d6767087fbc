/*
 * Spike-driven self-attention, second half: the channel trains from svt_sdsa_kv_lif mask q
 * (a product of 0/1 values is their AND), broadcast over tokens.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_spike_mask(const uint8_t *q, const uint8_t *mask, uint32_t tokens, uint32_t channels,
                    uint32_t T, uint8_t *out_spikes)
{
    memset(out_spikes, 0, (tokens * channels * T + 7u) / 8u);
    for (uint32_t n = 0; n < tokens; ++n) {
        for (uint32_t c = 0; c < channels; ++c) {
            uint32_t neuron = n * channels + c;
            svt_spikes_or(out_spikes, neuron, T,
                          svt_spikes_get(q, neuron, T) & svt_spikes_get(mask, c, T));
        }
    }
}
