"""The demos stage: the teachers' demonstrations through the real CLI (smoke profile), byte-identical per
seed, their reader without the simulator's state, reset seeds that never meet the protocol's, and
one-line errors for what cannot be read or recorded."""

import h5py
import numpy as np
import pytest

from conftest import run_cli
from visgoal.config import load_params
from visgoal.data import DemosError, read_demos
from visgoal.data.demos import episode
from visgoal.evaluation import demo_seed, demo_seed_clash, episode_seed


def record(out, env="franka_kitchen", *sets):
    result = run_cli("demos", "--env", env, "--profile", "smoke", "--out", str(out), "--quiet",
                     *(arg for s in sets for arg in ("--set", s)))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def kitchen(workdir):
    return record(workdir / "kitchen" / "demos.h5")


@pytest.fixture(scope="module")
def relocate(workdir):
    return record(workdir / "relocate" / "demos.h5", "adroit_relocate")


def error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    return lines[-1]


def test_the_kitchen_teacher_opens_the_door_in_its_demonstrations(kitchen):
    demos = read_demos(kitchen, state=True)
    assert len(demos["start"]) == 2  # the smoke profile's demos.episodes
    assert demos["success"].all() and demos["terminated"].all()  # the kitchen ends its episode at the task's completion
    door = demos["state"]["achieved_goal"][demos["start"] + demos["length"], 0]  # each episode's final frame
    assert (np.abs(door - demos["state"]["desired_goal"][:, 0]) < 0.3).all() and (door < -0.45).all()
    assert (kitchen.parent / "demos.png").stat().st_size > 0


def test_the_relocate_teacher_lifts_the_ball_to_its_target(relocate):
    demos = read_demos(relocate, state=True)
    assert demos["success"].all() and not demos["terminated"].any()  # held there until the time limit
    assert (demos["length"] == 200).all()
    ball = demos["state"]["achieved_goal"]
    for e in range(len(demos["start"])):
        heights = ball[demos["start"][e] : demos["start"][e] + demos["length"][e] + 1, 2]
        assert heights.max() > heights[0] + 0.05, "the ball was lifted off the table"


def test_the_layout(kitchen, relocate):
    """Frames, actions and episodes line up; each picture is the env's own observation picture."""
    from visgoal.envs import make_env

    demos = read_demos(kitchen)
    n, e = len(demos["obs"]), len(demos["start"])
    assert n == (demos["length"] + 1).sum() and len(demos["actions"]) == demos["length"].sum() == n - e
    assert demos["start"].tolist() == np.concatenate([[0], np.cumsum(demos["length"] + 1)[:-1]]).tolist()
    assert demos["obs"].dtype == np.uint8 and demos["obs"].shape[1:] == demos["goal"].shape[1:] == (64, 64, 3)
    assert demos["actions"].dtype == demos["teacher_actions"].dtype == np.float32
    # The kitchen records with DART noise (its env file's demos.noise): the executed action is the teacher's
    # plus noise, within the action box; relocate's (no noise) are the teacher's own.
    noise = load_params(env="franka_kitchen")["demos"]["noise"]
    assert noise > 0 and 0 < np.abs(demos["actions"] - demos["teacher_actions"]).mean() < 2 * noise
    assert np.abs(demos["actions"]).max() <= 1.0
    plain = read_demos(relocate)
    assert np.array_equal(plain["actions"], plain["teacher_actions"]), "no noise: the executed action is the teacher's"
    assert demos["seed"].tolist() == [demo_seed(0, j) for j in range(e)]
    assert demos["attrs"]["env"] == "franka_kitchen" and demos["attrs"]["source"] == "teacher"
    with make_env("franka_kitchen") as env:
        step = env.reset(seed=int(demos["seed"][1]))
        frames, goal, _ = episode(demos, 1)
        assert np.array_equal(frames[0], step.image) and np.array_equal(goal, step.goal_image)


def test_replayed_actions_give_the_recorded_states(kitchen):
    """The stored action is the one executed, to the bit: replayed from the same reset, the same states."""
    from visgoal.envs import make_env

    demos = read_demos(kitchen, state=True)
    first, steps = int(demos["start"][0]), int(demos["length"][0])
    with make_env("franka_kitchen", render_images=False) as env:
        states = [env.reset(seed=int(demos["seed"][0])).state]
        states += [env.step(action).state for action in episode(demos, 0)[2]]
    assert np.array_equal(np.stack(states), demos["state"]["observation"][first : first + steps + 1])


def test_the_reader_holds_no_state_unless_asked(kitchen):
    demos = read_demos(kitchen)
    assert set(demos) == {"obs", "goal", "actions", "teacher_actions", "start", "length", "seed", "success",
                          "terminated", "attrs"}
    assert "state" not in demos
    state = read_demos(kitchen, state=True)["state"]
    assert set(state) == {"observation", "achieved_goal", "desired_goal"}
    assert len(state["observation"]) == len(demos["obs"]) and len(state["desired_goal"]) == len(demos["goal"])
    with h5py.File(kitchen) as f:
        assert sorted(f) == ["actions", "episodes", "images", "state", "teacher_actions"]


