"""Emulated devices: run a QEMU build of the firmware and talk to it over the protocol.

``stm32h7`` runs on QEMU ``mps2-an500`` (a Cortex-M7 with double-precision FPU; the
firmware is linked at its addresses with the H7's region sizes), ``stm32f405`` on
``netduinoplus2``. The guest's UART is a TCP server on a free loopback port
(``nodelay=on``: no Nagle delay per reply); pyserial connects with ``socket://``.
``-icount shift=0`` makes the guest's SysTick count instructions (1 ns each): an
inference's count is in units of one SysTick clock (1e9 / core clock instructions: 40 on
mps2-an500) and includes the SysTick and heartbeat interrupts that fall inside it. The
firmware starts the count right after a SysTick interrupt (``svt_counter_align`` in
counter.c), so those interrupts fall at the same instructions every time and two runs of
an image give the same count (tests/test_qemu.py checks it). QEMU is always stopped: by the
firmware's EXIT request (semihosting exit), else terminated, else killed.

``FaultyProxy`` sits between pyserial and QEMU and damages the line on purpose (flipped,
dropped and duplicated bytes, duplicated frames), to show that the protocol detects and
retries every damaged frame and never runs a request twice (tests/test_link_faults.py).
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import serial

from .boards import Board, all_boards
from .errors import SvtError
from .serial_link import CRC_BYTES, HEADER_BYTES, SYNC, DeviceInfo, SerialLink
from .tools import require_tool

START_ATTEMPTS = 3  # fresh ports tried when QEMU cannot listen on one
CONNECT_SECONDS = 10.0


def qemu_command(board: Board, elf: str | Path, port: int | str) -> list[str]:
    """The qemu-system-arm command line for ``board``'s emulator. ``-monitor none``: else
    ``-nographic`` puts the monitor on stdio; semihosting lets the firmware's EXIT end QEMU
    with its exit code (without ``enable=on`` a ``bkpt`` locks the core); ``nodelay=on``
    spares each reply a ~44 ms Nagle delay; ``wait=on``: the guest runs once we connect."""
    if board.emulator is None:
        emulated = ", ".join(b.name for b in all_boards() if b.emulator is not None)
        raise SvtError(f"board {board.name} has no emulator; boards with one: {emulated}")
    return ["qemu-system-arm", "-machine", board.emulator.machine, "-nographic",
            "-monitor", "none", "-semihosting-config", "enable=on,target=native",
            "-icount", "shift=0", "-kernel", str(elf),
            *["-serial", "null"] * board.emulator.serial_index,  # the ports before the UART
            "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"]


def dies_with_us(cmd: list[str]) -> list[str]:
    """``cmd`` with the kernel set to SIGKILL it when this process dies. A deploy killed
    with SIGKILL during its device check (or crashing) never reaches stop(), and its QEMU
    lived on, listening for a client that never comes back, one per interrupted run
    (tests/test_interrupted.py). setpriv (util-linux, on every Debian and Ubuntu) sets the
    parent-death signal and execs QEMU, so the child is still QEMU itself; a preexec_fn
    could do the same but is unsafe with torch's threads running. Where setpriv is
    missing, QEMU runs as before."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *cmd] if setpriv else cmd


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QemuDevice:
    """Context manager: QEMU running ``elf``, a handshaken ``SerialLink`` in ``link`` and
    the firmware's INFO in ``info``.

    ``proxy``: optional callable (qemu_port) -> port to connect to instead (FaultyProxy).
    """

    def __init__(self, elf: str | Path, board: Board, timeout: float = 1.0, retries: int = 5,
                 busy_timeout: float = 5.0, proxy=None, log=None,
                 handshake_attempts: int = 10):
        self.elf = Path(elf)
        self.board = board
        self.timeout, self.retries, self.busy_timeout = timeout, retries, busy_timeout
        self.handshake_attempts = handshake_attempts
        self.proxy = proxy
        self.log = log or (lambda msg: None)
        self.proc: subprocess.Popen | None = None
        self.port = None
        self.link: SerialLink | None = None
        self.info: DeviceInfo | None = None
        self.exit_code: int | None = None
        self._stderr = None

    # ------------------------------------------------------------------ start
    def __enter__(self) -> QemuDevice:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _qemu_output(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def _qemu_state(self) -> str:
        """One line on what QEMU is doing, for error messages."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=0.5)  # a crashing QEMU is still writing its dump
            except subprocess.TimeoutExpired:
                pass
        running = self.proc is not None and self.proc.poll() is None
        lines = [ln.strip() for ln in self._qemu_output().splitlines()
                 if ln.strip() and "waiting for connection" not in ln]
        fatal = [ln for ln in lines if "qemu" in ln.lower()]  # not the register dump
        state = "QEMU is running" if running else f"QEMU exited ({self.proc.returncode})"
        return state + (f": {fatal[0][:160]}" if fatal else "")

    def start(self) -> None:
        require_tool("qemu-system-arm")
        if not self.elf.is_file():
            raise SvtError(f"{self.elf} does not exist; build it with svt-deploy run-qemu")
        for attempt in range(START_ATTEMPTS):
            tcp_port = free_port()
            self._stderr = tempfile.TemporaryFile()
            cmd = qemu_command(self.board, self.elf, tcp_port)
            self.log("starting: " + " ".join(cmd))
            self.proc = subprocess.Popen(dies_with_us(cmd), stdin=subprocess.DEVNULL,
                                         stdout=self._stderr,
                                         stderr=subprocess.STDOUT)
            deadline = time.monotonic() + CONNECT_SECONDS
            while self.port is None:
                if self.proc.poll() is not None:
                    break
                try:
                    target = self.proxy(tcp_port) if self.proxy else tcp_port
                    self.port = serial.serial_for_url(f"socket://127.0.0.1:{target}",
                                                      timeout=0.05)
                except (serial.SerialException, OSError):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            if self.port is not None:
                break
            output = self._qemu_output()
            self._kill()
            if "in use" not in output.lower() or attempt == START_ATTEMPTS - 1:
                raise SvtError(f"QEMU {self.board.emulator.machine} did not open its serial "
                               f"port: {(output.splitlines() or ['no output'])[-1][:200]}")
        self.link = SerialLink(self.port, name=f"QEMU {self.board.emulator.machine}",
                               timeout=self.timeout, retries=self.retries,
                               busy_timeout=self.busy_timeout, log=self.log)
        try:
            self.info = self.link.handshake(attempts=self.handshake_attempts,
                                            timeout=max(self.timeout, 1.0))
        except SvtError as e:
            raise SvtError(f"{e}; {self._qemu_state()}") from None
        if self.info.board != self.board.name or not self.info.emulated:
            raise SvtError(f"{self.elf} is firmware for {self.info.board}"
                           f"{'' if self.info.emulated else ' hardware'}, not the QEMU build "
                           f"for {self.board.name}")

    # ------------------------------------------------------------------ stop
    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc is not None:
            self.exit_code = self.proc.returncode

    def stop(self) -> None:
        """EXIT (the firmware ends QEMU through semihosting), else terminate, else kill."""
        try:
            if (self.info is not None and self.proc is not None
                    and self.proc.poll() is None):  # the firmware answers: ask it to exit
                saved = self.link.retries
                self.link.retries = 1
                try:
                    self.link.exit()
                except (SvtError, serial.SerialException, OSError):
                    pass  # QEMU may close the socket before the reply is read
                finally:
                    self.link.retries = saved
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            if self.port is not None:
                try:
                    self.port.close()
                except OSError:
                    pass
                self.port = None
            self._kill()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None


# ----------------------------------------------------------------------------- fault proxy

@dataclass
class StreamDamage:
    """One direction of the proxy: the frames it forwarded, which it damaged, and how.

    Each byte is damaged with probability ``rate``: dropped (``drop_fraction`` of those),
    sent twice (``dup_fraction``), else one of its bits flipped. Independently, a whole
    frame is sent a second time right behind itself, as it went out (its damage included),
    with probability ``frame_dup_rate``: what a link that retransmits on its own, or
    replays a buffer, does. ``events`` records every fault at its offset in the clean
    stream; ``frames`` records every frame with whether it was damaged and how many copies
    went out. A duplicated first byte (the sync byte 0xA5, which both receivers skip) or
    last byte (a stray byte after a complete frame) leaves the frame itself intact.
    """

    name: str
    rate: float
    drop_fraction: float
    rng: random.Random
    dup_fraction: float = 0.0
    frame_dup_rate: float = 0.0
    clean: bytearray = field(default_factory=bytearray)  # original bytes, for frame bounds
    sent: bytearray = field(default_factory=bytearray)  # what went out for them so far
    frames: list[dict] = field(default_factory=list)
    # (offset in the clean stream, "flip" | "drop" | "dup" | "dup_frame")
    events: list[tuple[int, str]] = field(default_factory=list)
    offset: int = 0  # stream offset of clean[0]

    def __post_init__(self):
        if not (0 <= self.drop_fraction and 0 <= self.dup_fraction
                and self.drop_fraction + self.dup_fraction <= 1):
            raise ValueError("drop_fraction + dup_fraction must lie in [0, 1]")

    def process(self, data: bytes) -> bytes:
        out = bytearray()
        for byte in data:
            position = self.offset + len(self.clean)
            self.clean.append(byte)
            sent = bytes((byte,))
            if self.rng.random() < self.rate:
                kind = self.rng.random()  # (same draws as before dup_fraction existed)
                if kind < self.drop_fraction:
                    self.events.append((position, "drop"))
                    sent = b""
                elif kind < self.drop_fraction + self.dup_fraction:
                    self.events.append((position, "dup"))
                    sent = bytes((byte, byte))
                else:
                    self.events.append((position, "flip"))
                    sent = bytes((byte ^ (1 << self.rng.randrange(8)),))
            out += sent
            self.sent += sent
            out += self._split_frames()
        return bytes(out)

    def _split_frames(self) -> bytes:
        """Cut the clean stream into frames (it holds nothing but frames, back to back);
        returns the second copy of a frame that ended here, if it is to be duplicated."""
        if len(self.clean) < HEADER_BYTES:
            return b""
        if self.clean[:2] != SYNC:
            raise AssertionError(f"{self.name}: the clean stream lost frame alignment")
        (length,) = struct.unpack_from("<H", self.clean, 4)
        end = HEADER_BYTES + length + CRC_BYTES
        if len(self.clean) < end:
            return b""
        first, last = self.offset, self.offset + end - 1
        damaged = any(first <= pos <= last and not (kind == "dup" and pos in (first, last))
                      for pos, kind in self.events if kind != "dup_frame")
        again = b""
        if self.frame_dup_rate and self.rng.random() < self.frame_dup_rate:
            self.events.append((first, "dup_frame"))
            again = bytes(self.sent)
        self.frames.append({"type": self.clean[2], "seq": self.clean[3],
                            "bytes": bytes(self.clean[:end]), "damaged": damaged,
                            "copies": 2 if again else 1})
        self.clean.clear()  # a frame ends on its last byte, so nothing follows it yet
        self.sent.clear()
        self.offset += end
        return again

    @property
    def damaged(self) -> list[dict]:
        return [f for f in self.frames if f["damaged"]]

    @property
    def intact(self) -> list[dict]:
        return [f for f in self.frames if not f["damaged"]]

    def summary(self) -> dict:
        """Frames forwarded, damaged and duplicated, and the byte faults by kind."""
        kinds = [kind for _, kind in self.events]
        return {"frames": len(self.frames), "damaged": len(self.damaged),
                "duplicated": sum(f["copies"] > 1 for f in self.frames),
                **{kind: kinds.count(kind) for kind in ("flip", "drop", "dup")}}


class FaultyProxy:
    """A TCP proxy that damages both directions (seeded, so a run is reproducible):
    per-byte ``down_rate`` (host -> device) and ``up_rate`` (device -> host), split into
    drops (``drop_fraction``), duplicated bytes (``dup_fraction``) and bit flips (the
    rest), and whole frames sent twice (``frame_dup_rate``, both directions). ``down`` and
    ``up`` (StreamDamage) record what was damaged. Use as ``QemuDevice(...,
    proxy=FaultyProxy(...))``; ``heal()`` makes the line clean from then on."""

    def __init__(self, down_rate: float, up_rate: float, drop_fraction: float = 0.3,
                 seed: int = 0, dup_fraction: float = 0.0, frame_dup_rate: float = 0.0):
        self.down = StreamDamage("host->device", down_rate, drop_fraction, random.Random(seed),
                                 dup_fraction, frame_dup_rate)
        self.up = StreamDamage("device->host", up_rate, drop_fraction, random.Random(seed + 1),
                               dup_fraction, frame_dup_rate)
        self.lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    def heal(self) -> None:
        """No more faults in either direction (the records are kept)."""
        with self.lock:
            for stream in (self.down, self.up):
                stream.rate = stream.frame_dup_rate = 0.0

    def __call__(self, upstream_port: int) -> int:
        upstream = socket.create_connection(("127.0.0.1", upstream_port), timeout=5)
        upstream.settimeout(None)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self._sockets += [upstream, listener]
        threading.Thread(target=self._serve, args=(listener, upstream), daemon=True).start()
        return listener.getsockname()[1]

    def _serve(self, listener: socket.socket, upstream: socket.socket) -> None:
        client, _ = listener.accept()
        self._sockets.append(client)
        for s in (client, upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for src, dst, stream in ((client, upstream, self.down), (upstream, client, self.up)):
            t = threading.Thread(target=self._pump, args=(src, dst, stream), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, stream: StreamDamage) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    data = stream.process(data)
                if data:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass
