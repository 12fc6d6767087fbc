"""Host side of the serial protocol (device side: firmware_templates/firmware/protocol.h).

Frame, little-endian::

    A5 5A | type u8 | seq u8 | length u16 | hcrc u16 | payload[length] | crc32 u32

``hcrc`` is the low half of the CRC-32 of the first six bytes; ``crc32`` (zlib's CRC-32)
covers header and payload. A reply carries the request's seq. Every request is retried
with the *same* seq when its reply is missing, damaged or NAKed; the device answers a
repeat from its saved reply without running the request again. A damaged frame is never
accepted: it must pass the header check, the CRC-32, and match the seq and reply type.
"""

from __future__ import annotations

import random
import struct
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import serial

from .errors import SvtError

SYNC = b"\xa5\x5a"
HEADER = struct.Struct("<2sBBHH")  # sync, type, seq, length, hcrc
HEADER_BYTES = HEADER.size
CRC_BYTES = 4
MAX_PAYLOAD = 0xFFFF
PROTOCOL_VERSION = 1

INFO, INFER, STATS, CALIBRATE, EXIT, PROFILE = 0x01, 0x02, 0x03, 0x04, 0x05, 0x08
REPLY, ACK, NAK, ERROR = 0x80, 0x06, 0x15, 0x7F
NAMES = {INFO: "info", INFER: "infer", STATS: "stats", CALIBRATE: "calibrate", EXIT: "exit",
         PROFILE: "profile",
         ACK: "ack", NAK: "nak", ERROR: "error"}
NAK_REASONS = {1: "CRC mismatch", 2: "frame cut short"}
ERROR_CODES = {1: "unknown request", 2: "wrong payload length",
               3: "not supported by this build"}
COUNTER_CYCLES, COUNTER_QEMU_SYSTICK = 1, 2
STATS_FIELDS = ("frames_ok", "bad_header", "bad_crc", "rx_timeouts", "rx_overruns", "replays",
                "inferences", "naks", "errors")
INFO_FORMAT = struct.Struct("<BBBBIIIIIII16s16s")


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def header_check(first6: bytes) -> int:
    return crc32(first6) & 0xFFFF


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise SvtError(f"payload of {len(payload)} bytes exceeds the protocol's {MAX_PAYLOAD}")
    head = struct.pack("<2sBBH", SYNC, msg_type, seq & 0xFF, len(payload))
    head += struct.pack("<H", header_check(head))
    body = head + payload
    return body + struct.pack("<I", crc32(body))


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


@dataclass(frozen=True)
class DamagedFrame:
    """A frame whose header passed its check but whose CRC-32 did not: type and seq are
    trustworthy, the payload is not."""

    type: int
    seq: int


class FrameDecoder:
    """Incremental decoder: feed bytes, take frames. After a bad header or a bad CRC it
    drops one byte and searches again, so a frame behind damaged bytes is still found."""

    def __init__(self):
        self.buffer = bytearray()
        self.noise_bytes = 0  # bytes skipped while searching for a sync
        self.bad_headers = 0

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def partial(self) -> tuple[int, int] | None:
        """(type, seq) when the buffer holds an intact header whose frame is incomplete."""
        buf = self.buffer
        if len(buf) < HEADER_BYTES or buf[:2] != SYNC:
            return None
        _, msg_type, seq, _, check = HEADER.unpack_from(buf)
        return (msg_type, seq) if check == header_check(bytes(buf[:6])) else None

    def cut_short(self) -> DamagedFrame | None:
        """Give up on an incomplete frame (bytes were lost): report it and search on."""
        pending = self.partial()
        if pending is None:
            return None
        del self.buffer[:1]
        return DamagedFrame(*pending)

    def next(self) -> Frame | DamagedFrame | None:
        buf = self.buffer
        while True:
            start = buf.find(SYNC)
            if start < 0:
                keep = 1 if buf[-1:] == SYNC[:1] else 0
                self.noise_bytes += len(buf) - keep
                del buf[:len(buf) - keep]
                return None
            if start:
                self.noise_bytes += start
                del buf[:start]
            if len(buf) < HEADER_BYTES:
                return None
            _, msg_type, seq, length, check = HEADER.unpack_from(buf)
            if check != header_check(bytes(buf[:6])):
                self.bad_headers += 1
                del buf[:1]
                continue
            end = HEADER_BYTES + length + CRC_BYTES
            if len(buf) < end:
                return None
            (crc,) = struct.unpack_from("<I", buf, end - CRC_BYTES)
            if crc != crc32(bytes(buf[:end - CRC_BYTES])):
                del buf[:1]
                return DamagedFrame(msg_type, seq)
            frame = Frame(msg_type, seq, bytes(buf[HEADER_BYTES:end - CRC_BYTES]))
            del buf[:end]
            return frame


