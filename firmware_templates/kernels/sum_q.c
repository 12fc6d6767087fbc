/*
 * The readout of an integer model: sums of spikes or counts over tokens and/or time,
 * where the fp32 model takes means. The head folds the divisor into its bias, so the
 * division never happens. Sums stay far below 2^31 (checked when quantizing).
 */
#include "svt_kernels.h"

void svt_sum_tokens_q(const uint8_t *in, svt_format_t fmt, uint32_t tokens, uint32_t channels,
                      uint32_t T, int32_t *out_tc)
{
    for (uint32_t t = 0; t < T; ++t) {
        for (uint32_t c = 0; c < channels; ++c) {
            out_tc[t * channels + c] =
                (int32_t)svt_token_count(in, fmt, tokens, channels, c, t, T);
        }
    }
}

void svt_sum_time_q(const int32_t *in_tc, uint32_t channels, uint32_t T, int32_t *out_c)
{
    for (uint32_t c = 0; c < channels; ++c) {
        int32_t sum = 0;
        for (uint32_t t = 0; t < T; ++t) {
            sum += in_tc[t * channels + c];
        }
        out_c[c] = sum;
    }
}

void svt_sum_tokens_time_q(const uint8_t *in, svt_format_t fmt, uint32_t tokens,
                           uint32_t channels, uint32_t T, int32_t *out_c)
{
    for (uint32_t c = 0; c < channels; ++c) {
        int32_t sum = 0;
        for (uint32_t t = 0; t < T; ++t) {
            sum += (int32_t)svt_token_count(in, fmt, tokens, channels, c, t, T);
        }
        out_c[c] = sum;
    }
}
