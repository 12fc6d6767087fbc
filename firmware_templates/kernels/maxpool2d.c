/*
 * Max-pool of spike trains: the max of 0/1 values is their OR, so each output train is the
 * bitwise OR of the trains in its window. Padding never wins a max (PyTorch pads with -inf).
 * A pixel's channels are contiguous in the buffer (channels * T bits), so the window is
 * ORed 32 bits at a time.
 */
#include <string.h>

#include "svt_kernels.h"

/* 32 bits of a pixel's trains: one word load when they start on a byte */
static inline uint32_t pixel_bits(const uint8_t *in, uint32_t first, uint32_t count)
{
    if ((first & 7u) == 0u && count == 32u) {
        uint32_t word;
        memcpy(&word, in + first / 8u, 4u);
        return word;
    }
    return svt_bits32(in, first, count);
}

void svt_maxpool2d(const uint8_t *in, const svt_pool_t *pool, uint32_t T, uint8_t *out)
{
    const uint32_t in_h = pool->in_h, in_w = pool->in_w, bits = pool->channels * T;
    const uint32_t kernel = pool->kernel, stride = pool->stride, pad = pool->pad;
    const uint32_t out_h = pool->out_h, out_w = pool->out_w;
    memset(out, 0, (out_h * out_w * bits + 7u) / 8u);
    for (uint32_t oy = 0; oy < out_h; ++oy) {
        /* the window's rows and columns inside the input, once per output row/pixel */
        int32_t iy0 = (int32_t)(oy * stride) - (int32_t)pad;
        uint32_t y0 = iy0 < 0 ? 0u : (uint32_t)iy0;
        uint32_t y1 = (uint32_t)(iy0 + (int32_t)kernel) < in_h ? (uint32_t)(iy0 + (int32_t)kernel)
                                                               : in_h;
        for (uint32_t ox = 0; ox < out_w; ++ox) {
            int32_t ix0 = (int32_t)(ox * stride) - (int32_t)pad;
            uint32_t x0 = ix0 < 0 ? 0u : (uint32_t)ix0;
            uint32_t x1 = (uint32_t)(ix0 + (int32_t)kernel) < in_w
                              ? (uint32_t)(ix0 + (int32_t)kernel)
                              : in_w;
            for (uint32_t base = 0; base < bits; base += 32u) {
                uint32_t count = bits - base < 32u ? bits - base : 32u, word = 0;
                for (uint32_t iy = y0; iy < y1; ++iy) {
                    for (uint32_t ix = x0; ix < x1; ++ix) {
                        word |= pixel_bits(in, (iy * in_w + ix) * bits + base, count);
                    }
                }
                if (word != 0u) {
                    svt_bits_or(out, (oy * out_w + ox) * bits + base, count, word);
                }
            }
        }
    }
}
