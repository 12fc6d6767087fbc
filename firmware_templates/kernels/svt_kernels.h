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
#include <string.h>

#define SVT_MAX_TIMESTEPS 8

/* A generated model's project fixes its number of timesteps in svt_config.h, so that the
 * compiler unrolls the loops over steps; built without it (the kernel tests), a kernel
 * takes T at run time. */
#if defined(__has_include)
#if __has_include("svt_config.h")
#include "svt_config.h"
#endif
#endif
#ifdef SVT_FIXED_TIMESTEPS
#define SVT_STEPS(T) ((void)(T), (uint32_t)SVT_FIXED_TIMESTEPS)
#else
#define SVT_STEPS(T) (T)
#endif
/* Likewise the integer LIF's decay shift when every LIF of the model has the same one: a
 * constant shift folds into the add (ADD h, v, d, ASR #k). */
#ifdef SVT_FIXED_DECAY_SHIFT
#define SVT_DECAY_SHIFT(k) ((void)(k), (uint32_t)SVT_FIXED_DECAY_SHIFT)
#else
#define SVT_DECAY_SHIFT(k) (k)
#endif
/* Hides a value from the optimizer: x * 2^f + b then compiles to one MLA, where GCC,
 * seeing the power of two, would shift and add. */
#if defined(__GNUC__) && defined(__arm__)
#define SVT_OPAQUE(x) __asm__("" : "+r"(x))
#else
#define SVT_OPAQUE(x) ((void)0)
#endif
/* Unrolls the loop it precedes (GCC; -O2 alone keeps a 4-step loop rolled). */
#if defined(__GNUC__) && !defined(__clang__)
#define SVT_UNROLL_STEPS _Pragma("GCC unroll 8")
#else
#define SVT_UNROLL_STEPS
#endif

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

