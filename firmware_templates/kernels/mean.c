/*
 * Readout means: over tokens (per step), over steps, or over both at once. Sums of
 * spikes are exact integers; each mean divides once, as PyTorch's mean does. Membrane
 * floats (a Spike-driven Transformer's stream) are summed in float.
 */
#include "svt_kernels.h"

/* Sum over tokens of channel c at step t: exact for spikes and counts. */
static float token_sum(const uint8_t *in, svt_format_t fmt, uint32_t tokens,
                       uint32_t channels, uint32_t c, uint32_t t, uint32_t T)
{
    if (fmt == SVT_MEMBRANE) {
        float sum = 0.0f;
        for (uint32_t n = 0; n < tokens; ++n) {
            sum += svt_value(in, fmt, n * channels + c, t, T);
        }
        return sum;
    }
    return (float)svt_token_count(in, fmt, tokens, channels, c, t, T);
}

void svt_mean_tokens(const uint8_t *in, svt_format_t fmt, uint32_t tokens, uint32_t channels,
                     uint32_t T, float *out_tc)
{
    for (uint32_t t = 0; t < T; ++t) {
        for (uint32_t c = 0; c < channels; ++c) {
            out_tc[t * channels + c] = token_sum(in, fmt, tokens, channels, c, t, T)
                                     / (float)tokens;
        }
    }
}

void svt_mean_time(const float *in_tc, uint32_t channels, uint32_t T, float *out_c)
{
    for (uint32_t c = 0; c < channels; ++c) {
        float sum = 0.0f;
        for (uint32_t t = 0; t < T; ++t) {
            sum += in_tc[t * channels + c];
        }
        out_c[c] = sum / (float)T;
    }
}

void svt_mean_tokens_time(const uint8_t *in, svt_format_t fmt, uint32_t tokens,
                          uint32_t channels, uint32_t T, float *out_c)
{
    for (uint32_t c = 0; c < channels; ++c) {
        float sum = 0.0f;  /* exact for spikes and counts: integers far below 2^24 */
        for (uint32_t t = 0; t < T; ++t) {
            sum += token_sum(in, fmt, tokens, channels, c, t, T);
        }
        out_c[c] = sum / (float)(tokens * T);
    }
}
