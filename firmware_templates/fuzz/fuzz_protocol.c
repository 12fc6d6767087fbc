/*
 * libFuzzer harness for the firmware's serial side: the frame decoder (protocol.c) and
 * the request handling and main loop of main.c, both compiled for the host unchanged.
 *
 *   clang -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *         -I firmware_templates/fuzz firmware_templates/fuzz/fuzz_protocol.c \
 *         firmware_templates/firmware/protocol.c -o fuzz_protocol
 * (benchmarks/fuzz_protocol.py builds and runs it; tests/test_fuzz.py runs it briefly.)
 *
 * main.c is included below with `main` renamed. What it calls on the hardware is faked
 * here, never by changing the firmware: cortex_m.h (inline cpsid/cpsie/wfi) is kept out by
 * defining its include guard first, board_config.h and model.h are the stand-ins beside
 * this file, and the UART driver, the counter, semihosting and svt_model_run are defined
 * below. One input is the byte stream the device receives: it arrives back to back, then
 * the line goes quiet long enough for the receive timeout (and its NAK), then the fake WFI
 * leaves the main loop with longjmp. An EXIT request ends the run too, as on QEMU.
 *
 * Besides ASan and UBSan, the harness aborts when
 *   - a UART write is not exactly one intact frame of a reply type carrying the payload
 *     length protocol.h gives that type (serial_link.py: INFO_FORMAT, STATS_FIELDS);
 *   - svt_model_run runs outside an INFER request or on another buffer;
 *   - the decoder accepts a frame that is not byte for byte what svt_frame_build makes of
 *     its type, seq and payload.
 * A mutated frame almost never passes the CRC-32, so the custom mutator reseals the frames
 * of half the mutated inputs (header check and CRC recomputed): mutated lengths and
 * payloads then reach the request handlers, while the other half tests the checks.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SVT_CORTEX_M_H /* the host versions follow main.c */
static void svt_irq_disable(void);
static void svt_irq_enable(void);
static void svt_wfi(void);

#define main svt_firmware_main
#include "../firmware/main.c"
#undef main

static const uint8_t *fz_input;
static size_t fz_size, fz_pos;
static unsigned fz_quiet;       /* times the fake WFI found the line quiet */
static uint32_t fz_now_ms;
static uint64_t fz_counter;
static jmp_buf fz_line_end;

static void svt_irq_disable(void) {}
static void svt_irq_enable(void) {}

/* main.c sleeps only when no byte is waiting: the input is used up. */
static void svt_wfi(void)
{
    if (fz_quiet++ == 0u) {
        fz_now_ms += RX_IDLE_TIMEOUT_MS + 1u; /* a cut frame times out */
        return;
    }
    longjmp(fz_line_end, 1);
}

void svt_uart_init(void) {}
void svt_uart_flush(void) {}
uint32_t svt_uart_overruns(void) { return 0; }

int svt_uart_read(uint8_t *byte)
{
    if (fz_pos >= fz_size) {
        return 0;
    }
    *byte = fz_input[fz_pos++];
    return 1;
}

static int reply_length_ok(uint8_t type, uint32_t length)
{
    switch (type) {
    case SVT_MSG_ACK:
    case SVT_MSG_EXIT | SVT_MSG_REPLY:
        return length == 0u;
    case SVT_MSG_NAK:
    case SVT_MSG_ERROR:
        return length == 4u;
    case SVT_MSG_INFO | SVT_MSG_REPLY:
        return length == 64u;
    case SVT_MSG_INFER | SVT_MSG_REPLY:
        return length == 12u + 4u * SVT_NUM_CLASSES;
    case SVT_MSG_STATS | SVT_MSG_REPLY:
        return length == 4u * 9u;
    case SVT_MSG_CALIBRATE | SVT_MSG_REPLY:
        return length == 8u;
    case SVT_MSG_PROFILE | SVT_MSG_REPLY:
        return length == 4u + 8u * SVT_NUM_STEPS;
    default:
        return 0;
    }
}