def test_same_seed_gives_the_same_bytes_and_another_seed_others(kitchen, workdir):
    again = record(workdir / "again" / "demos.h5")
    assert again.read_bytes() == kitchen.read_bytes()
    other = record(workdir / "other" / "demos.h5", "franka_kitchen", "demos.seed=1")
    assert other.read_bytes() != kitchen.read_bytes()
    assert read_demos(other)["seed"].tolist() == [demo_seed(1, 0), demo_seed(1, 1)]


def test_noise_moves_the_executed_actions_and_keeps_the_teachers(workdir):
    """DART: the noisy action is executed and stored as `actions`, inside the action space; the
    teacher's own action in the same state as `teacher_actions`."""
    demos = read_demos(record(workdir / "noisy" / "demos.h5", "franka_kitchen", "demos.noise=0.1",
                              "demos.episodes=1"))
    difference = demos["actions"] - demos["teacher_actions"]
    assert 0.05 < difference.std() < 0.15
    assert (np.abs(demos["actions"]) <= 1).all()  # the kitchen's action space is [-1, 1]


def test_demonstration_seeds_never_meet_evaluation_seeds():
    """Eval seeds 0..9 with 50 episodes each (the protocol is 0, the validation seed 1), against demos.seed
    0..9 with up to 100 demonstrations, and the dataset's seed."""
    evaluation = {episode_seed(s, i) for s in range(10) for i in range(50)}
    demos = {demo_seed(s, j) for s in range(10) for j in range(100)}
    assert not evaluation & demos and len(demos) == 1000
    assert not {0, 1, 2} & demos  # dataset.seed
    for s in range(10):
        for eval_seed in range(10):
            assert demo_seed_clash({"seed": s, "episodes": 100}, {"eval_seed": eval_seed, "episodes": 50},
                                   {"seed": 0}) is None
    # Blocks large enough to meet are refused, naming the keys to change.
    clash = demo_seed_clash({"seed": 1, "episodes": 25}, {"eval_seed": 10000, "episodes": 100003}, {"seed": 0})
    assert clash and "demos.seed" in clash and "evaluate.eval_seed" in clash
    assert "dataset.seed" in demo_seed_clash({"seed": 0, "episodes": 25}, {"eval_seed": 0, "episodes": 50},
                                             {"seed": demo_seed(0, 3)})


def test_a_clashing_configuration_is_refused_in_one_line(workdir):
    """By the demos stage, and by evaluate: the protocol's episodes would be demonstrations'."""
    clash = ["--set", "demos.seed=1", "--set", "evaluate.eval_seed=10000", "--set", "evaluate.episodes=100003"]
    out = workdir / "clash" / "demos.h5"
    result = run_cli("demos", "--env", "franka_kitchen", "--profile", "smoke", "--out", str(out), *clash)
    assert "meet eval seed 10000" in error_line(result)
    out = workdir / "clash" / "teacher_eval.csv"
    result = run_cli("evaluate", "--env", "franka_kitchen", "--method", "teacher", "--profile", "smoke", "--out",
                     str(out), *clash)
    assert "meet eval seed 10000" in error_line(result)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_a_trained_policy_can_be_the_source(workdir):
    """`--policy`: a run's policy.pt acts instead of a teacher (point_maze has none), as evaluate loads it;
    its actions in the env's box, its file's hash the source; another env's policy is refused."""
    from visgoal.envs import make_env
    from visgoal.tracking import file_hash

    run = workdir / "td3" / "seed0"
    result = run_cli("train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--out", str(run),
                     "--quiet")
    assert result.returncode == 0, result.stderr
    out = workdir / "policy" / "demos.h5"
    result = run_cli("demos", "--env", "point_maze", "--profile", "smoke", "--policy", str(run / "policy.pt"),
                     "--out", str(out), "--quiet", "--set", "demos.noise=0.2")
    assert result.returncode == 0, result.stderr
    demos = read_demos(out)
    assert demos["attrs"]["source"] == f"policy:{file_hash(run / 'policy.pt')}"
    with make_env("point_maze", render_images=False) as env:
        low, high = env.action_space.low, env.action_space.high
        length = env.spec.episode_length
    assert ((demos["actions"] >= low) & (demos["actions"] <= high)).all()
    assert ((demos["teacher_actions"] >= low - 1e-6) & (demos["teacher_actions"] <= high + 1e-6)).all()
    assert not np.array_equal(demos["actions"], demos["teacher_actions"])  # the noise
    assert (demos["length"] <= length).all() and len(demos["obs"]) == (demos["length"] + 1).sum()
    result = run_cli("demos", "--env", "fetch_reach", "--profile", "smoke", "--policy", str(run / "policy.pt"),
                     "--out", str(workdir / "fetch.h5"))
    assert "a policy of point_maze, not of fetch_reach" in error_line(result)
    assert not (workdir / "fetch.h5").exists()


