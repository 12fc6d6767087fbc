/*
 * svt-deploy firmware: serves the serial protocol (protocol.h) around svt_model_run.
 *
 * The main loop takes bytes from the UART receive ring and feeds the frame parser. With
 * nothing to do it sleeps in WFI until the next interrupt (a received byte or the
 * SysTick), so an idle board, or QEMU's host thread, does not spin.
 */
#include <stdint.h>
#include <string.h>

#include "board_config.h"
#include "cortex_m.h"
#include "counter.h"
#include "model.h"
#include "protocol.h"
#include "uart.h"
#if SVT_EMULATED
#include "semihosting.h"
#endif

/* A frame cut short (bytes lost on the line) is dropped after this much silence. */
#define RX_IDLE_TIMEOUT_MS 200u

/* While an inference runs, the SysTick interrupt resends its ACK this often, so the host
 * tells "still computing" from "reply lost" without knowing how long the model takes.
 * QEMU's virtual clock runs slower than real time (one instruction per ns), hence the
 * shorter period there. The heartbeat's few hundred instructions or cycles are inside
 * the measured cost: under 1e-5 of it on QEMU; on a board about 1 ms of UART time per
 * second at 115200 baud. */
#if SVT_EMULATED
#define HEARTBEAT_MS 100u
#else
#define HEARTBEAT_MS 1000u
#endif

#define INFO_BYTES 64u
#define INFER_REPLY_BYTES (12u + 4u * SVT_NUM_CLASSES)
#define STATS_COUNT 9u
#define REQUEST_MAX (4u * SVT_INPUT_SIZE)
#define PROFILE_BYTES (4u + 8u * SVT_NUM_STEPS)
#define REPLY_MAX_2 (INFER_REPLY_BYTES > INFO_BYTES ? INFER_REPLY_BYTES : INFO_BYTES)
#define REPLY_MAX (PROFILE_BYTES > REPLY_MAX_2 ? PROFILE_BYTES : REPLY_MAX_2)

/* The frame's length field has 16 bits. */
typedef char svt_request_fits_a_frame[(REQUEST_MAX <= 0xFFFFu) ? 1 : -1];

/* Counters reported by STATS, in this order. */
typedef struct {
    uint32_t frames_ok;     /* intact requests */
    uint32_t bad_header;    /* headers that failed their check: resynchronised */
    uint32_t bad_crc;       /* intact header, damaged payload: NAKed */
    uint32_t rx_timeouts;   /* frames cut short: NAKed (if the header was intact) */
    uint32_t rx_overruns;   /* bytes the UART lost (hardware overrun) */
    uint32_t replays;       /* repeated requests answered from the saved reply */
    uint32_t inferences;    /* svt_model_run calls */
    uint32_t naks;          /* NAK frames sent */
    uint32_t errors;        /* ERROR replies sent */
} svt_stats_t;

/* The request payload. An image is read as svt_input_t values (floats, or an integer
 * model's uint8 pixels) straight from the bytes received (little-endian, as sent by the
 * host); the union makes that access well defined. */
static union {
    svt_input_t image[(REQUEST_MAX + 3u) / 4u];
    uint8_t b[REQUEST_MAX + 4u];
} request;

static uint8_t reply[SVT_FRAME_OVERHEAD + REPLY_MAX];  /* the last reply, kept for replays */
static uint32_t reply_length;
static uint8_t control[SVT_FRAME_OVERHEAD + 4u];       /* NAK frames */
static uint8_t heartbeat[SVT_FRAME_OVERHEAD];          /* the running inference's ACK */
static uint32_t heartbeat_length;
static volatile int busy;                              /* svt_model_run is running */
static uint64_t step_end[SVT_NUM_STEPS];               /* counter at the end of each step */
static uint64_t run_start;                             /* ... and at the start of the run */
static volatile uint32_t busy_since_ms;
static uint8_t last_seq;
static uint32_t last_crc;
static int have_last;
static svt_stats_t stats;
static svt_rx_t rx;

static void send_nak(uint8_t seq, uint32_t reason)
{
    uint8_t payload[4];
    svt_put_u32(payload, reason);
    stats.naks++;
    svt_uart_write(control, svt_frame_build(control, SVT_MSG_NAK, seq, payload, 4u));
}

/* Seals the reply written at reply + SVT_HEADER_BYTES and sends it. */
static void send_reply(uint8_t type, uint8_t seq, uint32_t length)
{
    reply_length = svt_frame_seal(reply, type, seq, length);
    svt_uart_write(reply, reply_length);
}

static void send_error(uint8_t seq, uint32_t code)
{
    stats.errors++;
    svt_put_u32(reply + SVT_HEADER_BYTES, code);
    send_reply(SVT_MSG_ERROR, seq, 4u);
}

/* Payload bytes each request must carry (protocol.h): INFO, STATS, EXIT and PROFILE carry
 * none. */
