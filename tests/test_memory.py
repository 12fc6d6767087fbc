import itertools

from conftest import run_cli
from svt_deploy.boards import load_board
from svt_deploy.ir import extract_ir
from svt_deploy.memory import check_fit, plan_memory, spike_bytes, time_major_state_bytes
from svt_deploy.model import build_reference


def reference_plan():
    ir = extract_ir(build_reference(pool_after=[1, 2]), (1, 28, 28))
    return ir, plan_memory(ir)


def test_flash_is_fp32_folded_weights():
    ir, plan = reference_plan()
    assert plan.weight_bytes == 4 * ir.params == 4 * 641_546


def test_layer_major_arena_is_tens_of_kb_where_time_major_is_hundreds():
    ir, plan = reference_plan()
    assert 16 * 1024 < plan.arena_bytes < 96 * 1024
    assert time_major_state_bytes(ir) > 10 * plan.arena_bytes
    first = plan.steps[1]  # 32x28x28 spikes at T=4 bits per neuron
    assert first.out_bytes == spike_bytes(32 * 28 * 28, 4) == 12544


def test_arena_buffers_never_overlap_while_alive():
    _, plan = reference_plan()
    bufs = {id(b): b for b in plan.arena.buffers.values()}.values()
    for a, b in itertools.combinations(bufs, 2):
        if a.first <= b.last and b.first <= a.last:
            assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)
        assert a.offset % 8 == 0 and a.offset + a.size <= plan.arena_bytes


def test_reference_misses_the_h7_flash_by_a_stated_amount():
    _, plan = reference_plan()
    fit = check_fit(plan, load_board("stm32h7"))
    assert not fit.fits and fit.flash_over == plan.weight_bytes - (2 * 1024 * 1024 - 65536)
    assert fit.sram_over == 0


def test_analyze_command_reports_the_miss_in_bytes():
    proc = run_cli("analyze", "--board", "stm32h7", check=True)
    _, plan = reference_plan()
    over = plan.weight_bytes - (2 * 1024 * 1024 - 65536)
    assert f"MISSES by {over:,} B" in proc.stdout
    assert "does NOT fit" in proc.stdout and "sps.rpe.conv" in proc.stdout
