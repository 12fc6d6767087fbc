import json

import pytest
import torch

from conftest import REPO, run_cli
from svt_deploy.checkpoint import save_checkpoint
from svt_deploy.errors import SvtError
from svt_deploy.forward import run_model
from svt_deploy.loading import REFERENCE_WEIGHTS, load_model
from svt_deploy.model import ATTN_THRESHOLD, SViTConfig, SpikingViT, build_reference


def test_reference_architecture_size_and_structure():
    model = build_reference(pool_after=[1, 2])
    params = sum(p.numel() for p in model.parameters())
    assert params == 646_522
    # fp32 weights must not fit the H7's 2 MB flash: the default deployment has to prune
    assert params * 4 > 2 * 1024 * 1024
    attn = model.blocks[0].attn
    assert attn.scale == 0.125 and attn.attn_lif.v_threshold == ATTN_THRESHOLD == 0.5
    assert model.config.timesteps == 4


def test_the_tools_forward_is_stateless_between_calls():
    torch.manual_seed(0)
    model = SpikingViT(SViTConfig.reference(embed_dim=32, depth=1, heads=4)).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(run_model(model, x), run_model(model, x))  # reset per forward


def test_config_is_stored_with_weights_and_loads_weights_only(tmp_path):
    torch.manual_seed(0)
    cfg = SViTConfig.reference(embed_dim=32, depth=1, heads=4, pool_after=[1, 2])
    model = SpikingViT(cfg).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model.state_dict(), cfg.to_dict())
    raw = torch.load(path, weights_only=True)  # no pickled code inside
    assert raw["config"]["embed_dim"] == 32 and raw["config"]["timesteps"] == 4
    loaded = load_model(weights=path)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(run_model(loaded.model, x), run_model(model, x))


def test_committed_reference_checkpoint_and_card():
    raw = torch.load(REFERENCE_WEIGHTS, weights_only=True)
    cfg = raw["config"]
    assert (cfg["embed_dim"], len(cfg["blocks"]), cfg["timesteps"]) == (128, 2, 4)
    card = json.loads((REPO / "examples" / "reference_svit.json").read_text())
    assert card["test_samples"] == 10000 and card["test_accuracy"] >= 0.88
    assert card["params"] >= 600_000 and card["timesteps"] == 4
    assert card["command"].startswith("python examples/train_reference.py")


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"PK\x03\x04broken zip"])
def test_corrupt_checkpoint_is_a_one_line_error(tmp_path, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    with pytest.raises(SvtError):
        load_model(weights=bad)
    proc = run_cli("evaluate", "--weights", str(bad))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "corrupt" in proc.stderr


def test_wrong_weights_for_the_model_is_a_one_line_error(tmp_path):
    wrong = tmp_path / "wrong.pt"
    torch.save({"foo.weight": torch.zeros(3)}, wrong)
    proc = run_cli("evaluate", "--weights", str(wrong))
    assert proc.returncode != 0 and "bare state dict" in proc.stderr
    from conftest import PUBLISHED_DEF
    proc = run_cli("evaluate", "--model-def", PUBLISHED_DEF, "--weights", str(wrong))
    assert proc.returncode != 0 and "do not fit" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_bad_model_def_is_a_one_line_error(tmp_path):
    proc = run_cli("evaluate", "--model-def", "nofile.py:build", "--weights", "x.pt")
    assert proc.returncode != 0 and "does not exist" in proc.stderr
