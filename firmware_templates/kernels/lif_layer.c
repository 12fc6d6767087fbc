/*
 * A LIF layer on currents that were kept rather than streamed: the membrane stream at the
 * start of a Spike-driven block, or the token-averaged features before the head.
 * in[n * neuron_stride + t * time_stride] is neuron n's current at step t.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_lif_layer(const float *in, uint32_t neurons, uint32_t neuron_stride,
                   uint32_t time_stride, uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes)
{
    memset(out_spikes, 0, (neurons * T + 7u) / 8u);
    for (uint32_t n = 0; n < neurons; ++n) {
        svt_spikes_or(out_spikes, n, T, svt_lif_train(in + n * neuron_stride, time_stride, T, lif));
    }
}