def test_what_cannot_be_recorded_or_read_fails_in_one_line(kitchen, workdir):
    """No teacher and no policy; a missing or foreign policy; a missing or truncated demos.h5 (read by
    the dataset stage, where dataset.demo_share > 0)."""
    result = run_cli("demos", "--env", "point_maze", "--profile", "smoke", "--out", str(workdir / "pm.h5"))
    assert "point_maze has no scripted teacher" in error_line(result) and "--policy" in error_line(result)
    result = run_cli("demos", "--env", "point_maze", "--profile", "smoke", "--policy", str(workdir / "none" / "policy.pt"))
    assert "no policy" in error_line(result)
    foreign = workdir / "foreign" / "policy.pt"
    foreign.parent.mkdir()
    foreign.write_bytes(b"not a policy")
    assert "not a visgoal policy" in error_line(run_cli("demos", "--env", "point_maze", "--profile", "smoke",
                                                        "--policy", str(foreign)))
    assert not (workdir / "pm.h5").exists()

    truncated = workdir / "truncated.h5"
    truncated.write_bytes(kitchen.read_bytes()[: kitchen.stat().st_size // 2])
    for path, expected in ((workdir / "missing.h5", "demonstrations not found"),
                           (truncated, "truncated or corrupt")):
        with pytest.raises(DemosError, match=expected):
            read_demos(path)
        result = run_cli("dataset", "--env", "franka_kitchen", "--profile", "smoke", "--demos", str(path),
                         "--out", str(workdir / "ds.h5"), "--quiet")
        assert expected in error_line(result) and str(path) in error_line(result)
    assert not (workdir / "ds.h5").exists()


def test_the_dataset_takes_its_demo_share_from_the_demonstrations(kitchen, workdir):
    """franka_kitchen's dataset.demo_share (0.25, its env file): the last quarter of the frames are the
    demonstrations' pictures, with their true goals, the same bytes for one process or two; a share of 1
    is all of them."""
    from visgoal.data import ImageDataset
    from visgoal.tracking import file_hash

    files = []
    for name, sets in (("a", ["speed.processes=1"]), ("b", ["speed.processes=2"]), ("all", ["dataset.demo_share=1"])):
        out = workdir / f"share_{name}" / "vae_dataset.h5"
        result = run_cli("dataset", "--env", "franka_kitchen", "--profile", "smoke", "--demos", str(kitchen),
                         "--out", str(out), "--quiet", *(arg for s in sets for arg in ("--set", s)))
        assert result.returncode == 0, result.stderr
        files.append(out)
    assert files[0].read_bytes() == files[1].read_bytes()
    assert ImageDataset(files[2]).attrs["demo_frames"] == 64
    data, demos = ImageDataset(files[0]), read_demos(kitchen, state=True)
    assert len(data) == 64 and data.attrs["demo_frames"] == 16 and data.attrs["demos"] == file_hash(kitchen)
    images, achieved = data.images(slice(48, 64)), data.read("achieved_goal", slice(48, 64))
    is_goal = data.read("is_goal", slice(48, 64))
    pool = np.concatenate([demos["obs"], demos["goal"]]).reshape(len(demos["obs"]) + len(demos["goal"]), -1)
    truth = np.concatenate([demos["state"]["achieved_goal"], demos["state"]["desired_goal"]])
    for image, goal, flag in zip(images, achieved, is_goal):
        match = np.flatnonzero((pool == image.reshape(-1)).all(axis=1))
        assert len(match), "a frame that is not a demonstration's picture"
        assert any(np.array_equal(truth[k], goal) and (k >= len(demos["obs"])) == flag for k in match)
    own = data.read("is_goal", slice(0, 48))
    assert own.tolist() == [False, True] * 24  # the rest: the random-exploration recipe as before
    data.close()


def test_a_zero_demo_share_reads_no_demonstrations_and_changes_nothing(kitchen, workdir):
    """At demo_share 0 the dataset stage reads no demos.h5 (a missing one is no error) and writes what
    it wrote before the share existed: no demonstration attributes, the share not among its parameters."""
    from visgoal.data import ImageDataset

    files = []
    for name, demos in (("with", kitchen), ("without", workdir / "missing.h5")):
        out = workdir / f"zero_{name}" / "vae_dataset.h5"
        result = run_cli("dataset", "--env", "franka_kitchen", "--profile", "smoke", "--set", "dataset.demo_share=0",
                         "--demos", str(demos), "--out", str(out), "--quiet")
        assert result.returncode == 0, result.stderr
        files.append(out)
    assert files[0].read_bytes() == files[1].read_bytes()
    data = ImageDataset(files[0])
    assert "demo_frames" not in data.attrs and "demos" not in data.attrs
    assert "demo_share" not in data.attrs["params"]
    assert data.read("is_goal", slice(None)).tolist() == [False, True] * 32
    data.close()
