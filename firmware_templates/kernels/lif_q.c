/*
 * Integer leaky integrate-and-fire neuron, hard reset to 0, decaying input, tau = 2^k:
 *     h = v + ((x - v) >> k);   spike = h >= threshold;   v = spike ? 0 : h
 * Currents and threshold are in the feeding layer's units (svt-deploy quant/integer.py),
 * which keeps |x|, |v| and the threshold below 2^30, so x - v cannot overflow. The shift
 * of a negative value is arithmetic (flooring) with GCC and Clang, as PyTorch's >>.
 */
#include "svt_kernels.h"

uint32_t svt_lif_train_q(const int32_t *current, uint32_t stride, uint32_t T,
                         int32_t threshold, uint32_t decay_shift)
{
    int32_t v = 0;
    uint32_t train = 0;
    for (uint32_t t = 0; t < T; ++t) {
        int32_t h = v + ((current[t * stride] - v) >> decay_shift);
        if (h >= threshold) {
            train |= 1u << t;
            v = 0;
        } else {
            v = h;
        }
    }
    return train;
}