void svt_uart_write(const uint8_t *data, uint32_t length)
{
    static uint8_t payload[256];
    svt_rx_t check;
    svt_rx_init(&check, payload, sizeof payload);
    for (uint32_t i = 0; i < length; ++i) {
        svt_rx_status_t status = svt_rx_feed(&check, data[i]);
        if ((status == SVT_RX_FRAME) != (i + 1u == length)) {
            abort(); /* not one intact frame */
        }
    }
    if (length != SVT_FRAME_OVERHEAD + check.length ||
        !reply_length_ok(svt_rx_type(&check), check.length)) {
        abort();
    }
}

uint32_t svt_time_ms(void) { return fz_now_ms; }
uint64_t svt_counter_now(void) { return fz_counter; }
void svt_counter_init(void) {}
void svt_counter_align(void) {}
void svt_counter_spin(uint32_t iterations) { fz_counter += 2u * (uint64_t)iterations; }

void svt_semihost_write(const char *text) { (void)text; }
void svt_semihost_exit(uint32_t code)
{
    (void)code;
    longjmp(fz_line_end, 1);
}

/* A long inference: the SysTick heartbeat resends the ACK while it runs. */
void svt_model_run(const svt_input_t *image, svt_score_t *scores)
{
    if (!busy || image != request.image) {
        abort();
    }
    for (uint32_t i = 0; i < SVT_NUM_CLASSES; ++i) {
        scores[i] = image[i % SVT_INPUT_SIZE];
    }
    for (uint32_t i = 0; i < 3u; ++i) {
        fz_now_ms += HEARTBEAT_MS;
        fz_counter += 1000u;
        svt_on_tick();
    }
}

/* Every frame the decoder accepts is the one the encoder makes of its fields. */
static void check_decoder(const uint8_t *data, size_t size)
{
    static uint8_t payload[512];
    static uint8_t rebuilt[SVT_FRAME_OVERHEAD + sizeof payload];
    svt_rx_t decoder;
    svt_rx_init(&decoder, payload, sizeof payload);
    for (size_t i = 0; i < size; ++i) {
        if (svt_rx_feed(&decoder, data[i]) == SVT_RX_FRAME) {
            uint32_t n = svt_frame_build(rebuilt, svt_rx_type(&decoder), svt_rx_seq(&decoder),
                                         payload, decoder.length);
            if (n > i + 1u || memcmp(rebuilt, data + i + 1u - n, n) != 0) {
                abort();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a fresh device for every input: a crash reproduces from its input alone */
    have_last = 0;
    busy = 0;
    reply_length = heartbeat_length = 0;
    memset(&stats, 0, sizeof stats);
    fz_input = data;
    fz_size = size;
    fz_pos = 0;
    fz_quiet = 0;
    fz_now_ms = 0;
    fz_counter = 0;
    if (setjmp(fz_line_end) == 0) {
        svt_firmware_main();
    }
    check_decoder(data, size);
    return 0;
}

size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

/* Recomputes the header check and CRC-32 of each frame found in data, shortening a frame
 * whose length runs past the end. */
static void reseal(uint8_t *data, size_t size)
{
    size_t at = 0;
    while (at + SVT_FRAME_OVERHEAD <= size) {
        if (data[at] != SVT_SYNC0 || data[at + 1u] != SVT_SYNC1) {
            at++;
            continue;
        }
        size_t length = (size_t)data[at + 4u] | (size_t)data[at + 5u] << 8;
        if (length > size - at - SVT_FRAME_OVERHEAD) {
            length = size - at - SVT_FRAME_OVERHEAD;
        }
        at += svt_frame_seal(data + at, data[at + 2u], data[at + 3u], (uint32_t)length);
    }
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    size = LLVMFuzzerMutate(data, size, max_size);
    if (seed & 1u) {
        reseal(data, size);
    }
    return size;
}
