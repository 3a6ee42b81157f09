"""The convolutional beta-VAE (image-based TDM report, section 6.1; RIG section 3).

Encoder: strided 4x4 convolutions (hidden channels [64, 32, 16], then an output
convolution), batch norm and ReLU, then linear heads for the mean and the
log-variance of a diagonal Gaussian posterior. Decoder: a linear layer to a
small feature map, strided 4x4 transposed convolutions (channels [16, 32, 64,
128]) with batch norm and leaky ReLU (0.2), and a 3x3 convolution to RGB
logits. Every stride is 2, so the image side must be a multiple of 2^4 = 16
(64x64 and 128x128 both work).

The public API works on images as the environments produce them: `encode`
takes uint8 (n, H, W, 3) arrays (or float tensors (n, 3, H, W) in [0, 1]) and
returns the posterior means; `decode` returns uint8 images; `sample_prior`
draws from the diagonal Gaussian fitted to the training-set latents (RIG 4.3).
"""

from __future__ import annotations

import contextlib

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

CHECKPOINT_FORMAT = "visgoal-vae/1"  # the `format` key of vae.pt

def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU())


def _up(c_in: int, c_out: int, slope: float) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(slope))


class VAE(nn.Module):
    """A beta-VAE for square RGB images; `config()` rebuilds it."""

    def __init__(self, image_size: int = 64, latent_dim: int = 16,
                 encoder_channels: list[int] | tuple[int, ...] = (64, 32, 16),
                 decoder_channels: list[int] | tuple[int, ...] = (16, 32, 64, 128),
                 negative_slope: float = 0.2):
        super().__init__()
        downsamples = len(encoder_channels) + 1  # hidden convolutions + the output convolution
        if image_size % (2 ** downsamples) or image_size % (2 ** len(decoder_channels)):
            raise ValueError(f"VAE: image size {image_size} must be a multiple of "
                             f"{2 ** max(downsamples, len(decoder_channels))} (one halving per strided layer)")
        self.image_size, self.latent_dim = int(image_size), int(latent_dim)
        self.encoder_channels, self.decoder_channels = list(encoder_channels), list(decoder_channels)
        self.negative_slope = float(negative_slope)

        layers, c = [], 3
        for width in self.encoder_channels:
            layers.append(_down(c, width))
            c = width
        layers.append(_down(c, c))  # the output convolution: kernel 4, stride 2, padding 1
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        side = image_size // 2 ** downsamples
        features = c * side * side
        self.mean_head = nn.Linear(features, self.latent_dim)
        self.logvar_head = nn.Linear(features, self.latent_dim)

        self._start_side = image_size // 2 ** len(self.decoder_channels)
        self._start_channels = self.decoder_channels[0]
        self.decoder_input = nn.Linear(self.latent_dim, self._start_channels * self._start_side ** 2)
        ups, c = [], self._start_channels
        for width in self.decoder_channels:
            ups.append(_up(c, width, self.negative_slope))
            c = width
        self.decoder = nn.Sequential(*ups, nn.Conv2d(c, 3, 3, 1, 1))

        # The fitted prior (RIG 4.3): a diagonal Gaussian over training-set latent means.
        self.register_buffer("prior_mean", torch.zeros(self.latent_dim))
        self.register_buffer("prior_std", torch.ones(self.latent_dim))

    # --- configuration -----------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "latent_dim": self.latent_dim,
                "encoder_channels": list(self.encoder_channels), "decoder_channels": list(self.decoder_channels),
                "negative_slope": self.negative_slope}

    # --- the network -------------------------------------------------------------------
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float images (n, 3, H, W) in [0, 1] -> (mean, log-variance)."""
        h = self.encoder(x)
        return self.mean_head(h), self.logvar_head(h).clamp(-30.0, 20.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder_input(z).view(-1, self._start_channels, self._start_side, self._start_side)
        return self.decoder(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction logits, mean, log-variance), sampling z with the reparameterisation trick."""
        mean, logvar = self.posterior(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
        return self.decode_logits(z), mean, logvar

    # --- the public API ------------------------------------------------------------------
    def to_input(self, images: Any) -> torch.Tensor:
        """uint8 (n, H, W, 3) or (H, W, 3) numpy/torch, or float (n, 3, H, W) in [0, 1] -> float tensor
        on the model's device (uint8 moves there first: a quarter of the bytes)."""
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images,
                            device=self.prior_mean.device)
        if x.dtype == torch.uint8:
            if x.ndim == 3:
                x = x.unsqueeze(0)
            if x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(f"VAE: expected uint8 images (n, H, W, 3), got shape {tuple(x.shape)}")
            x = x.permute(0, 3, 1, 2).float().div_(255.0)
        else:
            x = x.float()
            if x.ndim == 3:
                x = x.unsqueeze(0)
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"VAE: expected float images (n, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"VAE: trained on {self.image_size}x{self.image_size} images, "
                             f"got {x.shape[-2]}x{x.shape[-1]}")
        return x

    @contextlib.contextmanager
    def _eval_mode(self):
        """Eval mode for the block, restoring training mode after. Already in eval mode (an agent
        encoding every env step) it touches nothing: switching walks every submodule."""
        if not self.training:
            yield
            return
        self.eval()
        try:
            yield
        finally:
            self.train()

    def set_prior(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fit the diagonal Gaussian prior (RIG section 4.3) to latents z (n, latent_dim)."""
        mean, std = z.mean(0), z.std(0, unbiased=len(z) > 1).clamp_min(1e-6)
        self.prior_mean.copy_(mean)
        self.prior_std.copy_(std)
        return mean, std

    @torch.no_grad()
    def encode(self, images: Any, batch_size: int = 256) -> Any:
        """Posterior means of images, in batches, in eval mode. numpy in -> numpy out; tensor in -> tensor out."""
        numpy_in = not isinstance(images, torch.Tensor)
        x = self.to_input(images)
        device = self.prior_mean.device
        with self._eval_mode():
            out = torch.cat([self.posterior(x[i : i + batch_size].to(device))[0]
                             for i in range(0, len(x), batch_size)]) if len(x) else x.new_zeros(0, self.latent_dim)
        return out.cpu().numpy() if numpy_in else out

    @torch.no_grad()
    def decode(self, latents: Any, batch_size: int = 256) -> Any:
        """Latents (n, latent_dim) -> uint8 images (n, H, W, 3). numpy in -> numpy out; tensor in -> tensor out."""
        numpy_in = not isinstance(latents, torch.Tensor)
        z = torch.as_tensor(np.asarray(latents) if numpy_in else latents, device=self.prior_mean.device).float()
        if z.ndim == 1:
            z = z.unsqueeze(0)
        with self._eval_mode():
            probs = torch.cat([torch.sigmoid(self.decode_logits(z[i : i + batch_size]))
                               for i in range(0, len(z), batch_size)])
        images = (probs * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return images.cpu().numpy() if numpy_in else images.cpu()

    @torch.no_grad()
    def sample_prior(self, n: int, generator: torch.Generator | np.random.Generator | int | None = None) -> Any:
        """n latents from the fitted prior N(prior_mean, prior_std^2) (RIG section 4.3: imagined goals).

        `generator` may be a seed or a torch generator (tensor out), or a numpy generator (float32
        numpy out, drawn from it: the agents' single seeded stream)."""
        if isinstance(generator, np.random.Generator):
            mean, std = self.prior_mean.cpu().numpy(), self.prior_std.cpu().numpy()
            return (mean + generator.standard_normal((n, len(mean))) * std).astype(np.float32)
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        noise = torch.randn(n, self.latent_dim, generator=generator, device="cpu")  # a CPU generator's, out on the CPU
        return self.prior_mean.cpu() + noise * self.prior_std.cpu()


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image reconstruction loss summed over pixels, averaged over the batch.

    `bce`: Bernoulli likelihood of normalised pixels (RIG section 3); `mse`: squared error
    of the decoded (sigmoid) image, the report's choice.
    """
    if kind == "bce":
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif kind == "mse":
        per_pixel = (torch.sigmoid(logits) - target) ** 2
    else:
        raise ValueError(f"unknown reconstruction loss '{kind}' (choose mse or bce)")
    return per_pixel.flatten(1).sum(1).mean()


def beta_vae_loss(vae: "VAE", x: torch.Tensor, beta: float, recon_kind: str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(recon + beta * KL, recon, KL) of a batch x (float (n, 3, H, W) in [0, 1]): the one loss of
    the VAE, for its training (beta annealed) and its online fine-tuning (RIG section 4.1)."""
    logits, mean, logvar = vae(x)
    recon, kl = reconstruction_loss(logits, x, recon_kind), kl_divergence(mean, logvar)
    return recon + beta * kl, recon, kl


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)), summed over latent dimensions, averaged over the batch."""
    return (0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)).sum(1).mean()


def kl_weight(step: int, total_steps: int, beta: float, cycles: int = 1, ratio: float = 0.5) -> float:
    """Cyclical linear KL annealing (Bowman et al. 2016; Fu et al. 2019).

    Training is cut into `cycles` equal cycles; within each, the weight rises linearly
    from 0 to `beta` over the first `ratio` of the cycle, then stays at `beta`.
    With cycles=1, ratio=0.5: 0 at the start, beta from half-way to the end.
    """
    if total_steps <= 0 or ratio <= 0:
        return float(beta)
    cycles = max(1, int(cycles))
    period = total_steps / cycles
    phase = (step % period) / period if step < total_steps else 1.0
    return float(beta) * min(1.0, phase / ratio)
