/*
 * Test harness for the spike-fed integer sums (tests/test_event_kernels.py), built once
 * with the event-driven kernels and once with their dense twins: reads one case from
 * stdin, writes every output pixel's (or token's) sums acc[t][out_c] as int32 to stdout
 * (from int16 lanes or int32, wherever the kernel left them: svt_sums_get).
 * Little-endian uint32 throughout.
 *
 *   conv:   T, format, bits, in_c, in_h, in_w, out_c, kernel, stride, pad, out_h, out_w,
 *           weight bytes, weights (HWIO rows of out_c), input bytes, input
 *   linear: T, format, bits, tokens, in_c, out_c, weight bytes, weights, input bytes, input
 * format: 0 spikes (packed trains), 1 counts (a byte per neuron and step).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svt_kernels.h"

static uint32_t read_u32(void)
{
    uint32_t v;
    if (fread(&v, sizeof v, 1, stdin) != 1) {
        fprintf(stderr, "harness: short input\n");
        exit(2);
    }
    return v;
}

/* Exactly n bytes: no slack, so that the sanitizer build catches a read past the end. */
static uint8_t *read_sized(void)
{
    uint32_t n = read_u32();
    uint8_t *p = malloc(n ? n : 1u);
    if (p == NULL || fread(p, 1, n, stdin) != n) {
        fprintf(stderr, "harness: short input\n");
        exit(2);
    }
    return p;
}

static void write_sums(const svt_sums_t *sums, uint32_t T)
{
    for (uint32_t t = 0; t < T; ++t) {
        for (uint32_t j = 0; j < sums->out_c; ++j) {
            int32_t v = svt_sums_get(sums, t, j);
            fwrite(&v, sizeof v, 1, stdout);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "conv") != 0 && strcmp(argv[1], "linear") != 0)) {
        fprintf(stderr, "usage: %s conv|linear < case\n", argv[0]);
        return 2;
    }
    uint32_t T = read_u32();
    svt_format_t fmt = read_u32() == 0u ? SVT_SPIKES : SVT_COUNTS;
    uint32_t bits = read_u32();
    if (strcmp(argv[1], "conv") == 0) {
        svt_conv2d_q_t conv = {0};
        conv.in_c = read_u32();
        conv.in_h = read_u32();
        conv.in_w = read_u32();
        conv.out_c = read_u32();
        conv.kernel = read_u32();
        conv.stride = read_u32();
        conv.pad = read_u32();
        conv.out_h = read_u32();
        conv.out_w = read_u32();
        conv.bits = bits;
        uint8_t *weight = read_sized(), *in = read_sized();
        int32_t *acc = malloc((size_t)T * conv.out_c * sizeof(int32_t));
        conv.weight = weight;
        for (uint32_t oy = 0; oy < conv.out_h; ++oy) {
            for (uint32_t ox = 0; ox < conv.out_w; ++ox) {
                svt_sums_t sums;
                svt_conv2d_pixel_sums_q(in, fmt, &conv, oy, ox, T, acc, &sums);
                write_sums(&sums, T);
            }
        }
        free(weight);
        free(in);
        free(acc);
        return 0;
    }
    svt_linear_q_t linear = {0};
    linear.tokens = read_u32();
    linear.in_c = read_u32();
    linear.out_c = read_u32();
    linear.bits = bits;
    uint8_t *weight = read_sized(), *in = read_sized();
    int32_t *acc = malloc((size_t)T * linear.out_c * sizeof(int32_t));
    linear.weight_io = weight;
    for (uint32_t n = 0; n < linear.tokens; ++n) {
        svt_sums_t sums;
        svt_linear_token_sums_q(in, fmt, &linear, n, T, acc, &sums);
        write_sums(&sums, T);
    }
    free(weight);
    free(in);
    free(acc);
    return 0;
}
