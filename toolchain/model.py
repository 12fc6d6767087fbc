"""The reference spiking vision transformer (Spikformer-style) and its checkpoint format.

Layout: activations inside the encoder are ``[T, B, N, C]`` (tokens, channels last)
so q/k/v/proj/fc1/fc2 are ``nn.Linear`` + ``BatchNorm1d``. Third-party models in the
published ``[T, B, C, N]`` Conv1d layout are handled by the IR extractor, not here.

Every width is stored in the config, so a pruned model (narrower stem, fewer heads,
smaller MLP, narrower embedding) is rebuilt from its checkpoint alone.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch.nn as nn
from spikingjelly.activation_based import neuron

LIF_TAU = 2.0
ATTN_THRESHOLD = 0.5
ATTN_SCALE = 0.125


def make_lif(v_threshold: float = 1.0) -> neuron.LIFNode:
    # detach_reset only changes gradients; hard reset to 0 as in Spikformer.
    return neuron.LIFNode(tau=LIF_TAU, v_threshold=v_threshold, v_reset=0.0,
                          detach_reset=True, step_mode="m")


@dataclass
class BlockConfig:
    heads: int
    head_dim: int
    mlp_hidden: int


@dataclass
class SViTConfig:
    in_channels: int = 1
    img_size: int = 28
    num_classes: int = 10
    timesteps: int = 4
    embed_dim: int = 128
    # output widths of the stem convs before the last one (whose width is embed_dim)
    stem_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    # indices of stem convs (0-based, including the last) followed by a 3x3/2 max-pool
    pool_after: list[int] = field(default_factory=lambda: [2, 3])
    blocks: list[BlockConfig] = field(default_factory=list)

    @classmethod
    def reference(cls, embed_dim: int = 128, depth: int = 2, heads: int = 8,
                  mlp_ratio: int = 4, **kwargs) -> "SViTConfig":
        blocks = [BlockConfig(heads, embed_dim // heads, embed_dim * mlp_ratio)
                  for _ in range(depth)]
        stem = kwargs.pop("stem_channels", [embed_dim // 8, embed_dim // 4, embed_dim // 2])
        return cls(embed_dim=embed_dim, stem_channels=stem, blocks=blocks, **kwargs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SViTConfig":
        data = copy.deepcopy(data)
        data["blocks"] = [BlockConfig(**b) for b in data["blocks"]]
        return cls(**data)


class SpikingConvStage(nn.Module):
    """conv3x3 -> BN -> LIF on ``[T, B, C, H, W]``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.lif = make_lif()

    def forward(self, x):
        t, b = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1)))
        return self.lif(y.reshape(t, b, *y.shape[1:]))


class SPS(nn.Module):
    """Spiking patch splitting: conv stack with max-pools, then a relative-position conv."""

    def __init__(self, cfg: SViTConfig):
        super().__init__()
        widths = [cfg.in_channels, *cfg.stem_channels, cfg.embed_dim]
        self.stages = nn.ModuleList(SpikingConvStage(widths[i], widths[i + 1])
                                    for i in range(len(widths) - 1))
        self.pool_after = set(cfg.pool_after)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.rpe = SpikingConvStage(cfg.embed_dim, cfg.embed_dim)

    def forward(self, x):  # x: [T, B, C, H, W] -> [T, B, N, C]
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.pool_after:
                t, b = x.shape[:2]
                y = self.pool(x.flatten(0, 1))
                x = y.reshape(t, b, *y.shape[1:])
        x = x + self.rpe(x)
        return x.flatten(3).transpose(2, 3)


class LinearBNLIF(nn.Module):
    """Linear -> BatchNorm1d over channels -> LIF on ``[T, B, N, C]``."""

    def __init__(self, cin: int, cout: int, v_threshold: float = 1.0):
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.bn = nn.BatchNorm1d(cout)
        self.lif = make_lif(v_threshold)

    def forward(self, x):
        y = self.linear(x)
        shape = y.shape
        y = self.bn(y.reshape(-1, shape[-1])).reshape(shape)
        return self.lif(y)


class SpikingSelfAttention(nn.Module):
    """SSA: binary q, k, v; (q kᵀ) v * scale, no softmax; attention LIF at threshold 0.5."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.num_heads = heads
        self.head_dim = head_dim
        inner = heads * head_dim
        self.q = LinearBNLIF(dim, inner)
        self.k = LinearBNLIF(dim, inner)
        self.v = LinearBNLIF(dim, inner)
        self.attn_lif = make_lif(ATTN_THRESHOLD)
        self.proj = LinearBNLIF(inner, dim)
        self.scale = ATTN_SCALE

    def forward(self, x):  # [T, B, N, C]
        t, b, n, _ = x.shape

        def split(y):  # -> [T, B, heads, N, head_dim]
            return y.reshape(t, b, n, self.num_heads, self.head_dim).transpose(2, 3)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        attn = (q @ k.transpose(-2, -1)) @ v * self.scale
        y = self.attn_lif(attn.transpose(2, 3).reshape(t, b, n, -1))
        return self.proj(y)


class SpikingMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = LinearBNLIF(dim, hidden)
        self.fc2 = LinearBNLIF(hidden, dim)

    def forward(self, x):
        return self.fc2(self.fc1(x))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, cfg: BlockConfig):
        super().__init__()
        self.attn = SpikingSelfAttention(dim, cfg.heads, cfg.head_dim)
        self.mlp = SpikingMLP(dim, cfg.mlp_hidden)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.mlp(x)


class SpikingViT(nn.Module):
    """Direct input encoding: the analog image is repeated over T timesteps."""

    def __init__(self, cfg: SViTConfig):
        super().__init__()
        self.config = cfg
        self.sps = SPS(cfg)
        self.blocks = nn.ModuleList(EncoderBlock(cfg.embed_dim, b) for b in cfg.blocks)
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes)

    def current_config(self) -> SViTConfig:
        """The config of the model as it is now (after pruning shrank its modules)."""
        stages = self.sps.stages
        return SViTConfig(
            in_channels=stages[0].conv.in_channels, img_size=self.config.img_size,
            num_classes=self.head.out_features, timesteps=self.config.timesteps,
            embed_dim=self.head.in_features,
            stem_channels=[s.conv.out_channels for s in stages[:-1]],
            pool_after=sorted(self.sps.pool_after),
            blocks=[BlockConfig(b.attn.num_heads, b.attn.head_dim, b.mlp.fc1.linear.out_features)
                    for b in self.blocks])

    def forward(self, image):  # [B, C, H, W] -> [B, classes]
        # No reset here: like published SpikingJelly models this leaves the membrane state
        # to the caller, and every forward the tool runs resets it (svt_deploy.forward).
        x = image.unsqueeze(0).repeat(self.config.timesteps, 1, 1, 1, 1)
        x = self.sps(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(2).mean(0))


def build_reference(**overrides) -> SpikingViT:
    return SpikingViT(SViTConfig.reference(**overrides))
