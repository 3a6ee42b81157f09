"""The VAE's training speed on this CPU: frames per second and the FLOP rate they imply.

    python benchmarks/vae_speed.py [--batches 20] [--profile default]

One process, every variant side by side on the same batches: threads (1 or 2),
memory format (contiguous or channels_last) and precision (fp32, or bf16 autocast).
A training step is the VAE loss's forward and backward and an Adam step, at
params.yaml's `vae` architecture and batch size. The FLOP count per frame is torch's
own (`FlopCounterMode`, forward and backward).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from visgoal.config import load_params
from visgoal.vae.model import VAE, beta_vae_loss


def make_vae(cfg: dict, image_size: int) -> VAE:
    torch.manual_seed(0)
    return VAE(image_size=image_size, latent_dim=cfg["latent_dim"], encoder_channels=cfg["encoder_channels"],
               decoder_channels=cfg["decoder_channels"], negative_slope=cfg["negative_slope"])


def flops_per_frame(cfg: dict, image_size: int, batch: torch.Tensor) -> float:
    vae = make_vae(cfg, image_size).train()
    with FlopCounterMode(display=False) as counter:
        loss, _, _ = beta_vae_loss(vae, batch, cfg["beta"], cfg["recon_loss"])
        loss.backward()
    return counter.get_total_flops() / len(batch)


def frames_per_second(cfg: dict, image_size: int, batches: list[torch.Tensor], threads: int, channels_last: bool,
                      bf16: bool) -> float:
    torch.set_num_threads(threads)
    vae = make_vae(cfg, image_size).train()
    if channels_last:
        vae = vae.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg["lr"])

    def step(x):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _, _ = beta_vae_loss(vae, x, cfg["beta"], cfg["recon_loss"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(batches[0])  # warm-up: kernel selection
    start = time.perf_counter()
    for x in batches:
        step(x)
    return sum(len(x) for x in batches) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="timed training steps per variant")
    parser.add_argument("--profile", default="default")
    args = parser.parse_args()
    params = load_params(profile=args.profile)
    cfg, image_size = params["vae"], params["render"]["image_size"]
    rng = np.random.default_rng(0)
    batches = [torch.from_numpy(rng.integers(0, 256, (cfg["batch_size"], 3, image_size, image_size),
                                             dtype=np.uint8)).float().div_(255) for _ in range(args.batches)]
    flops = flops_per_frame(cfg, image_size, batches[0])
    print(f"VAE {image_size}x{image_size}, latent {cfg['latent_dim']}, batch {cfg['batch_size']}: "
          f"{flops / 1e6:.0f} MFLOP per frame (forward and backward)")
    print(f"{'threads':>7} {'format':>13} {'precision':>9} {'frames/s':>9} {'GFLOP/s':>8}")
    for threads in (1, 2):
        for channels_last in (False, True):
            for bf16 in (False, True):
                fps = frames_per_second(cfg, image_size, batches, threads, channels_last, bf16)
                print(f"{threads:>7} {'channels_last' if channels_last else 'contiguous':>13} "
                      f"{'bf16' if bf16 else 'fp32':>9} {fps:>9.0f} {fps * flops / 1e9:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