/* Sum over tokens of channel c at step t, of spikes or counts: an exact integer. */
static inline uint32_t svt_token_count(const uint8_t *in, svt_format_t fmt, uint32_t tokens,
                                       uint32_t channels, uint32_t c, uint32_t t, uint32_t T)
{
    uint32_t sum = 0;
    for (uint32_t n = 0; n < tokens; ++n) {
        sum += svt_activity(in, fmt, n * channels + c, t, T);
    }
    return sum;
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

/* ------------------------------------------------------------------------------------
 * Integer kernels (*_q.c). The conventions are svt-deploy's quant/integer.py, whose
 * PyTorch reference computes the same integers: a spike-fed layer sums integer weights
 * into int32, its currents are acc * 2^frac_bits + bias in units of its own per-channel
 * scale, and the LIF it feeds compares with per-channel thresholds in those units.
 * Weights: 8 bits (int8_t) or 4 bits (two per byte, even index in the low nibble), in
 * rows that start on a byte (a row of odd length ends with a zero nibble).
 * ------------------------------------------------------------------------------------ */

typedef struct {
    const int32_t *threshold;  /* per channel, in the feeding layer's current units */
    uint32_t decay_shift;      /* tau = 2^decay_shift: h = v + ((x - v) >> decay_shift) */
} svt_lif_q_t;

/* A conv2d with integer weights (rows as in svt_conv2d_t: HWIO columns when fed by spikes,
 * OIHW rows on the image). */
typedef struct {
    uint32_t in_c, in_h, in_w;
    uint32_t out_c, out_h, out_w;
    uint32_t kernel, stride, pad;
    uint32_t bits, frac_bits;
    int32_t input_zero_point;  /* the image: the pixel value that means 0.0 */
    const uint8_t *weight;
    const int32_t *bias;       /* in current units */
} svt_conv2d_q_t;

typedef struct {
    uint32_t tokens, in_c, out_c;
    uint32_t bits, frac_bits;
    const uint8_t *weight_io;  /* rows: one per input, out_c weights each */
    const int32_t *bias;
} svt_linear_q_t;

typedef struct {
    uint32_t tokens, heads, head_dim;
    uint32_t kv_bytes;
    uint32_t frac_bits;  /* the counts (q k^T) v, shifted: the scale is the LIF's unit */
} svt_ssa_q_t;

typedef struct {
    uint32_t in_c, out_c;
    uint32_t bits;
    const uint8_t *weight_oi;  /* rows: one per class, in_c weights each */
    const int32_t *bias;
} svt_dense_q_t;

static inline uint32_t svt_row_bytes(uint32_t row_len, uint32_t bits)
{
    return bits == 8u ? row_len : (row_len + 1u) / 2u;
}

/* Sign-extend a 4-bit two's complement value. */
static inline int32_t svt_nibble(uint32_t nibble)
{
    return (int32_t)(nibble ^ 8u) - 8;
}

/* Weight j of a row. */
static inline int32_t svt_weight_q(const uint8_t *row, uint32_t j, uint32_t bits)
{
    if (bits == 8u) {
        return (int32_t)(int8_t)row[j];
    }
    uint32_t byte = row[j >> 1];
    return svt_nibble((j & 1u) ? byte >> 4 : byte & 0xFu);
}

/* acc[j] += times * row[j] for j < n: a spike adds its column once, a count k times. */
static inline void svt_accumulate_q(int32_t *acc, const uint8_t *row, uint32_t n,
                                    uint32_t bits, int32_t times)
{
    if (bits == 8u) {
        const int8_t *w = (const int8_t *)(const void *)row;
        for (uint32_t j = 0; j < n; ++j) {
            acc[j] += times * (int32_t)w[j];
        }
        return;
    }
    uint32_t j = 0;
    for (; j + 1u < n; j += 2u) {
        uint32_t byte = row[j >> 1];
        acc[j] += times * svt_nibble(byte & 0xFu);
        acc[j + 1u] += times * svt_nibble(byte >> 4);
    }
    if (j < n) {
        acc[j] += times * svt_nibble(row[j >> 1] & 0xFu);
    }
}

/* ------------------------------------------------------------------------------------
 * Event-driven accumulation: the spike-fed integer layers visit only active inputs, found
 * 32 at a time in the packed trains (count-trailing-zeros), and add each one's weight
 * column. svt_add_column_q has a portable reference (add_column_q.c) and a Cortex-M4/M7
 * variant using the DSP extension (add_column_q_dsp.c); builds for a core with the DSP
 * extension call the latter unless SVT_REFERENCE_KERNELS is defined.
 * ------------------------------------------------------------------------------------ */

/* Index of the lowest set bit of a nonzero word (RBIT + CLZ on ARMv7-M). */
static inline uint32_t svt_ctz32(uint32_t x)
{
    return (uint32_t)__builtin_ctz(x);
}

/* `count` (1..32) bits of a packed bit array starting at bit `first`, in the low bits.
 * Reads only the bytes that hold them. */
static inline uint32_t svt_bits32(const uint8_t *buf, uint32_t first, uint32_t count)
{
    const uint8_t *p = buf + (first >> 3);
    uint32_t shift = first & 7u, bytes = (shift + count + 7u) >> 3;
    uint32_t word = 0;
    if (bytes >= 4u) {
        memcpy(&word, p, 4u); /* one unaligned load where the core allows it */
        word >>= shift;
        if (bytes == 5u) {
            word |= (uint32_t)p[4] << (32u - shift);
        }
    } else {
        for (uint32_t b = 0; b < bytes; ++b) {
            word |= (uint32_t)p[b] << (8u * b);
        }
        word >>= shift;
    }
    return count < 32u ? word & ((1u << count) - 1u) : word;
}

/* add_column_q.c / add_column_q_dsp.c: acc[j] += columns[c][j] for j < n and c < count
 * (int8 or int4 weights): the columns of `count` events at one step, in one pass over
 * the sums. */
void svt_add_columns_q_ref(int32_t *acc, const uint8_t *const *columns, uint32_t count,
                           uint32_t n, uint32_t bits);
void svt_add_columns_q_dsp(int32_t *acc, const uint8_t *const *columns, uint32_t count,
                           uint32_t n, uint32_t bits);
#if defined(__ARM_FEATURE_DSP) && !defined(SVT_REFERENCE_KERNELS)
#define svt_add_columns_q svt_add_columns_q_dsp
#else
#define svt_add_columns_q svt_add_columns_q_ref
#endif

/* The sums of one pixel/token of a spike-fed integer layer, all T steps. They start in
 * int16 lanes, two to a word, in the order the DSP extension's SXTAB16 adds four int8
 * weights: outputs 4g and 4g+2 share a word, 4g+1 and 4g+3 the next, so output j is lane
 * svt_lane(j) of its step (lane_c lanes a step, out_c rounded up to 4). A lane is exact
 * while at most SVT_LANE_EVENTS weights (|w| <= 128) were added to it; a step about to
 * pass that widens the pixel's sums to int32, in place (the lanes use the first half of
 * the int32 storage), and the adds go on there. int4 weights and the dense twins use the
 * int32 sums throughout. Half the bytes per sum is half the loads and stores, and two
 * lanes per SXTAB16 half the adds. */
#define SVT_LANE_EVENTS 255u
typedef struct {
    int32_t *acc;    /* storage for T * out_c int32 sums, acc[t * out_c + j] */
    uint32_t out_c;
    uint32_t lane_c; /* lanes per step */
    uint32_t wide;   /* 0: the sums are in lanes ((int16_t *)acc), 1: in acc */
} svt_sums_t;

static inline uint32_t svt_lane(uint32_t j)
{
    return (j & ~3u) | ((j & 1u) << 1) | ((j >> 1) & 1u);
}

static inline int16_t *svt_sums_lanes(const svt_sums_t *sums)
{
    return (int16_t *)(void *)sums->acc;
}

/* Output j's sum at step t, wherever it is (tests and slow paths). */
static inline int32_t svt_sums_get(const svt_sums_t *sums, uint32_t t, uint32_t j)
{
    return sums->wide ? sums->acc[t * sums->out_c + j]
                      : svt_sums_lanes(sums)[t * sums->lane_c + svt_lane(j)];
}

/* add_lanes_q.c / add_lanes_q_dsp.c / add_lanes_q_sse.c: lanes[svt_lane(j)] +=
 * columns[c][j] for j < n and c < count (int8 weights; lanes of outputs >= n may change).
 * The DSP variant adds two lanes per SXTAB16; the SSE2 one eight per PADDW. */
void svt_add_lanes_q_ref(int16_t *lanes, const uint8_t *const *columns, uint32_t count,
                         uint32_t n);
void svt_add_lanes_q_dsp(int16_t *lanes, const uint8_t *const *columns, uint32_t count,
                         uint32_t n);
void svt_add_lanes_q_sse(int16_t *lanes, const uint8_t *const *columns, uint32_t count,
                         uint32_t n);
#if defined(__ARM_FEATURE_DSP) && !defined(SVT_REFERENCE_KERNELS)
#define svt_add_lanes_q svt_add_lanes_q_dsp
#elif defined(__SSE2__) && !defined(SVT_REFERENCE_KERNELS)
#define svt_add_lanes_q svt_add_lanes_q_sse
#else
#define svt_add_lanes_q svt_add_lanes_q_ref
#endif

/* Events found but not yet added: per step, up to SVT_EVENT_BATCH weight columns, added
 * together (one pass over the sums for several columns). */
#define SVT_EVENT_BATCH 8u
typedef struct {
    svt_sums_t *sums;
    uint32_t bits, T;
    uint32_t added[SVT_MAX_TIMESTEPS]; /* events in each step's lanes */
    uint32_t count[SVT_MAX_TIMESTEPS];
    const uint8_t *columns[SVT_MAX_TIMESTEPS][SVT_EVENT_BATCH];
} svt_events_t;

/* events_q.c: zero the sums (int16 lanes for int8 weights and out_c >= 4, where the lanes
 * fit in the first half of the int32 storage) and start collecting; add every active input
 * among inputs [first, first + n) of `in` (T steps each): its weight row (rows + (input -
 * first) * row_bytes, out_c weights) goes into step t's sums, once per spike, k times for
 * a count of k; finish adding what is still collected. */
void svt_events_begin(svt_events_t *ev, svt_sums_t *sums, int32_t *storage, uint32_t out_c,
                      uint32_t bits, uint32_t T);
void svt_add_events_q(svt_events_t *ev, const uint8_t *rows, uint32_t row_bytes,
                      const uint8_t *in, svt_format_t in_fmt, uint32_t first, uint32_t n);
void svt_events_end(svt_events_t *ev);
/* events_q.c: move lane sums to int32 (in place, from the last sum back) */
void svt_sums_widen(svt_sums_t *sums, uint32_t T);

/* OR `count` (1..32) bits into a packed bit array at bit `first` (it starts zeroed). */
static inline void svt_bits_or(uint8_t *buf, uint32_t first, uint32_t count, uint32_t bits)
{
    uint8_t *p = buf + (first >> 3);
    uint32_t shift = first & 7u, bytes = (shift + count + 7u) >> 3;
    if (bytes == 4u && shift == 0u) { /* a whole word of its own: one store */
        uint32_t word;
        memcpy(&word, p, 4u);
        word |= bits;
        memcpy(p, &word, 4u);
        return;
    }
    uint32_t low = bits << shift, high = shift ? bits >> (32u - shift) : 0u;
    for (uint32_t b = 0; b < bytes && b < 4u; ++b) {
        p[b] |= (uint8_t)(low >> (8u * b));
    }
    if (bytes == 5u) {
        p[4] |= (uint8_t)high;
    }
}

/* Integer leaky integrate-and-fire neuron, hard reset to 0, decaying input, tau = 2^k:
 *     h = v + ((x - v) >> k);   spike = h >= threshold;   v = spike ? 0 : h
 * over x = sums[t * stride] * unit + bias, t < T, the sums int32 (wide) or int16 lanes
 * (unit = 2^frac_bits); returns the spike train (bit t: a spike at step t). Called with a
 * constant `wide`, it compiles to one load per step of the right width.
 * Currents and threshold are in the feeding layer's units (svt-deploy quant/integer.py),
 * which keeps |x|, |v| and the threshold below 2^30, so x - v cannot overflow. The shift
 * of a negative value is arithmetic (flooring) with GCC and Clang, as PyTorch's >>.
 * Inline: it runs once per neuron and step, where a call would cost as much as the step. */
static inline uint32_t svt_neuron_train_q(const void *sums, uint32_t wide, uint32_t stride,
                                          int32_t unit, int32_t bias, int32_t threshold,
                                          uint32_t decay_shift, uint32_t T)
{
    int32_t v = 0;
    uint32_t train = 0, bit = 1;
    T = SVT_STEPS(T);
    decay_shift = SVT_DECAY_SHIFT(decay_shift);
    SVT_UNROLL_STEPS
    for (uint32_t t = 0; t < T; ++t, bit <<= 1) {
        int32_t x = wide ? ((const int32_t *)sums)[t * stride]
                         : (int32_t)((const int16_t *)sums)[t * stride];
        int32_t h = v + ((x * unit + bias - v) >> decay_shift);
        if (h >= threshold) {
            train |= bit;
            v = 0;
        } else {
            v = h;
        }
    }
    return train;
}

/* Packs the trains of consecutive neurons in a register, ORed into `out` 32 bits at a
 * time: `pending` holds `filled` bits not yet written, from bit `at` of `out`. */
typedef struct {
    uint8_t *out;
    uint32_t at, pending, filled;
} svt_train_packer_t;

static inline void svt_pack_trains(svt_train_packer_t *p, uint32_t trains, uint32_t bits)
{
    if (p->filled + bits > 32u) {
        svt_bits_or(p->out, p->at, p->filled, p->pending);
        p->at += p->filled;
        p->pending = 0;
        p->filled = 0;
    }
    p->pending |= trains << p->filled;
    p->filled += bits;
}

static inline void svt_pack_flush(svt_train_packer_t *p)
{
    if (p->filled != 0u) {
        svt_bits_or(p->out, p->at, p->filled, p->pending);
    }
}

/* The int32 sums of one pixel/token (acc[t * out_c + c]) become currents
 * acc * 2^frac_bits + bias[c] (bias NULL: none), go through the LIF and are packed into
 * `out` from neuron `first`. */
static inline void svt_currents_out_q(const int32_t *acc, const int32_t *bias,
                                      uint32_t frac_bits, uint32_t first, uint32_t out_c,
                                      uint32_t T, const svt_lif_q_t *lif, uint8_t *out)
{
    int32_t unit = (int32_t)(1u << frac_bits);
    SVT_OPAQUE(unit);
    const uint32_t shift = lif->decay_shift; /* locals: the byte stores could alias *lif */
    const int32_t *th = lif->threshold;
    T = SVT_STEPS(T);
    svt_train_packer_t p = {out, first * T, 0, 0};
    for (uint32_t co = 0; co < out_c; ++co) {
        svt_pack_trains(&p,
                        svt_neuron_train_q(acc + co, 1, out_c, unit, bias != NULL ? bias[co] : 0,
                                           th[co], shift, T),
                        T);
    }
    svt_pack_flush(&p);
}

/* The same from lane sums: four outputs at a time, each read from its lane (the trains
 * are packed in output order). */
static inline void svt_lanes_out_q(const int16_t *lanes, uint32_t lane_c, const int32_t *bias,
                                   uint32_t frac_bits, uint32_t first, uint32_t out_c,
                                   uint32_t T, const svt_lif_q_t *lif, uint8_t *out)
{
    int32_t unit = (int32_t)(1u << frac_bits);
    SVT_OPAQUE(unit);
    const uint32_t shift = lif->decay_shift;
    const int32_t *th = lif->threshold;
    T = SVT_STEPS(T);
    svt_train_packer_t p = {out, first * T, 0, 0};
    uint32_t co = 0;
    for (; co + 4u <= out_c; co += 4u) {
        const int16_t *g = lanes + co;
        uint32_t t0 = svt_neuron_train_q(g, 0, lane_c, unit, bias[co], th[co], shift, T);
        uint32_t t2 = svt_neuron_train_q(g + 1, 0, lane_c, unit, bias[co + 2u], th[co + 2u],
                                         shift, T);
        uint32_t t1 = svt_neuron_train_q(g + 2, 0, lane_c, unit, bias[co + 1u], th[co + 1u],
                                         shift, T);
        uint32_t t3 = svt_neuron_train_q(g + 3, 0, lane_c, unit, bias[co + 3u], th[co + 3u],
                                         shift, T);
        svt_pack_trains(&p, t0 | t1 << T | t2 << 2u * T | t3 << 3u * T, 4u * T);
    }
    for (; co < out_c; ++co) {
        svt_pack_trains(&p,
                        svt_neuron_train_q(lanes + svt_lane(co), 0, lane_c, unit, bias[co],
                                           th[co], shift, T),
                        T);
    }
    svt_pack_flush(&p);
}

/* A pixel's/token's sums, lanes or int32, through the LIF into `out` */
static inline void svt_sums_out_q(const svt_sums_t *sums, const int32_t *bias,
                                  uint32_t frac_bits, uint32_t first, uint32_t T,
                                  const svt_lif_q_t *lif, uint8_t *out)
{
    if (sums->wide) {
        svt_currents_out_q(sums->acc, bias, frac_bits, first, sums->out_c, T, lif, out);
    } else {
        svt_lanes_out_q(svt_sums_lanes(sums), sums->lane_c, bias, frac_bits, first,
                        sums->out_c, T, lif, out);
    }
}

/* conv2d_analog_lif_q.c: first layer on uint8 pixels, then LIF (patch: in_c * kernel^2
 * int32 of scratch) */
void svt_conv2d_analog_lif_q(const uint8_t *image, const svt_conv2d_q_t *conv, uint32_t T,
                             const svt_lif_q_t *lif, uint8_t *out_spikes, int32_t *patch);

/* conv2d_pixel_q.c (event-driven) or conv2d_pixel_dense_q.c: the sums of one output
 * pixel (storage: T * out_c int32) */
void svt_conv2d_pixel_sums_q(const uint8_t *in, svt_format_t in_fmt,
                             const svt_conv2d_q_t *conv, uint32_t oy, uint32_t ox,
                             uint32_t T, int32_t *storage, svt_sums_t *sums);

/* conv2d_spiking_lif_q.c: conv2d fed by spikes or counts, then LIF (acc: T * out_c) */
void svt_conv2d_spiking_lif_q(const uint8_t *in, svt_format_t in_fmt,
                              const svt_conv2d_q_t *conv, uint32_t T, const svt_lif_q_t *lif,
                              uint8_t *out_spikes, int32_t *acc);

/* linear_sums_q.c (event-driven) or linear_sums_dense_q.c: token n's sums (storage:
 * T * out_c int32) */
void svt_linear_token_sums_q(const uint8_t *in, svt_format_t in_fmt,
                             const svt_linear_q_t *linear, uint32_t n, uint32_t T,
                             int32_t *storage, svt_sums_t *sums);

/* linear_spiking_lif_q.c: linear over tokens fed by spikes or counts, then LIF */
void svt_linear_spiking_lif_q(const uint8_t *in, svt_format_t in_fmt,
                              const svt_linear_q_t *linear, uint32_t T, const svt_lif_q_t *lif,
                              uint8_t *out_spikes, int32_t *acc);

/* ssa_counts.c: the attention counts, shared by ssa_lif.c and ssa_lif_q.c (v_masks:
 * T * ceil(C / 32) words of scratch, free again once kv is built) */
void svt_ssa_build_kv(const uint8_t *k, const uint8_t *v, uint32_t tokens, uint32_t C,
                      uint32_t head_dim, uint32_t kv_bytes, uint32_t T, void *kv,
                      uint32_t *v_masks);
void svt_ssa_token_counts(const uint8_t *q, uint32_t n, uint32_t C, uint32_t head_dim,
                          uint32_t kv_bytes, uint32_t T, const void *kv, int32_t *acc);

/* ssa_lif_q.c: spiking self-attention in integer counts, then the attention LIF */
void svt_ssa_lif_q(const uint8_t *q, const uint8_t *k, const uint8_t *v,
                   const svt_ssa_q_t *ssa, uint32_t T, const svt_lif_q_t *lif,
                   uint8_t *out_spikes, void *kv_scratch, int32_t *acc_scratch);

/* sum_q.c: the readout's sums over tokens and/or time (the head folds the divisor) */
void svt_sum_tokens_q(const uint8_t *in, svt_format_t fmt, uint32_t tokens, uint32_t channels,
                      uint32_t T, int32_t *out_tc);
void svt_sum_time_q(const int32_t *in_tc, uint32_t channels, uint32_t T, int32_t *out_c);
void svt_sum_tokens_time_q(const uint8_t *in, svt_format_t fmt, uint32_t tokens,
                           uint32_t channels, uint32_t T, int32_t *out_c);

/* dense_q.c: the head on int32 sums, int32 scores */
void svt_dense_q(const int32_t *in, const svt_dense_q_t *dense, int32_t *scores);


#endif /* SVT_KERNELS_H */