static uint32_t request_bytes(uint8_t type)
{
    return type == SVT_MSG_INFER ? (uint32_t)sizeof(svt_input_t) * SVT_INPUT_SIZE
           : type == SVT_MSG_CALIBRATE ? 4u : 0u;
}

static void put_text(uint8_t *out, const char *text, uint32_t size)
{
    memset(out, 0, size);
    for (uint32_t i = 0; i < size && text[i] != '\0'; ++i) {
        out[i] = (uint8_t)text[i];
    }
}

/* INFO reply, 64 bytes:
 *   u8 protocol version, u8 counter kind (protocol.h), u8 emulated (0/1),
 *   u8 integer model (0: float32 images and scores; 1: uint8 pixels, int32 scores),
 *   u32 counter clock Hz, u32 input size (values), u32 classes, u32 timesteps,
 *   u32 weight bytes, u32 arena bytes, u32 max request payload,
 *   char[16] model hash, char[16] board name (NUL-padded when shorter) */
static void serve_info(uint8_t seq)
{
    uint8_t *p = reply + SVT_HEADER_BYTES;
    p[0] = SVT_PROTOCOL_VERSION;
    p[1] = SVT_COUNTER_KIND;
    p[2] = SVT_EMULATED ? 1u : 0u;
    p[3] = SVT_INTEGER ? 1u : 0u;
    svt_put_u32(p + 4, SVT_CORE_CLOCK_HZ);
    svt_put_u32(p + 8, SVT_INPUT_SIZE);
    svt_put_u32(p + 12, SVT_NUM_CLASSES);
    svt_put_u32(p + 16, SVT_TIMESTEPS);
    svt_put_u32(p + 20, SVT_WEIGHT_BYTES);
    svt_put_u32(p + 24, SVT_ARENA_BYTES);
    svt_put_u32(p + 28, REQUEST_MAX);
    put_text(p + 32, SVT_MODEL_HASH, 16u);
    put_text(p + 48, SVT_BOARD_NAME, 16u);
    send_reply(SVT_MSG_INFO | SVT_MSG_REPLY, seq, INFO_BYTES);
}

static void put_u64(uint8_t *p, uint64_t value)
{
    svt_put_u32(p, (uint32_t)value);
    svt_put_u32(p + 4, (uint32_t)(value >> 32));
}

/* INFER reply: u32 class, u64 counter delta, scores[SVT_NUM_CLASSES] (float32 or int32). */
static void serve_infer(uint8_t seq)
{
    heartbeat_length = svt_frame_build(heartbeat, SVT_MSG_ACK, seq, 0, 0u);
    svt_uart_write(heartbeat, heartbeat_length); /* the host may now wait longer */
    busy_since_ms = svt_time_ms();
    busy = 1;
    static svt_score_t scores[SVT_NUM_CLASSES];
    svt_counter_align(); /* a repeatable count: see counter.h */
    uint64_t start = svt_counter_now();
    run_start = start;
    svt_model_run(request.image, scores);
    uint64_t cost = svt_counter_now() - start;
    busy = 0; /* before the reply: the interrupt must not write beside it */
    stats.inferences++;

    uint32_t best = 0;
    for (uint32_t i = 1; i < SVT_NUM_CLASSES; ++i) {
        if (scores[i] > scores[best]) {
            best = i;
        }
    }
    uint8_t *p = reply + SVT_HEADER_BYTES;
    svt_put_u32(p, best);
    put_u64(p + 4, cost);
    for (uint32_t i = 0; i < SVT_NUM_CLASSES; ++i) {
        uint32_t bits;
        memcpy(&bits, &scores[i], 4u);
        svt_put_u32(p + 12u + 4u * i, bits);
    }
    send_reply(SVT_MSG_INFER | SVT_MSG_REPLY, seq, INFER_REPLY_BYTES);
}

/* model.c calls it after each step (SVT_PROFILE_STEPS): the counter then, for PROFILE. */
void svt_step_done(uint32_t step)
{
    if (step < SVT_NUM_STEPS) {
        step_end[step] = svt_counter_now();
    }
}

/* PROFILE reply: u32 steps, then each step's counter delta in the last inference (u64),
 * marking included (a counter read per step). All zero before the first inference. */
static void serve_profile(uint8_t seq)
{
    uint8_t *p = reply + SVT_HEADER_BYTES;
    svt_put_u32(p, SVT_NUM_STEPS);
    uint64_t previous = run_start;
    for (uint32_t i = 0; i < SVT_NUM_STEPS; ++i) {
        put_u64(p + 4u + 8u * i, stats.inferences ? step_end[i] - previous : 0u);
        previous = step_end[i];
    }
    send_reply(SVT_MSG_PROFILE | SVT_MSG_REPLY, seq, PROFILE_BYTES);
}

