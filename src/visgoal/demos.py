"""Demonstrations: episodes of an env's scripted teacher (visgoal.teachers), or of a trained policy,
recorded with every picture the image agents would see, for agents that learn from them.

`record_demos` runs `demos.episodes` episodes, episode j reset with `evaluation.demo_seed(demos.seed,
j)` (a block of seeds of its own, never the protocol's nor the dataset's: `demo_seed_clash` refuses a
configuration where they could meet). Each step the source picks its action in the state the env is
in; with `demos.noise` > 0 Gaussian noise of that std is added (DART, Laskey et al. 2017) and the sum
clipped to the action space. The action executed (cast to float32, as stored) is `actions`; the
source's own action in that state, its label, is `teacher_actions`. The file's layout and its reader,
`read_demos`, are visgoal.data.demos's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from visgoal import paths
from visgoal.data.demos import episode, read_demos, write_demos  # noqa: F401  (the reader, also from here)

log = logging.getLogger("visgoal")

TEACHER_SOURCE = "teacher"


def demo_source(env_name: str, policy: Path | None, device: str = "cpu"):
    """(view, policy, source) of what acts: the env's scripted teacher, or the trained policy.pt of
    `policy` (a run's, loaded as evaluate loads it), `source` naming it (`teacher`, or `policy:<md5>`).
    An env without a teacher and no `policy`, or a missing or foreign policy, fails in one line."""
    from visgoal.teachers import TEACHERS

    if policy is None:
        if env_name not in TEACHERS:
            raise ValueError(f"{env_name} has no scripted teacher (only {', '.join(sorted(TEACHERS))} have one); "
                             f"record a trained policy's episodes instead with --policy "
                             f"results/{env_name}/<method>/seed<k>/policy.pt")
        return None, None, TEACHER_SOURCE
    from visgoal.agents import load_policy
    from visgoal.tracking import file_hash

    policy = Path(policy)
    if policy.is_dir() or policy.name != paths.POLICY:
        raise ValueError(f"{policy}: --policy takes a run's {paths.POLICY} (e.g. results/{env_name}/td3/seed0/"
                         f"{paths.POLICY}); give its path")
    view, acting, meta = load_policy(policy.parent, device=device)  # a missing or foreign file fails here
    if meta.get("env") != env_name:
        raise ValueError(f"{policy}: a policy of {meta.get('env') or 'another environment'}, not of {env_name}; "
                         f"give one trained on {env_name}")
    return view, acting, f"policy:{file_hash(policy)}"


def record_demos(env_name: str, params, view=None, acting=None, progress: bool = True):
    """Yield, for each of `demos.episodes` episodes, its episode dict for `write_demos`: every picture,
    action, state and outcome (data.demos), acted by the env's teacher, or by (`view`, `acting`) of
    `demo_source` for a policy. Progress on stderr: episodes done and successes so far."""
    from tqdm import tqdm

    from visgoal.envs import make_env
    from visgoal.evaluation import demo_seed

    cfg = params["demos"]
    with make_env(env_name, image_size=params["render"]["image_size"]) as env:
        if view is None:
            from visgoal.teachers import teacher_agent

            view, acting = teacher_agent([env])
        low, high = env.action_space.low, env.action_space.high
        successes = 0
        with tqdm(total=cfg["episodes"], desc=f"demos {env_name}", unit="episode", disable=not progress) as bar:
            for j in range(cfg["episodes"]):
                seed = demo_seed(cfg["seed"], j)
                episode = demonstrate(env, view, acting, seed, cfg["noise"], low, high)
                successes += episode["success"]
                bar.set_postfix(success=f"{successes}/{j + 1}", refresh=False)
                bar.update()
                if not progress:
                    log.info("demo %d/%d: %d steps, %s (%d of %d so far)", j + 1, cfg["episodes"],
                             len(episode["actions"]), "success" if episode["success"] else "failure", successes, j + 1)
                yield episode


def demonstrate(env, view, policy, seed: int, noise: float, low: np.ndarray, high: np.ndarray) -> dict:
    """One episode from the reset `seed`, acted by `policy` through `view` (the protocol's interface:
    `run_episodes` acts the same way), with noise of std `noise` on the env's actions (its own
    generator, seeded by the reset seed)."""
    rng = np.random.default_rng([seed, 1])  # not the env's stream: its goals come from default_rng(seed)
    view = view.for_episode()
    policy.reset([seed])
    step = env.reset(seed=seed)
    goal = view.goal(step)
    obs, _ = view.observe(step)
    frames, states, achieved = [step.image], [step.state], [step.achieved_goal]
    actions, labels = [], []
    while not (step.terminated or step.truncated):
        label = np.asarray(policy.env_action(policy.act(obs[None], goal[None])[0]), dtype=np.float32)
        action = label if noise == 0 else np.clip(label + rng.normal(0.0, noise, label.shape), low, high)
        action = np.asarray(action, dtype=np.float32)  # what is stored is what is executed, to the bit
        step = env.step(action)
        obs, _ = view.observe(step)
        actions.append(action)
        labels.append(label)
        frames.append(step.image)
        states.append(step.state)
        achieved.append(step.achieved_goal)
    return {"frames": np.stack(frames), "goal": step.goal_image, "actions": np.stack(actions),
            "teacher_actions": np.stack(labels), "observation": np.stack(states), "achieved_goal": np.stack(achieved),
            "desired_goal": step.desired_goal, "seed": seed, "success": bool(step.success),
            "terminated": bool(step.terminated)}


def picture_rows(path: Path, episodes: int = 4) -> tuple[list[list[np.ndarray]], list[str]]:
    """The first `episodes` demonstrations as rows (first frame, middle frame, final frame, goal image)
    and their labels (episode, length, success): demos.png's."""
    demos = read_demos(path)
    rows, labels = [], []
    for e in range(min(episodes, len(demos["start"]))):
        frames, goal, _ = episode(demos, e)
        rows.append([frames[0], frames[len(frames) // 2], frames[-1], goal])
        labels.append(f"episode {e}\n{int(demos['length'][e])} steps\n{'success' if demos['success'][e] else 'failure'}")
    return rows, labels
