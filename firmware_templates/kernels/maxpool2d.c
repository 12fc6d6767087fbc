/*
 * Max-pool of spike trains: the max of 0/1 values is their OR, so each output train is the
 * bitwise OR of the trains in its window. Padding never wins a max (PyTorch pads with -inf).
 * A pixel's channels are contiguous in the buffer (channels * T bits), so the window is
 * ORed 32 bits at a time.
 */
#include <string.h>

#include "svt_kernels.h"

void svt_maxpool2d(const uint8_t *in, const svt_pool_t *pool, uint32_t T, uint8_t *out)
{
    const uint32_t in_h = pool->in_h, in_w = pool->in_w, bits = pool->channels * T;
    const uint32_t kernel = pool->kernel, stride = pool->stride, pad = pool->pad;
    const uint32_t out_h = pool->out_h, out_w = pool->out_w;
    memset(out, 0, (out_h * out_w * bits + 7u) / 8u);
    for (uint32_t oy = 0; oy < out_h; ++oy) {
        for (uint32_t ox = 0; ox < out_w; ++ox) {
            for (uint32_t base = 0; base < bits; base += 32u) {
                uint32_t count = bits - base < 32u ? bits - base : 32u, word = 0;
                for (uint32_t ky = 0; ky < kernel; ++ky) {
                    int32_t iy = (int32_t)(oy * stride + ky) - (int32_t)pad;
                    if (iy < 0 || iy >= (int32_t)in_h) {
                        continue;
                    }
                    for (uint32_t kx = 0; kx < kernel; ++kx) {
                        int32_t ix = (int32_t)(ox * stride + kx) - (int32_t)pad;
                        if (ix < 0 || ix >= (int32_t)in_w) {
                            continue;
                        }
                        uint32_t pixel = (uint32_t)iy * in_w + (uint32_t)ix;
                        word |= svt_bits32(in, pixel * bits + base, count);
                    }
                }
                if (word != 0u) {
                    svt_bits_or(out, (oy * out_w + ox) * bits + base, count, word);
                }
            }
        }
    }
}
