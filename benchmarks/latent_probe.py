"""What the image agents can read from a VAE's latents: the simulator's positions and velocities, probed.

    python benchmarks/latent_probe.py --env point_maze --vae results/point_maze/vae.pt --lags 1 4

Random-action episodes (each action held `--hold` steps, so that the body gathers speed; episodes
end as the env ends them) are rendered and encoded. A small MLP is fit on 80% of the episodes and
scored on the rest, as R^2 per coordinate (1: read exactly; 0: no better than the mean):
positions (`qpos`) from z_t alone, and velocities (`qvel`) from [z_t, z_t - z_(t-1)] (lag 1) and
from what the agents observe with `image_agents.latent_frames` k+1 (the last k+1 latents), for each lag k. A probe is a bound, not a verdict: what it cannot read, an agent of
the same inputs will hardly read either.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def rollouts(env, vae, episodes: int, hold: int, scale: float, seed: int):
    """(latents, qpos, qvel, episode index) of every step after a reset, random actions held `hold` steps."""
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    z, qpos, qvel, episode = [], [], [], []
    for ep in range(episodes):
        step, t = env.reset(seed=seed * 100003 + ep), 0
        while not (step.terminated or step.truncated):
            if t % hold == 0:
                action = (low + high) / 2 + scale * (high - low) / 2 * rng.uniform(-1, 1, low.shape)
            step, t = env.step(action), t + 1
            z.append(vae.encode(step.image[None])[0])
            qpos.append(env.data.qpos.copy())
            qvel.append(env.data.qvel.copy())
            episode.append(ep)
    return np.array(z, np.float32), np.array(qpos), np.array(qvel), np.array(episode)


def probe_r2(inputs: np.ndarray, targets: np.ndarray, test: np.ndarray, seed: int, steps: int = 3000) -> np.ndarray:
    """Held-out R^2 per target column of an MLP (two hidden layers of 256) fit on the rows not in `test`."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x_mean, x_std = inputs[~test].mean(0), inputs[~test].std(0) + 1e-6
    y_mean, y_std = targets[~test].mean(0), targets[~test].std(0) + 1e-8
    x = torch.tensor((inputs - x_mean) / x_std, dtype=torch.float32)
    y = torch.tensor((targets - y_mean) / y_std, dtype=torch.float32)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, y.shape[1]))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    train = np.flatnonzero(~test)
    for _ in range(steps):
        batch = rng.choice(train, 256)
        loss = ((net(x[batch]) - y[batch]) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = net(x[test]).numpy() * y_std + y_mean
    return 1.0 - (targets[test] - predicted).var(0) / targets[test].var(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--vae", type=Path, required=True)
    parser.add_argument("--lags", nargs="+", type=int, default=[1, 4], help="k of z_t - z_(t-k) and of k+1 frames")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--hold", type=int, default=5, help="env steps each random action is held")
    parser.add_argument("--scale", type=float, default=1.0, help="random actions over this share of their range")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from visgoal.envs import make_env
    from visgoal.vae import load_vae

    torch.set_num_threads(1)
    vae = load_vae(args.vae)
    with make_env(args.env, image_size=vae.image_size) as env:
        z, qpos, qvel, episode = rollouts(env, vae, args.episodes, args.hold, args.scale, args.seed)
    test = episode >= int(0.8 * args.episodes)
    print(f"{args.env}: {len(z)} steps of {args.episodes} random-action episodes, VAE {args.vae} "
          f"(latent {vae.latent_dim}); held-out R^2 per coordinate")
    moved = np.abs(np.diff(qpos, axis=0))[episode[1:] == episode[:-1]]
    print("median |qvel| per coordinate " + " ".join(f"{v:.3g}" for v in np.median(np.abs(qvel), 0))
          + "; median change of qpos per step " + " ".join(f"{v:.3g}" for v in np.median(moved, 0)))
    print("| probe | R^2 | mean |\n|---|---|---:|")

    def row(name, inputs, targets, keep=slice(None)):
        r2 = probe_r2(inputs[keep], targets[keep], test[keep], args.seed)
        print(f"| {name} | {' '.join(f'{v:.2f}' for v in r2)} | {r2.mean():.2f} |")

    row("positions (qpos) from z_t", z, qpos)
    for k in args.lags:
        keep = np.r_[np.zeros(k, bool), episode[k:] == episode[:-k]]  # steps with k latents before them
        past = [np.r_[np.zeros((j, z.shape[1]), np.float32), z[:len(z) - j]] for j in range(k + 1)]
        row(f"velocities (qvel) from z_t, z_t - z_(t-{k})", np.c_[z, z - past[k]], qvel, keep)
        row(f"velocities (qvel) from the last {k + 1} latents", np.concatenate(past[::-1], 1), qvel, keep)


if __name__ == "__main__":
    main()
