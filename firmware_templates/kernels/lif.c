/*
 * Multi-step leaky integrate-and-fire neuron, hard reset, decaying input:
 *     h = v + (x - (v - v_reset)) / tau;   spike = h >= v_th;   v = spike ? v_reset : h
 * This is SpikingJelly's arithmetic, operation for operation, so identical input currents
 * give identical spikes.
 */
#include "svt_kernels.h"

uint32_t svt_lif_train(const float *current, uint32_t stride, uint32_t T, const svt_lif_t *lif)
{
    float v = lif->v_reset;
    uint32_t train = 0;
    for (uint32_t t = 0; t < T; ++t) {
        float h = v + (current[t * stride] - (v - lif->v_reset)) / lif->tau;
        if (h >= lif->v_th) {
            train |= 1u << t;
            v = lif->v_reset;
        } else {
            v = h;
        }
    }
    return train;
}

/* The first layer sees the same image at every step: one current drives all T steps. */
uint32_t svt_lif_train_constant(float current, uint32_t T, const svt_lif_t *lif)
{
    return svt_lif_train(&current, 0, T, lif);
}
