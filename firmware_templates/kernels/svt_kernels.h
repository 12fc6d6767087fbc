/*
 * svt-deploy spiking kernels: C99, no allocation, no float multiplications in layers fed
 * by spikes. One kernel per .c file.
 *
 * Data formats between layers (all tensors are HWC: channel fastest):
 *   spikes  T bits per neuron, neuron i at bit i*T of a byte array (bit t = spike at step t)
 *   counts  one uint8_t per neuron and timestep, [neuron][t]: small integer sums of spikes
 *           (the residual stream of Spikformer-style models)
 *   membrane one float per neuron and timestep, [neuron][t]: real-valued currents that are
 *           kept (the "membrane shortcut" stream of Spike-driven Transformers: sums and
 *           max-pools of BatchNorm outputs, read by LIF layers)
 *   floats  [t][channel] or [channel] means, and the analog input image (CHW, as PyTorch)
 *
 * Schedule: layer-major. Each call runs all T timesteps of one layer; synaptic layers and
 * the LIF layer they feed are fused and stream one output pixel/token at a time, so the
 * membrane state of a whole layer never exists.
 */
#ifndef SVT_KERNELS_H
#define SVT_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define SVT_MAX_TIMESTEPS 8

typedef enum { SVT_SPIKES = 0, SVT_COUNTS = 1, SVT_MEMBRANE = 2 } svt_format_t;

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

/* Value of neuron i at step t in any format (membrane values are floats). */
static inline float svt_value(const uint8_t *buf, svt_format_t fmt, uint32_t i, uint32_t t,
                              uint32_t T)
{
    if (fmt == SVT_MEMBRANE) {
        return ((const float *)(const void *)buf)[i * T + t];
    }
    return (float)svt_activity(buf, fmt, i, t, T);
}

/* acc[j] += column[j]: the only arithmetic of a layer fed by spikes. */
static inline void svt_accumulate(float *acc, const float *column, uint32_t n)
{
    for (uint32_t j = 0; j < n; ++j) {
        acc[j] += column[j];
    }
}

/* Input neuron i's activity, all steps, into currents scratch[t * out_c + j]: its weight
 * column once per spike, or count times for a count. */
static inline void svt_accumulate_input(float *scratch, const float *column, uint32_t out_c,
                                        const uint8_t *in, svt_format_t in_fmt, uint32_t i,
                                        uint32_t T)
{
    if (in_fmt == SVT_SPIKES) {
        uint32_t train = svt_spikes_get(in, i, T);
        for (uint32_t t = 0; train != 0u; ++t, train >>= 1) {
            if (train & 1u) {
                svt_accumulate(scratch + t * out_c, column, out_c);
            }
        }
    } else {
        for (uint32_t t = 0; t < T; ++t) {
            for (uint32_t k = in[i * T + t]; k > 0u; --k) {
                svt_accumulate(scratch + t * out_c, column, out_c);
            }
        }
    }
}

/* lif.c */
uint32_t svt_lif_train(const float *current, uint32_t stride, uint32_t T, const svt_lif_t *lif);
uint32_t svt_lif_train_constant(float current, uint32_t T, const svt_lif_t *lif);

/* The currents of one pixel/token (scratch[t * out_c + c]) leave a synaptic kernel as the
 * LIF's spike trains, or, without a LIF, as membrane floats [neuron][t]. */
static inline void svt_currents_out(const float *scratch, uint32_t first, uint32_t out_c,
                                    uint32_t T, const svt_lif_t *lif, uint8_t *out)
{
    for (uint32_t co = 0; co < out_c; ++co) {
        if (lif != NULL) {
            svt_spikes_or(out, first + co, T, svt_lif_train(scratch + co, out_c, T, lif));
        } else {
            float *membrane = (float *)(void *)out + (first + co) * T;
            for (uint32_t t = 0; t < T; ++t) {
                membrane[t] = scratch[t * out_c + co];
            }
        }
    }
}

/* Parameter structs (CMSIS-NN style): a layer's shape and weights in one argument. */

/* A conv2d: square kernel, symmetric zero padding, BN folded into weight and bias. */
typedef struct {
    uint32_t in_c, in_h, in_w;
    uint32_t out_c, out_h, out_w;
    uint32_t kernel, stride, pad;
    const float *weight;  /* HWIO [kernel][kernel][in_c][out_c] when fed by spikes (one input's
                             column contiguous); OIHW, PyTorch's order, on the analog image */
    const float *bias;
} svt_conv2d_t;

/* A max-pool: its input, window and output size (channels pass through). */
typedef struct {
    uint32_t channels, in_h, in_w;
    uint32_t kernel, stride, pad;
    uint32_t out_h, out_w;
} svt_pool_t;

/* A linear layer applied to every token. */
typedef struct {
    uint32_t tokens, in_c, out_c;
    const float *weight_io;  /* [in_c][out_c]: one input's column contiguous */
    const float *bias;
} svt_linear_t;

