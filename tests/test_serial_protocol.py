"""The serial protocol without an emulator: framing and CRC on both sides (the device's C
compiled for the host, and toolchain/serial_link.py), retries against a simulated device,
a real pty, and one-line errors for a missing port."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import threading
import time
import zlib

import numpy as np
import pytest
from conftest import REPO, run_cli

from svt_deploy.errors import SvtError
from svt_deploy.serial_link import (
    ACK,
    ERROR,
    INFER,
    INFO,
    INFO_FORMAT,
    NAK,
    REPLY,
    DamagedFrame,
    Frame,
    FrameDecoder,
    SerialLink,
    crc32,
    encode_frame,
    open_port,
)

FIRMWARE = REPO / "firmware_templates" / "firmware"

# Feeds stdin through the device's receive state machine and prints one line per event;
# with arguments "build TYPE SEQ HEX" prints the frame the device would send.
HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "protocol.h"

int main(int argc, char **argv)
{
    static uint8_t buffer[64 + 4096 + 16];
    if (argc == 5 && strcmp(argv[1], "build") == 0) {
        uint8_t payload[4096];
        uint32_t n = (uint32_t)strlen(argv[4]) / 2u;
        for (uint32_t i = 0; i < n; ++i) {
            unsigned v;
            sscanf(argv[4] + 2u * i, "%2x", &v);
            payload[i] = (uint8_t)v;
        }
        uint32_t len = svt_frame_build(buffer, (uint8_t)atoi(argv[2]), (uint8_t)atoi(argv[3]),
                                       payload, n);
        for (uint32_t i = 0; i < len; ++i) {
            printf("%02x", buffer[i]);
        }
        printf("\n");
        return 0;
    }
    svt_rx_t rx;
    svt_rx_init(&rx, buffer, 4096u);
    int c;
    while ((c = getchar()) != EOF) {
        switch (svt_rx_feed(&rx, (uint8_t)c)) {
        case SVT_RX_FRAME:
            printf("frame %u %u %08x ", svt_rx_type(&rx), svt_rx_seq(&rx), svt_rx_frame_crc(&rx));
            for (uint32_t i = 0; i < rx.length; ++i) {
                printf("%02x", buffer[i]);
            }
            printf("\n");
            break;
        case SVT_RX_BAD_CRC:
            printf("bad_crc %u %u\n", svt_rx_type(&rx), svt_rx_seq(&rx));
            break;
        case SVT_RX_BAD_HEADER:
            printf("bad_header\n");
            break;
        case SVT_RX_MORE:
            break;
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def device_parser(tmp_path_factory):
    """The firmware's protocol.c built for the host, wrapped as a function."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    d = tmp_path_factory.mktemp("protocol")
    (d / "harness.c").write_text(HARNESS)
    exe = d / "harness"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(FIRMWARE),
                    "-o", str(exe), str(d / "harness.c"), str(FIRMWARE / "protocol.c")],
                   check=True, capture_output=True)

    def run(*args, stdin: bytes = b""):
        return subprocess.run([str(exe), *args], input=stdin, capture_output=True,
                              check=True).stdout.decode().split("\n")[:-1]
    return run


def test_frame_layout_and_crc():
    frame = encode_frame(INFER, 7, b"\x01\x02\x03")
    assert frame[:2] == b"\xa5\x5a" and frame[2] == INFER and frame[3] == 7
    assert struct.unpack_from("<H", frame, 4)[0] == 3
    assert struct.unpack_from("<H", frame, 6)[0] == zlib.crc32(frame[:6]) & 0xFFFF
    assert struct.unpack_from("<I", frame, len(frame) - 4)[0] == zlib.crc32(frame[:-4])
    assert crc32(b"123456789") == 0xCBF43926  # the CRC-32 check value


def test_device_builds_the_frames_the_host_expects(device_parser):
    rng = np.random.default_rng(0)
    for n in (0, 1, 4, 255, 3136):
        payload = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        built = device_parser("build", str(INFER | REPLY), "200", payload.hex())[0]
        assert bytes.fromhex(built) == encode_frame(INFER | REPLY, 200, payload)