@dataclass
class DeviceInfo:
    protocol: int
    counter_kind: int
    emulated: bool
    counter_hz: int
    input_size: int
    num_classes: int
    timesteps: int
    weight_bytes: int
    arena_bytes: int
    max_payload: int
    model_hash: str
    board: str
    integer: bool = False  # an integer model: uint8 pixels in, int32 scores out

    @classmethod
    def decode(cls, payload: bytes) -> DeviceInfo:
        if len(payload) != INFO_FORMAT.size:
            raise SvtError(f"the device's info reply has {len(payload)} bytes, expected "
                           f"{INFO_FORMAT.size}: firmware and svt-deploy versions differ")
        v = INFO_FORMAT.unpack(payload)
        text = [b.split(b"\0", 1)[0].decode("ascii", "replace") for b in v[11:]]
        return cls(v[0], v[1], bool(v[2]), *v[4:11], *text, integer=bool(v[3]))

    def instructions(self, counter: int) -> float | None:
        """Guest instructions for a QEMU SysTick count (under -icount shift=0, 1 ns each)."""
        if self.counter_kind != COUNTER_QEMU_SYSTICK:
            return None
        return counter * 1e9 / self.counter_hz

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Inference:
    label: int
    scores: np.ndarray
    counter: int  # DWT cycles (hardware) or SysTick ticks (QEMU)
    seconds: float  # host wall time for the request


@dataclass
class LinkStats:
    requests: int = 0
    retries: int = 0
    timeouts: int = 0
    naks: int = 0  # the device reported one of our frames damaged
    damaged_replies: int = 0  # replies that failed the CRC-32
    stale_frames: int = 0  # intact frames for another seq (late replies, replays)
    late_replies: int = 0  # failed attempts whose reply came before the resend was needed
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("problems")
        return d


