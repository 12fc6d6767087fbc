/*
 * svt-deploy spiking kernels: C99, no allocation, no float multiplications in layers fed
 * by spikes. One kernel per .c file.
 *
 * Data formats between layers (all tensors are HWC: channel fastest):
 *   spikes  T bits per neuron, neuron i at bit i*T of a byte array (bit t = spike at step t)
 *   counts  one uint8_t per neuron and timestep, [neuron][t]: small integer sums of spikes
 *           (the residual stream)
 *   floats  [t][channel] or [channel] means, and the analog input image (CHW, as PyTorch)
 *
 * Schedule: layer-major. Each call runs all T timesteps of one layer; synaptic layers and
 * the LIF layer they feed are fused and stream one output pixel/token at a time, so the
 * membrane state of a whole layer never exists.
 */
#ifndef SVT_KERNELS_H
#define SVT_KERNELS_H

#include <stdint.h>

#define SVT_MAX_TIMESTEPS 8

typedef enum { SVT_SPIKES = 0, SVT_COUNTS = 1 } svt_format_t;

typedef struct {
    float tau;       /* membrane time constant */
    float v_th;      /* firing threshold */
    float v_reset;   /* hard reset potential */
} svt_lif_t;

/* T-bit spike train of neuron i. A train never spans more than two bytes (T <= 8). */
static inline uint32_t svt_spikes_get(const uint8_t *buf, uint32_t i, uint32_t T)
{
    uint32_t bit = i * T, byte = bit >> 3, shift = bit & 7u;
    uint32_t word = buf[byte];
    if (shift + T > 8u) {
        word |= (uint32_t)buf[byte + 1] << 8;
    }
    return (word >> shift) & ((1u << T) - 1u);
}

/* OR a T-bit train into neuron i (the buffer starts zeroed). */
static inline void svt_spikes_or(uint8_t *buf, uint32_t i, uint32_t T, uint32_t train)
{
    uint32_t bit = i * T, byte = bit >> 3, shift = bit & 7u;
    uint32_t word = train << shift;
    buf[byte] |= (uint8_t)(word & 0xffu);
    if (shift + T > 8u) {
        buf[byte + 1] |= (uint8_t)(word >> 8);
    }
}

/* Activity of neuron i at step t: 0/1 for spikes, the stored sum for counts. */
static inline uint32_t svt_activity(const uint8_t *buf, svt_format_t fmt, uint32_t i,
                                    uint32_t t, uint32_t T)
{
    if (fmt == SVT_SPIKES) {
        return (svt_spikes_get(buf, i, T) >> t) & 1u;
    }
    return buf[i * T + t];
}

/* acc[j] += column[j]: the only arithmetic of a layer fed by spikes. */
static inline void svt_accumulate(float *acc, const float *column, uint32_t n)
{
    for (uint32_t j = 0; j < n; ++j) {
        acc[j] += column[j];
    }
}

/* lif.c */
uint32_t svt_lif_train(const float *current, uint32_t stride, uint32_t T, const svt_lif_t *lif);
uint32_t svt_lif_train_constant(float current, uint32_t T, const svt_lif_t *lif);

/* conv2d_analog_lif.c: first layer, analog image in, spikes out */
void svt_conv2d_analog_lif(const float *image, uint32_t in_c, uint32_t in_h, uint32_t in_w,
                           const float *weight, const float *bias, uint32_t out_c,
                           uint32_t kernel, uint32_t stride, uint32_t pad,
                           uint32_t out_h, uint32_t out_w, uint32_t T, const svt_lif_t *lif,
                           uint8_t *out_spikes, float *scratch);

/* conv2d_spiking_lif.c: spikes or counts in, spikes out */
void svt_conv2d_spiking_lif(const uint8_t *in, svt_format_t in_fmt, uint32_t in_c,
                            uint32_t in_h, uint32_t in_w, const float *weight_hwio,
                            const float *bias, uint32_t out_c, uint32_t kernel,
                            uint32_t stride, uint32_t pad, uint32_t out_h, uint32_t out_w,
                            uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes,
                            float *scratch);

/* linear_spiking_lif.c: per-token linear layer, spikes or counts in, spikes out */
void svt_linear_spiking_lif(const uint8_t *in, svt_format_t in_fmt, uint32_t tokens,
                            uint32_t in_c, const float *weight_io, const float *bias,
                            uint32_t out_c, uint32_t T, const svt_lif_t *lif,
                            uint8_t *out_spikes, float *scratch);

/* ssa_lif.c: spiking self-attention (q k^T) v * scale, then the attention LIF */
void svt_ssa_lif(const uint8_t *q, const uint8_t *k, const uint8_t *v, uint32_t tokens,
                 uint32_t heads, uint32_t head_dim, float scale, uint32_t T,
                 const svt_lif_t *lif, uint8_t *out_spikes, void *kv_scratch,
                 uint32_t kv_bytes, int32_t *acc_scratch);

/* maxpool2d.c: max-pool of spike trains (OR over the window) */
void svt_maxpool2d(const uint8_t *in, uint32_t channels, uint32_t in_h, uint32_t in_w,
                   uint32_t kernel, uint32_t stride, uint32_t pad, uint32_t out_h,
                   uint32_t out_w, uint32_t T, uint8_t *out);

/* add.c: residual add of spikes/counts into counts (out may alias a counts input) */
void svt_add(const uint8_t *a, svt_format_t a_fmt, const uint8_t *b, svt_format_t b_fmt,
             uint32_t neurons, uint32_t T, uint8_t *out_counts);

/* mean.c: means over tokens and/or time */
void svt_mean_tokens(const uint8_t *in, svt_format_t fmt, uint32_t tokens, uint32_t channels,
                     uint32_t T, float *out_tc);
void svt_mean_time(const float *in_tc, uint32_t channels, uint32_t T, float *out_c);
void svt_mean_tokens_time(const uint8_t *in, svt_format_t fmt, uint32_t tokens,
                          uint32_t channels, uint32_t T, float *out_c);

/* dense.c: classifier head on float features */
void svt_dense(const float *in, uint32_t in_c, const float *weight_oi, const float *bias,
               uint32_t out_c, float *out);

#endif /* SVT_KERNELS_H */