/* From the SysTick interrupt. The main loop writes to the UART only while not busy. */
void svt_on_tick(void)
{
    if (busy && svt_time_ms() - busy_since_ms >= HEARTBEAT_MS) {
        busy_since_ms += HEARTBEAT_MS;
        svt_uart_write(heartbeat, heartbeat_length);
    }
}

static void serve_stats(uint8_t seq)
{
    const uint32_t values[STATS_COUNT] = {
        stats.frames_ok, stats.bad_header, stats.bad_crc, stats.rx_timeouts,
        svt_uart_overruns(), stats.replays, stats.inferences, stats.naks, stats.errors,
    };
    for (uint32_t i = 0; i < STATS_COUNT; ++i) {
        svt_put_u32(reply + SVT_HEADER_BYTES + 4u * i, values[i]);
    }
    send_reply(SVT_MSG_STATS | SVT_MSG_REPLY, seq, 4u * STATS_COUNT);
}

static void serve_calibrate(uint8_t seq)
{
    uint32_t iterations = svt_get_u32(request.b);
    svt_counter_align();
    uint64_t start = svt_counter_now();
    svt_counter_spin(iterations);
    put_u64(reply + SVT_HEADER_BYTES, svt_counter_now() - start);
    send_reply(SVT_MSG_CALIBRATE | SVT_MSG_REPLY, seq, 8u);
}

static void serve_exit(uint8_t seq)
{
#if SVT_EMULATED
    send_reply(SVT_MSG_EXIT | SVT_MSG_REPLY, seq, 0u);
    svt_uart_flush();
    svt_semihost_exit(0u);
#else
    send_error(seq, SVT_ERROR_UNSUPPORTED); /* a board has no one to exit to */
#endif
}

static void serve(const svt_rx_t *frame)
{
    uint8_t type = svt_rx_type(frame), seq = svt_rx_seq(frame);
    stats.frames_ok++;
    if (have_last && seq == last_seq && svt_rx_frame_crc(frame) == last_crc) {
        stats.replays++; /* the host lost our reply: send the same one again */
        svt_uart_write(reply, reply_length);
        return;
    }
    have_last = 1;
    last_seq = seq;
    last_crc = svt_rx_frame_crc(frame);
    /* A wrong length is refused with ERROR, not NAKed: the frame arrived intact, so a
     * resend would carry the same payload and be NAKed forever. */
    if (((type >= SVT_MSG_INFO && type <= SVT_MSG_EXIT) || type == SVT_MSG_PROFILE)
        && frame->length != request_bytes(type)) {
        send_error(seq, SVT_ERROR_BAD_LENGTH);
        return;
    }
    switch (type) {
    case SVT_MSG_INFO:
        serve_info(seq);
        break;
    case SVT_MSG_INFER:
        serve_infer(seq);
        break;
    case SVT_MSG_STATS:
        serve_stats(seq);
        break;
    case SVT_MSG_CALIBRATE:
        serve_calibrate(seq);
        break;
    case SVT_MSG_EXIT:
        serve_exit(seq);
        break;
    case SVT_MSG_PROFILE:
        serve_profile(seq);
        break;
    default:
        send_error(seq, SVT_ERROR_UNKNOWN_TYPE);
        break;
    }
}

int main(void)
{
    svt_counter_init();
    svt_uart_init();
    svt_rx_init(&rx, request.b, REQUEST_MAX);
    uint32_t last_byte_ms = 0;
    for (;;) {
        uint8_t byte;
        svt_irq_disable();
        if (!svt_uart_read(&byte)) {
            /* Nothing received: sleep until an interrupt. Interrupts stay masked between
             * the check and WFI, so a byte arriving in between still wakes us. */
            svt_wfi();
            svt_irq_enable();
            if (svt_rx_in_frame(&rx) && svt_time_ms() - last_byte_ms > RX_IDLE_TIMEOUT_MS) {
                stats.rx_timeouts++;
                /* This NAK names the cut frame's seq even when a later request's bytes
                 * were taken as its payload; only the host can tell that its request
                 * went missing, so the host resends on a NAK for another seq (fixed
                 * there: rescanning the swallowed bytes here would need a second frame
                 * buffer of RAM, and a resend is safe: repeats are replayed). */
                if (svt_rx_header_ok(&rx)) {
                    send_nak(svt_rx_seq(&rx), SVT_NAK_TRUNCATED);
                }
                svt_rx_reset(&rx);
            }
            continue;
        }
        svt_irq_enable();
        last_byte_ms = svt_time_ms();
        switch (svt_rx_feed(&rx, byte)) {
        case SVT_RX_FRAME:
            serve(&rx);
            break;
        case SVT_RX_BAD_CRC:
            stats.bad_crc++;
            send_nak(svt_rx_seq(&rx), SVT_NAK_CRC);
            break;
        case SVT_RX_BAD_HEADER:
            stats.bad_header++;
            break;
        case SVT_RX_MORE:
            break;
        }
    }
}
