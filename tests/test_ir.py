import sys

import pytest
import torch
import torch.nn as nn

from conftest import FIXTURES, randomize_bn
from svt_deploy.errors import SvtError
from svt_deploy.forward import run_model
from svt_deploy.ir import extract_ir, run_ir
from svt_deploy.model import SViTConfig, SpikingViT

sys.path.insert(0, str(FIXTURES))
import published_spikformer  # noqa: E402


def tiny_ours():
    torch.manual_seed(0)
    return randomize_bn(SpikingViT(SViTConfig.reference(embed_dim=32, depth=2, heads=4,
                                                        pool_after=[1, 2])))


@pytest.mark.parametrize("make", [tiny_ours, lambda: randomize_bn(published_spikformer.build())])
def test_ir_reproduces_the_model_with_bn_folded(make):
    model = make()
    ir = extract_ir(model, (1, 28, 28))
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        want = run_model(model, x)
    got = run_ir(ir, x)
    assert torch.allclose(got, want, atol=1e-4)
    assert ir.timesteps == 4 and ir.num_classes == 10
    assert not any("bn" in n.name for n in ir.nodes)  # folded into their conv/linear


def test_spaces_couple_the_residual_stream_and_attention_heads():
    ir = extract_ir(tiny_ours(), (1, 28, 28))
    labels = {sp.label: sp for sp in ir.spaces.values()}
    emb = labels["embedding (residual stream)"]
    assert emb.size == 32 and emb.prunable
    assert "sps.stages.3.conv" in emb.producers and "head" in emb.consumers
    assert {"blocks.0.attn.proj.linear", "blocks.1.mlp.fc2.linear"} <= set(emb.producers)
    heads = labels["heads of blocks.0.attn"]
    assert heads.unit == 8 and heads.units == 4
    assert heads.heads_attr == ("blocks.0.attn", "num_heads")
    assert not labels["input"].prunable and not labels["classes"].prunable


def test_published_layout_conv1d_tbcn_is_understood():
    ir = extract_ir(published_spikformer.build(), (1, 28, 28))
    ssa = next(n for n in ir.nodes if n.op == "ssa")
    assert ssa.attrs == {"heads": 4, "head_dim": 8, "scale": 0.125}
    assert [n.op for n in ir.nodes].count("linear") == 6  # q k v proj fc1 fc2 (Conv1d k=1)
    # LayerNorms are defined but never called: they hold no memory on the device
    assert not any("norm" in m for n in ir.nodes for m in n.modules)


class WithGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = published_spikformer.build()
        self.inner.block[0].mlp.fc1_lif = nn.GELU()


def test_unsupported_layer_names_the_module():
    model = WithGelu().inner
    with pytest.raises(SvtError) as e:
        extract_ir(model, (1, 28, 28))
    assert "block.0.mlp.fc1_lif" in str(e.value) and "GELU" in str(e.value)