def test_device_parser_accepts_intact_frames_and_rejects_damaged_ones(device_parser):
    rng = np.random.default_rng(1)
    image = rng.random(784, dtype=np.float32).tobytes()
    good = encode_frame(INFER, 9, image)
    flipped = bytearray(good)
    flipped[100] ^= 0x10  # payload damage: header intact, so type and seq are known
    dropped = good[:50] + good[51:]
    bad_len = bytearray(encode_frame(INFO, 3))
    bad_len[4] ^= 0x01  # length damaged: caught by the header check at once
    too_long = encode_frame(INFER, 4, bytes(5000))  # longer than the device's buffer
    stream = (b"\x00\xa5\xa5" + good + bytes(flipped) + encode_frame(INFO, 10) + dropped
              + encode_frame(INFO, 11) + bytes(bad_len) + encode_frame(INFO, 12) + too_long
              + encode_frame(INFO, 13))
    events = device_parser("parse", stdin=stream)
    frames = [e.split() for e in events if e.startswith("frame")]
    assert [f[:3] for f in frames] == [["frame", "2", "9"], ["frame", "1", "10"],
                                       ["frame", "1", "12"], ["frame", "1", "13"]]
    assert bytes.fromhex(frames[0][4]) == image
    assert int(frames[0][3], 16) == struct.unpack("<I", good[-4:])[0]
    assert "bad_crc 2 9" in events  # the flipped frame, NAKed by seq
    assert events.count("bad_header") >= 2  # damaged length, oversized length
    # the frame behind the dropped byte swallows INFO 11's first bytes: that one is lost,
    # never accepted in damaged form
    assert not any(f[2] == "11" for f in frames)


def test_host_decoder_resynchronises_after_noise_and_damage():
    a, b, c = encode_frame(INFO | REPLY, 1, b"abc"), encode_frame(ACK, 2), encode_frame(
        INFER | REPLY, 3, bytes(range(50)))
    damaged = bytearray(c)
    damaged[20] ^= 0x80
    stream = b"\x5a\xa5\xa5junk" + a + b[:5] + b[6:] + bytes(damaged) + c
    dec = FrameDecoder()
    events = []
    for i in range(len(stream)):  # byte by byte: nothing depends on read sizes
        dec.feed(stream[i:i + 1])
        while (e := dec.next()) is not None:
            events.append(e)
    assert events == [Frame(INFO | REPLY, 1, b"abc"), DamagedFrame(INFER | REPLY, 3),
                      Frame(INFER | REPLY, 3, bytes(range(50)))]
    assert dec.noise_bytes > 0


# ----------------------------------------------------------------------------- link logic

class FakeDevice:
    """Speaks the device side in Python: replies to INFO/INFER, NAKs damaged frames,
    answers a repeated (seq, frame) from its saved reply. ``damage`` may rewrite or drop
    (return b"") each outgoing frame; ``damage_in`` does the same to incoming bytes."""

    def __init__(self, damage=None, damage_in=None, dead=False):
        self.decoder = FrameDecoder()
        self.out = bytearray()
        self.damage = damage or (lambda frame, n: frame)
        self.damage_in = damage_in or (lambda data, n: data)
        self.dead = dead
        self.executed = 0
        self.sent = 0
        self.received = 0
        self.last = None
        self.timeout = 0.05
        self.lock = threading.Lock()

    def reply_for(self, frame: Frame) -> bytes:
        if frame.type == INFO:
            payload = INFO_FORMAT.pack(1, 2, 1, 0, 25_000_000, 4, 3, 4, 100, 64, 16,
                                       b"0123456789abcdef", b"fake")
            return encode_frame(INFO | REPLY, frame.seq, payload)
        if frame.type == INFER:
            x = np.frombuffer(frame.payload, "<f4")
            scores = np.array([x.sum(), -x.sum(), 0.5], "<f4")
            payload = struct.pack("<IQ", int(scores.argmax()), 1234) + scores.tobytes()
            return encode_frame(ACK, frame.seq) + encode_frame(INFER | REPLY, frame.seq, payload)
        return encode_frame(ERROR, frame.seq, struct.pack("<I", 1))

    def write(self, data: bytes) -> int:
        with self.lock:
            self.received += 1
            data = self.damage_in(data, self.received)
            if self.dead:
                return len(data)
            self.decoder.feed(data)
            while (ev := self.decoder.next()) is not None:
                if isinstance(ev, DamagedFrame):
                    self.out += encode_frame(NAK, ev.seq, struct.pack("<I", 1))
                    continue
                key = (ev.seq, ev.type, ev.payload)
                if self.last is not None and self.last[0] == key:
                    reply = self.last[1]
                else:
                    self.executed += 1
                    reply = self.reply_for(ev)
                    self.last = (key, reply)
                self.sent += 1
                self.out += self.damage(reply, self.sent)
        return len(data)

    def read(self, n: int) -> bytes:
        deadline = time.monotonic() + (self.timeout or 0)
        while True:
            with self.lock:
                if self.out:
                    data = bytes(self.out[:n])
                    del self.out[:n]
                    return data
            if time.monotonic() >= deadline:
                return b""
            time.sleep(0.002)


def link_to(device, **kw) -> SerialLink:
    return SerialLink(device, name="fake", timeout=kw.pop("timeout", 0.1),
                      retries=kw.pop("retries", 3), busy_timeout=kw.pop("busy_timeout", 0.5),
                      **kw)