class SerialLink:
    """Requests over a pyserial port (a real one, ``socket://``, or any object with
    read/write/timeout). ``timeout``: seconds to wait for an immediate answer (reply, ACK
    or NAK), on top of the time the request takes on the wire at ``baud``;
    ``busy_timeout``: after an ACK, for the next ACK or the result (a device resends its
    ACK while it computes, at least once a second); ``retries``: resends per request."""

    GAP_SECONDS = 0.25  # silence inside a frame that means its missing bytes were lost
    QUIET_SECONDS = 0.05  # silence on the line before a resend

    def __init__(self, port, name: str = "device", timeout: float = 1.0, retries: int = 5,
                 busy_timeout: float = 5.0, baud: int | None = None, log=None):
        self.port = port
        self.name = name
        self.timeout = timeout
        self.retries = retries
        self.busy_timeout = busy_timeout
        self.baud = baud
        self.log = log or (lambda msg: None)
        self.decoder = FrameDecoder()
        self.stats = LinkStats()
        self.seq = random.randrange(256)  # a fresh session never looks like a repeat
        self.accepted: list[bytes] = []  # raw frames accepted (kept when record=True)
        self.record = False
        self.handshake_tries = 0
        self.last_rx = 0.0  # when bytes last arrived

    # ------------------------------------------------------------------ transport
    def _read_event(self, deadline: float):
        """The next frame or damaged frame, or None at the deadline. A frame whose bytes
        stop arriving for GAP_SECONDS is reported damaged (bytes were lost on the line)."""
        while True:
            event = self.decoder.next()
            if event is not None:
                return event
            now = time.monotonic()
            if now - self.last_rx > self.GAP_SECONDS:
                event = self.decoder.cut_short()
                if event is not None:
                    return event
            remaining = deadline - now
            if remaining <= 0:
                return None
            try:
                self.port.timeout = min(remaining, 0.05)
                data = self.port.read(1)  # wait for a byte...
                if data:
                    self.port.timeout = 0  # ...then take whatever else has arrived
                    data += self.port.read(65536)
            except OSError as e:  # serial.SerialException is an OSError
                raise SvtError(f"lost the connection to {self.name} ({e})") from None
            if data:
                self.last_rx = time.monotonic()
                self.decoder.feed(data)

    def _settle(self, seq: int, reply_type: int):
        """Before a resend: let the line go quiet, so that answers to the failed attempt
        (a NAK, a late ACK) are not mistaken for answers to the next one. Returns a late
        intact reply to this request if one arrives meanwhile."""
        end = time.monotonic() + self.timeout
        while True:
            now = time.monotonic()
            quiet_at = max(self.last_rx, now - self.QUIET_SECONDS) + self.QUIET_SECONDS
            if now >= end or (now >= quiet_at and self.decoder.partial() is None):
                return None
            event = self._read_event(min(end, quiet_at))
            if isinstance(event, Frame) and event.seq == seq and event.type == reply_type:
                return event
            if event is not None:
                self.stats.stale_frames += 1

    def _wire_seconds(self, nbytes: int) -> float:
        return 10.0 * nbytes / self.baud if self.baud else 0.0

    def _await(self, seq: int, reply_type: int, frame_len: int):
        """The reply Frame, or a string saying why this attempt failed."""
        deadline = time.monotonic() + self.timeout + self._wire_seconds(frame_len)
        swallowed = None  # seq of a NAK for an earlier frame, which may hold our request
        while True:
            event = self._read_event(deadline)
            if event is None:
                if swallowed is not None:
                    self.stats.naks += 1
                    return f"the device dropped a damaged frame (seq {swallowed}) that took " \
                           "in this request's bytes"
                self.stats.timeouts += 1
                return "no answer (timed out)"
            if event.type == NAK and event.seq != seq:
                # The device NAKs a damaged (cut short or CRC-failed) frame with that
                # frame's seq, and the request sent right behind it may have been read as
                # its missing bytes. Only this side can notice, so the fix lives here:
                # unless an ACK or the reply for our seq follows within the time our frame
                # takes on the wire, resend now instead of after the full timeout (safe:
                # a request that did get through is answered again from the saved reply).
                self.stats.stale_frames += 1
                swallowed = event.seq
                deadline = min(deadline, time.monotonic() + self.GAP_SECONDS
                               + self._wire_seconds(frame_len))
                continue
            if event.seq == seq:
                swallowed = None  # it got through after all
            if isinstance(event, DamagedFrame):
                if event.seq != seq:
                    self.stats.stale_frames += 1
                    continue
                if event.type == ACK:  # a damaged ACK is still an ACK: keep waiting
                    deadline = time.monotonic() + self.busy_timeout
                    continue
                self.stats.damaged_replies += 1
                return "damaged reply (CRC mismatch)"
            if event.seq != seq:
                self.stats.stale_frames += 1
                continue
            if event.type == ACK:  # received, or still computing
                deadline = time.monotonic() + self.busy_timeout
                continue
            if event.type == NAK:
                self.stats.naks += 1
                reason = struct.unpack("<I", event.payload)[0] if len(event.payload) == 4 else 0
                return f"the device received a damaged request ({NAK_REASONS.get(reason, reason)})"
            if event.type == ERROR:
                code = struct.unpack("<I", event.payload)[0] if len(event.payload) == 4 else 0
                raise SvtError(f"{self.name} refused the {NAMES.get(reply_type & 0x7F)} request: "
                               f"{ERROR_CODES.get(code, f'error {code}')}")
            if event.type == reply_type:
                return event
            self.stats.stale_frames += 1

    def request(self, msg_type: int, payload: bytes = b"") -> Frame:
        self.seq = (self.seq + 1) & 0xFF
        seq = self.seq
        frame = encode_frame(msg_type, seq, payload)
        self.stats.requests += 1
        problem = ""
        for attempt in range(1 + self.retries):
            if attempt:
                late = self._settle(seq, msg_type | REPLY)
                if late is not None:
                    self.stats.late_replies += 1
                    return self._accepted(late)
                self.stats.retries += 1
                self.stats.problems.append(problem)
                self.log(f"{self.name}: {NAMES[msg_type]} seq {seq}: {problem}; resending")
            try:
                self.port.write(frame)
            except OSError as e:  # serial.SerialException is an OSError
                raise SvtError(f"writing to {self.name} failed: {e}") from None
            outcome = self._await(seq, msg_type | REPLY, len(frame))
            if isinstance(outcome, Frame):
                return self._accepted(outcome)
            problem = outcome
        raise SvtError(f"no valid reply from {self.name} to {NAMES[msg_type]} after "
                       f"{1 + self.retries} tries (last: {problem})")

    def _accepted(self, reply: Frame) -> Frame:
        if self.record:
            self.accepted.append(encode_frame(reply.type, reply.seq, reply.payload))
        return reply

    def link_stats(self) -> dict:
        """Host-side counters, with the decoder's (bad headers, bytes skipped)."""
        return {**self.stats.as_dict(), "bad_headers": self.decoder.bad_headers,
                "noise_bytes": self.decoder.noise_bytes}

    # ------------------------------------------------------------------ requests
    def info(self) -> DeviceInfo:
        return DeviceInfo.decode(self.request(INFO).payload)

    def handshake(self, attempts: int = 10, timeout: float = 1.0) -> DeviceInfo:
        """INFO until the device answers: its first bytes can lag after a (re)start."""
        saved = self.timeout, self.retries
        self.timeout, self.retries = timeout, attempts - 1
        try:
            info = self.info()
        finally:
            self.timeout, self.retries = saved
        # Tries lost to the start-up lag are not line errors: count from here on.
        self.handshake_tries = 1 + self.stats.retries
        self.stats = LinkStats()
        self.decoder.bad_headers = self.decoder.noise_bytes = 0
        if info.protocol != PROTOCOL_VERSION:
            raise SvtError(f"{self.name} speaks protocol version {info.protocol}, svt-deploy "
                           f"speaks {PROTOCOL_VERSION}: rebuild and reflash the firmware")
        return info

    def infer(self, image: np.ndarray, info: DeviceInfo) -> Inference:
        data = np.ascontiguousarray(image, dtype="u1" if info.integer else "<f4").reshape(-1)
        if data.size != info.input_size:
            raise SvtError(f"the image has {data.size} values but the firmware expects "
                           f"{info.input_size}")
        start = time.monotonic()
        reply = self.request(INFER, data.tobytes())
        seconds = time.monotonic() - start
        expected = 12 + 4 * info.num_classes
        if len(reply.payload) != expected:
            raise SvtError(f"the infer reply has {len(reply.payload)} bytes, expected {expected}")
        label, counter = struct.unpack_from("<IQ", reply.payload)
        scores = np.frombuffer(reply.payload, dtype="<i4" if info.integer else "<f4",
                               offset=12).astype(np.int32 if info.integer else np.float32)
        return Inference(label, scores, counter, seconds)

    def device_stats(self) -> dict:
        payload = self.request(STATS).payload
        if len(payload) != 4 * len(STATS_FIELDS):
            raise SvtError(f"the stats reply has {len(payload)} bytes, expected "
                           f"{4 * len(STATS_FIELDS)}")
        return dict(zip(STATS_FIELDS, struct.unpack(f"<{len(STATS_FIELDS)}I", payload)))

    def calibrate(self, iterations: int) -> int:
        """Counter delta of a loop of ``iterations`` x (subs, bne) on the device."""
        return struct.unpack("<Q", self.request(CALIBRATE, struct.pack("<I", iterations))
                             .payload)[0]

    def profile(self) -> list[int]:
        """Counter deltas of each model step (kernel call) in the last inference."""
        payload = self.request(PROFILE).payload
        (steps,) = struct.unpack_from("<I", payload)
        if len(payload) != 4 + 8 * steps:
            raise SvtError(f"{self.name}: a PROFILE reply of {len(payload)} bytes for {steps} "
                           "steps")
        return list(struct.unpack_from(f"<{steps}Q", payload, 4))

    def exit(self) -> None:
        """Stop the emulator (QEMU builds only)."""
        self.request(EXIT)


def open_port(port: str, baud: int = 115200, timeout: float = 0.05):
    """A pyserial port for a device path (/dev/ttyACM0, COM3) or a pyserial URL."""
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
    except (serial.SerialException, ValueError, OSError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise SvtError(f"cannot open serial port {port} ({detail[:160]}); is the board "
                       "connected? List ports with: python -m serial.tools.list_ports") from None
