"""TD3 core throughput and replay memory: prints numbers.

    python benchmarks/td3_core.py

- TD3 updates per second (batch 256, FetchReach sizes: 10-d state + 3-d goal, 4-d action), 1 thread;
- replay sampling of 64x64 images (crl on pixels), gathering what crl reads beside every field;
- the actor's update at the image agents' sizes (16-d latents, [128, 128]), as it is (Q1 alone, the
  critic frozen) beside the plain one (both Qs, critic gradients computed and discarded), alternating;
- DrQ's random shift of crl's pixel batch (512 64x64 images) as it is (uint8 windows from `unfold`)
  beside padding and gathering in float, alternating, and the encoder's whole update beside it;
- replay sampling with HER relabelling, batches per second;
- replay memory per 100k transitions for uint8 images at 64x64 and 128x128, and for latents.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from visgoal.agents.encoders import ConvEncoder, random_shift
from visgoal.agents.replay import EpisodeReplay, negative_distance, no_reward
from visgoal.agents.td3 import TD3Agent, TD3Config


def timed(fn, n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def actor_update_side_by_side(rng: np.random.Generator, rounds: int = 5, n: int = 300) -> None:
    agent = TD3Agent(32, 4, -np.ones(4), np.ones(4), TD3Config(hidden=[128, 128]), rng)
    x = torch.randn(256, 32)

    def plain():
        q1, _ = agent.critic(x, agent.actor.from_normalized(x))
        agent.actor_opt.zero_grad(set_to_none=True)
        (-q1.mean()).backward()
        agent.actor_opt.step()

    rates = {"lean": [], "plain": []}
    for _ in range(rounds):  # alternating, so that the machine's noise hits both alike
        rates["lean"].append(timed(lambda: agent.update_actor(x), n))
        rates["plain"].append(timed(plain, n))
    lean, full = np.median(rates["lean"]), np.median(rates["plain"])
    print(f"actor update (batch 256, [128, 128] nets): {1e3 / lean:.2f} ms as used, {1e3 / full:.2f} ms with both Qs "
          f"and critic gradients ({lean / full:.2f}x faster; medians of {rounds} alternating rounds)")


def float_shift(images: torch.Tensor, pad: int) -> torch.Tensor:
    """The same shift by padding in float and gathering every pixel (the comparison)."""
    n, height, width, _ = images.shape
    padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n, 1))
    rows, cols = dy + torch.arange(height), dx + torch.arange(width)
    return padded[torch.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]


def shift_side_by_side(rounds: int = 5, n: int = 10) -> None:
    images = torch.randint(0, 256, (512, 64, 64, 3), dtype=torch.uint8)
    encoder = ConvEncoder(64, 64)
    optimizer = torch.optim.Adam(encoder.parameters(), fused=True)

    def update(shift):
        features = encoder(shift(images, 4))
        optimizer.zero_grad(set_to_none=True)
        features.square().mean().backward()
        optimizer.step()

    rates = {name: [] for name in ("shift", "float shift", "update", "update, float shift")}
    for _ in range(rounds):  # alternating
        rates["shift"].append(timed(lambda: random_shift(images, 4), n))
        rates["float shift"].append(timed(lambda: float_shift(images, 4), n))
        rates["update"].append(timed(lambda: update(random_shift), n))
        rates["update, float shift"].append(timed(lambda: update(float_shift), n))
    ms = {name: 1e3 / np.median(rate) for name, rate in rates.items()}
    print(f"crl pixels, DrQ shift of 512 64x64 images: {ms['shift']:.1f} ms as used, {ms['float shift']:.1f} ms "
          f"in float; the encoder's update with it: {ms['update']:.1f} ms against {ms['update, float shift']:.1f} ms "
          f"(medians of {rounds} alternating rounds)")


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    agent = TD3Agent(13, 4, -np.ones(4), np.ones(4), TD3Config(), rng)
    batch = {"obs": torch.randn(256, 10), "goal": torch.randn(256, 3), "next_obs": torch.randn(256, 10),
             "action": torch.rand(256, 4) * 2 - 1, "reward": -torch.rand(256), "terminated": torch.zeros(256)}
    print(f"td3 update (batch 256, [64, 64] nets):   {timed(lambda: agent.update(batch), 2000):8.0f} updates/s")
    actor_update_side_by_side(rng)
    shift_side_by_side()

    replay = EpisodeReplay(100_000, 50, (10,), 3, 4, {"future": 0.8}, negative_distance)
    for _ in range(400):
        replay.add_episode(rng.normal(size=(51, 10)), rng.normal(size=(51, 3)), rng.normal(size=3),
                           rng.normal(size=(50, 4)), np.zeros(50), np.zeros(50))
    print(f"replay sample + HER (batch 256):         {timed(lambda: replay.sample(256, rng), 2000):8.0f} batches/s")

    images = EpisodeReplay(20_000, 50, (64, 64, 3), 0, 4, {"geometric": 1.0}, no_reward,
                           obs_dtype=np.uint8, achieved_is_obs=True)
    for _ in range(400):
        frames = rng.integers(0, 256, (51, 64, 64, 3), dtype=np.uint8)
        images.add_episode(frames, frames, rng.integers(
            0, 256, (64, 64, 3), dtype=np.uint8), np.zeros((50, 4)), np.zeros(50), np.zeros(50))
    read = {"lean": [], "all": []}
    for _ in range(5):  # alternating
        images.reads = ("obs", "goal", "action")
        read["lean"].append(timed(lambda: images.sample(256, rng), 100))
        images.reads = None
        read["all"].append(timed(lambda: images.sample(256, rng), 100))
    lean, every = np.median(read["lean"]), np.median(read["all"])
    print(f"replay sample of 64x64 images (batch 256): {1e3 / lean:.2f} ms reading crl's fields, "
          f"{1e3 / every:.2f} ms gathering every field")

    for label, shape, dtype in (("64x64 uint8 images", (64, 64, 3), np.uint8),
                                ("128x128 uint8 images", (128, 128, 3), np.uint8),
                                ("16-d float32 latents", (16,), np.float32)):
        buffer = EpisodeReplay(100_000, 50, shape, 16, 4, {"future": 0.8}, negative_distance, obs_dtype=dtype)
        total = sum(getattr(buffer, name).nbytes for name in buffer.FIELDS)
        print(f"replay memory per 100k transitions, {label:<22} {total / 2**30:7.2f} GiB")


if __name__ == "__main__":
    main()