/* Spiking self-attention: C = heads * head_dim channels per token. */
typedef struct {
    uint32_t tokens, heads, head_dim;
    uint32_t kv_bytes;  /* bytes per k^T v entry: 1 while tokens <= 255, else 2 */
    float scale;
} svt_ssa_t;

/* conv2d_pixel.c: the currents of one output pixel, scratch[t * out_c + c] */
void svt_conv2d_pixel_currents(const uint8_t *in, svt_format_t in_fmt,
                               const svt_conv2d_t *conv, uint32_t oy, uint32_t ox,
                               uint32_t T, float *scratch);

/* conv2d_spiking_maxpool.c: conv2d fed by spikes, its currents max-pooled (membrane out) */
void svt_conv2d_spiking_maxpool(const uint8_t *in, svt_format_t in_fmt,
                                const svt_conv2d_t *conv, const svt_pool_t *pool, uint32_t T,
                                float *out, float *scratch);

/* conv2d_analog_lif.c: first layer, analog image in, spikes out */
void svt_conv2d_analog_lif(const float *image, const svt_conv2d_t *conv, uint32_t T,
                           const svt_lif_t *lif, uint8_t *out_spikes, float *scratch);

/* conv2d_spiking_lif.c: spikes or counts in, spikes out; with lif == NULL the currents
 * themselves are written, as membrane floats [neuron][t], to (float *)out_spikes */
void svt_conv2d_spiking_lif(const uint8_t *in, svt_format_t in_fmt, const svt_conv2d_t *conv,
                            uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes,
                            float *scratch);

/* linear_spiking_lif.c: per-token linear layer, spikes or counts in, spikes out (or, with
 * lif == NULL, membrane floats as conv2d_spiking_lif) */
void svt_linear_spiking_lif(const uint8_t *in, svt_format_t in_fmt,
                            const svt_linear_t *linear, uint32_t T, const svt_lif_t *lif,
                            uint8_t *out_spikes, float *scratch);

/* ssa_lif.c: spiking self-attention (q k^T) v * scale, then the attention LIF */
void svt_ssa_lif(const uint8_t *q, const uint8_t *k, const uint8_t *v, const svt_ssa_t *ssa,
                 uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes, void *kv_scratch,
                 int32_t *acc_scratch);

/* maxpool2d.c: max-pool of spike trains (OR over the window) */
void svt_maxpool2d(const uint8_t *in, const svt_pool_t *pool, uint32_t T, uint8_t *out);

/* maxpool2d_membrane.c: max-pool of membrane floats (a max-pool on BatchNorm outputs) */
void svt_maxpool2d_membrane(const float *in, const svt_pool_t *pool, uint32_t T, float *out);

/* add_membrane.c: residual add into membrane floats (out may alias a membrane input) */
void svt_add_membrane(const uint8_t *a, svt_format_t a_fmt, const uint8_t *b,
                      svt_format_t b_fmt, uint32_t neurons, uint32_t T, float *out);

/* lif_layer.c: a LIF layer on kept currents: in[n * neuron_stride + t * time_stride] */
void svt_lif_layer(const float *in, uint32_t neurons, uint32_t neuron_stride,
                   uint32_t time_stride, uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes);

/* sdsa_kv_lif.c: Spike-driven self-attention, first half: per channel, the count of tokens
 * where k and v both spike, through the attention LIF -> one spike train per channel */
void svt_sdsa_kv_lif(const uint8_t *k, const uint8_t *v, uint32_t tokens, uint32_t channels,
                     uint32_t T, const svt_lif_t *lif, uint8_t *out_spikes);

/* spike_mask.c: second half: q masked by the channel trains, out[n][c] = q[n][c] & m[c] */
void svt_spike_mask(const uint8_t *q, const uint8_t *mask, uint32_t tokens, uint32_t channels,
                    uint32_t T, uint8_t *out_spikes);

/* add.c: residual add of spikes/counts into counts (out may alias a counts input) */
void svt_add(const uint8_t *a, svt_format_t a_fmt, const uint8_t *b, svt_format_t b_fmt,
             uint32_t neurons, uint32_t T, uint8_t *out_counts);

/* mean.c: means over tokens and/or time (of spikes, counts or membrane floats) */
void svt_mean_tokens(const uint8_t *in, svt_format_t fmt, uint32_t tokens, uint32_t channels,
                     uint32_t T, float *out_tc);
void svt_mean_time(const float *in_tc, uint32_t channels, uint32_t T, float *out_c);
void svt_mean_tokens_time(const uint8_t *in, svt_format_t fmt, uint32_t tokens,
                          uint32_t channels, uint32_t T, float *out_c);

/* dense.c: classifier head on float features */
void svt_dense(const float *in, uint32_t in_c, const float *weight_oi, const float *bias,
               uint32_t out_c, float *out);

#endif /* SVT_KERNELS_H */