def test_lost_reply_is_resent_with_the_same_seq_and_not_run_twice():
    dev = FakeDevice(damage=lambda frame, n: b"" if n == 1 else frame)
    link = link_to(dev)
    info = link.info()
    assert info.board == "fake" and info.input_size == 4
    assert link.stats.retries == 1 and link.stats.timeouts == 1
    assert dev.executed == 1 and dev.sent == 2  # the repeat was answered from the saved reply


def test_damaged_reply_is_detected_and_never_accepted():
    def flip(frame, n):
        if n == 1:
            frame = bytearray(frame)
            frame[-10] ^= 0x04  # inside the INFER reply's scores
        return bytes(frame)
    dev = FakeDevice(damage=flip)
    link = link_to(dev)
    info = link.info()
    link.record = True
    image = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    result = link.infer(image, info)
    assert result.label == 0 and result.scores[0] == pytest.approx(10.0)
    assert link.stats.damaged_replies == 1 and link.stats.retries == 1
    assert dev.executed == 2  # info + one inference: the resend was a replay
    assert link.accepted == [encode_frame(INFER | REPLY, link.seq, struct.pack("<IQ", 0, 1234) +
                                          np.array([10.0, -10.0, 0.5], "<f4").tobytes())]


def test_damaged_request_is_nacked_and_resent():
    def flip(data, n):
        if n == 2:  # the INFER request
            data = bytearray(data)
            data[12] ^= 0x01
        return bytes(data)
    dev = FakeDevice(damage_in=flip)
    link = link_to(dev)
    info = link.info()
    link.infer(np.ones(4, np.float32), info)
    assert link.stats.naks == 1 and link.stats.retries == 1 and dev.executed == 2


def test_request_swallowed_by_a_damaged_frame_is_resent_without_waiting_out_the_timeout():
    """The device reads the request right behind a cut-short frame as that frame's missing
    bytes and NAKs it with the cut frame's seq: the host must resend at once."""
    def swallow(data, n):  # the second request arrives behind a cut frame of seq 200
        return encode_frame(INFO, 200)[:-1] + data[:1] if n == 2 else data
    dev = FakeDevice(damage_in=swallow)
    link = link_to(dev, timeout=2.0)
    link.info()
    start = time.monotonic()
    assert link.info().board == "fake"
    assert time.monotonic() - start < 1.0
    assert link.stats.naks == 1 and link.stats.retries == 1 and link.stats.timeouts == 0
    assert dev.executed == 2


def test_nak_for_an_earlier_frame_does_not_resend_a_request_that_got_through():
    def stale_nak(frame, n):  # a NAK for an older frame, then our reply as usual
        return encode_frame(NAK, 200, struct.pack("<I", 2)) + frame if n == 2 else frame
    dev = FakeDevice(damage=stale_nak)
    link = link_to(dev, timeout=2.0)
    link.info()
    link.info()
    assert link.stats.retries == 0 and link.stats.stale_frames == 1


def test_silent_device_fails_after_bounded_retries_in_one_line():
    link = link_to(FakeDevice(dead=True), timeout=0.05, retries=2)
    start = time.monotonic()
    with pytest.raises(SvtError) as e:
        link.info()
    assert time.monotonic() - start < 2
    assert "after 3 tries" in str(e.value) and "\n" not in str(e.value)
    assert link.stats.timeouts == 3


def test_device_error_is_reported_not_retried():
    dev = FakeDevice()
    link = link_to(dev)
    with pytest.raises(SvtError, match="unknown request"):
        link.request(0x33)
    assert link.stats.retries == 0


# ----------------------------------------------------------------------------- a real tty

def test_link_over_a_pty():
    """pyserial on a real terminal device (a pty); the fake device on the master side."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    dev = FakeDevice()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            dev.write(data)
            with dev.lock:
                out, dev.out = bytes(dev.out), bytearray()
            if out:
                os.write(master, out)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = open_port(path, 115200)
    try:
        link = SerialLink(port, name=path, timeout=0.5, baud=None)
        info = link.handshake(attempts=3, timeout=0.5)
        result = link.infer(np.array([0.5, 0.5, 0.5, 0.5], np.float32), info)
        assert result.label == 0 and result.scores[0] == pytest.approx(2.0)
    finally:
        stop.set()
        port.close()
        os.close(slave)
        os.close(master)


def test_missing_port_is_a_one_line_error():
    with pytest.raises(SvtError) as e:
        open_port("/dev/ttySVT_DOES_NOT_EXIST")
    assert "/dev/ttySVT_DOES_NOT_EXIST" in str(e.value) and "\n" not in str(e.value)
    proc = run_cli("validate", "--port", "/dev/ttySVT_DOES_NOT_EXIST", "--board", "stm32h7")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "cannot open serial port /dev/ttySVT_DOES_NOT_EXIST" in proc.stderr
