"""The beta-VAE: model, training, and its checkpoint file.

    vae = load_vae("results/fetch_reach/vae.pt")
    z = vae.encode(images_uint8)          # (n, H, W, 3) uint8 -> (n, latent_dim) posterior means
    images = vae.decode(z)                # -> (n, H, W, 3) uint8
    goals = vae.sample_prior(16, seed)    # latents from the fitted prior (RIG section 4.3)
    save_vae(vae, "vae.pt", {"env": ...}) # atomically; load_vae reads it back
"""

from __future__ import annotations

from pathlib import Path

from visgoal.vae.model import CHECKPOINT_FORMAT, VAE, kl_weight


class VAEError(ValueError):
    """A VAE checkpoint that is missing or not ours: one line, with the fix."""


def load_vae(path: str | Path, map_location: str = "cpu") -> VAE:
    """Rebuild a trained VAE from `vae.pt` (weights-only load), in eval mode."""
    from visgoal.files import load_weights

    path = Path(path)
    fix = "train one with `python -m visgoal train-vae`"
    if not path.is_file():
        raise VAEError(f"{path}: VAE checkpoint not found; {fix}")
    checkpoint = load_weights(path, VAEError(f"{path}: not a visgoal VAE checkpoint (not a PyTorch weights file, "
                                             f"or truncated); {fix}"), map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise VAEError(f"{path}: not a visgoal VAE checkpoint; {fix}")
    vae = VAE(**checkpoint["config"])
    vae.load_state_dict(checkpoint["state_dict"])
    return vae.to(map_location).eval()


def save_vae(vae: VAE, path: str | Path, extra: dict) -> None:
    """Write `vae.pt` atomically: format, architecture config, weights, fitted prior and `extra`."""
    import torch

    from visgoal.files import atomic_output

    state = {k: v.detach().cpu().clone() for k, v in vae.state_dict().items()}
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": vae.config(),
        "state_dict": state,
        "prior": {"mean": vae.prior_mean.detach().cpu().clone(), "std": vae.prior_std.detach().cpu().clone()},
        **extra,
    }
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)


__all__ = ["VAE", "VAEError", "kl_weight", "load_vae", "save_vae"]
