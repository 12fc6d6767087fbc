/*
 * Readout means: over tokens (per step), over steps, or over both at once. Sums of
 * spikes are exact integers; each mean divides once, as PyTorch's mean does.
 */
#include "svt_kernels.h"

void svt_mean_tokens(const uint8_t *in, svt_format_t fmt, uint32_t tokens, uint32_t channels,
                     uint32_t T, float *out_tc)
{
    for (uint32_t t = 0; t < T; ++t) {
        for (uint32_t c = 0; c < channels; ++c) {
            uint32_t sum = 0;
            for (uint32_t n = 0; n < tokens; ++n) {
                sum += svt_activity(in, fmt, n * channels + c, t, T);
            }
            out_tc[t * channels + c] = (float)sum / (float)tokens;
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
        uint32_t sum = 0;
        for (uint32_t t = 0; t < T; ++t) {
            for (uint32_t n = 0; n < tokens; ++n) {
                sum += svt_activity(in, fmt, n * channels + c, t, T);
            }
        }
        out_c[c] = (float)sum / (float)(tokens * T);
    }
}
