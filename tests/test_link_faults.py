"""Link faults (issue 14): the firmware on QEMU behind a proxy that flips, drops and
duplicates bytes and duplicates whole frames in both directions. Every answer equals the
clean run's, bit for bit; no request runs twice on the device; the firmware answers a
clean request afterwards. The longer runs behind docs/benchmarks.md ("Reliability") are
benchmarks/link_faults.py."""

from __future__ import annotations

import numpy as np
from test_qemu import IMAGES, pytestmark, qemu_builds  # noqa: F401  (skip mark, fixture)

from svt_deploy.qemu import FaultyProxy, QemuDevice
from svt_deploy.serial_link import INFER


def test_flips_drops_and_duplicates_in_both_directions(qemu_builds):  # noqa: F811
    builds, x, _ = qemu_builds
    board, elf = builds["stm32h7"]
    with QemuDevice(elf, board) as dev:
        clean = [dev.link.infer(x[i], dev.info) for i in range(IMAGES)]
    # ~45 % of requests (3 KB) and ~40 % of replies damaged, a fifth of all frames sent
    # twice: every fault kind occurs in each direction (checked below)
    proxy = FaultyProxy(down_rate=2e-4, up_rate=8e-3, drop_fraction=0.3, dup_fraction=0.3,
                        frame_dup_rate=0.2, seed=5)
    try:
        with QemuDevice(elf, board, proxy=proxy, retries=15) as dev:
            link, info = dev.link, dev.info
            link.record = True
            for i in range(IMAGES):
                answer = link.infer(x[i], info)
                assert np.array_equal(answer.scores, clean[i].scores), f"image {i}"
                assert answer.label == clean[i].label
            proxy.heal()
            stats = link.device_stats()
            # no inference ran twice: resends and duplicated requests were answered from
            # the saved reply
            assert stats["inferences"] == IMAGES, stats
            assert stats["replays"] > 0 and any(f["copies"] > 1 for f in proxy.down.intact)
            # the firmware is not left in a bad state: a clean request is served at once
            retries = link.stats.retries
            again = link.infer(x[0], info)
            assert np.array_equal(again.scores, clean[0].scores)
            assert link.stats.retries == retries
            assert link.device_stats()["inferences"] == IMAGES + 1
        assert dev.exit_code == 0
    finally:
        proxy.close()
    for stream in (proxy.down, proxy.up):
        s = stream.summary()
        assert s["damaged"] and s["duplicated"] and s["flip"] and s["drop"] and s["dup"], \
            (stream.name, s)
    assert sum(f["type"] == INFER for f in proxy.down.damaged) > 0
    # host side: every frame it accepted is one the device sent, undamaged
    sent_intact = {f["bytes"] for f in proxy.up.intact}
    assert link.accepted and all(frame in sent_intact for frame in link.accepted)
    s = link.stats
    # every failed attempt had a cause, and was either resent or rescued by a late reply
    assert s.retries + s.late_replies == s.timeouts + s.damaged_replies + s.naks
