"""The image encoder an agent learns from pixels (crl's `pixels` representation), DrQ's random
shift that augments its images, and the actor that acts through it."""

from __future__ import annotations

import torch
from torch import nn

from visgoal.agents.networks import Actor


class ConvEncoder(nn.Module):
    """Images (n, H, W, 3), uint8 or float in [0, 255] -> features (n, feature_dim) in [-1, 1].

    The DQN torso (32 8x8 filters, stride 4; 64 4x4, stride 2; 64 3x3, stride 1), in channels-last
    layout (the images' own), with bf16 autocast if asked: on a CPU, much faster than float32 in
    (n, C, H, W) (docs/experiments/2026-11-24-crl-pixels-speed.md). The autocast is that of the
    device the images are on (CUDA's on a GPU)."""

    LAYERS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))

    def __init__(self, image_size: int, feature_dim: int, bf16: bool = True):
        super().__init__()
        layers, channels = [], 3
        for out, kernel, stride in self.LAYERS:
            layers += [nn.Conv2d(channels, out, kernel, stride), nn.ReLU()]
            channels = out
        self.convs = nn.Sequential(*layers, nn.Flatten())
        flat = self.convs(torch.zeros(1, 3, image_size, image_size, device="cpu")).shape[1]  # built on the CPU
        self.head = nn.Sequential(nn.Linear(flat, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.to(memory_format=torch.channels_last)
        self.image_size, self.feature_dim, self.bf16 = image_size, feature_dim, bf16

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 255.0 - 0.5  # (n, C, H, W) over channels-last memory
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            hidden = self.convs(x)
        return self.head(hidden.float())


def random_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """DrQ's augmentation (Yarats et al. 2021): each image (n, H, W, 3) padded by `pad` replicated
    border pixels and cropped back to H x W at a random integer offset; the images' dtype, NHWC.
    Draws from torch's generator, which the run seeds and checkpoints. In the images' own dtype and
    layout, one window per image from `unfold`: faster on uint8 than padding and gathering in float
    (benchmarks/td3_core.py; docs/experiments/2026-11-24-crl-pixels-speed.md)."""
    if pad == 0:
        return images
    n, height, width, _ = images.shape
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), device=images.device)
    windows = edge_pad(images, pad).unfold(1, height, 1).unfold(2, width, 1)  # (n, 2p+1, 2p+1, 3, H, W)
    return windows[torch.arange(n, device=images.device), dy, dx].permute(0, 2, 3, 1).contiguous()


def edge_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    """(n, H, W, C) -> (n, H + 2 pad, W + 2 pad, C), the border pixels repeated (any dtype)."""
    rows = images[:, :1].expand(-1, pad, -1, -1), images, images[:, -1:].expand(-1, pad, -1, -1)
    tall = torch.cat(rows, 1)
    return torch.cat([tall[:, :, :1].expand(-1, -1, pad, -1), tall, tall[:, :, -1:].expand(-1, -1, pad, -1)], 2)


class PixelActor(nn.Module):
    """What acts from pixels: the encoder, then the actor on [features(image), features(goal image)].
    Its input is the observation stacked over the goal image, (n, 2H, W, 3): how `Policy` joins them."""

    def __init__(self, encoder: ConvEncoder, actor: Actor):
        super().__init__()
        self.encoder, self.actor = encoder, actor

    @property
    def action_scale(self) -> torch.Tensor:
        return self.actor.action_scale

    @property
    def action_bias(self) -> torch.Tensor:
        return self.actor.action_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(self.features(x))

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor.sample(self.features(x), generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n, height = len(x), x.shape[1] // 2
        features = self.encoder(torch.cat([x[:, :height], x[:, height:]]))  # both images in one pass
        return torch.cat([features[:n], features[n:]], dim=-1)


def with_encoder(saved: dict, encoder: ConvEncoder | None) -> dict:
    """policy.pt's actor part (`actor_file`) with the encoder it acts through, where there is one."""
    if encoder is not None:
        saved["encoder"] = encoder.state_dict()
        saved["meta"]["encoder"] = {"image_size": encoder.image_size, "feature_dim": encoder.feature_dim,
                                    "bf16": encoder.bf16}
    return saved


def encoded_actor(saved: dict, actor: nn.Module, device: str = "cpu") -> nn.Module:
    """What acts for a policy.pt: its actor, behind its encoder where `with_encoder` saved one."""
    spec = saved["meta"].get("encoder")
    if spec is None:
        return actor
    encoder = ConvEncoder(spec["image_size"], spec["feature_dim"], spec["bf16"])
    encoder.load_state_dict(saved["encoder"])
    return PixelActor(encoder.to(device).eval(), actor)
