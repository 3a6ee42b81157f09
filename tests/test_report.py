"""The report stage on a small synthetic results tree, through the real command line and the function."""

import csv
import statistics

import matplotlib.image
import numpy as np
import pytest

from conftest import run_cli
from visgoal.config import load_params
from visgoal.evaluation import COLUMNS
from visgoal.figures import image_grid, save_png
from visgoal.report import report

ENVS = ["fetch_reach", "point_maze"]  # params.yaml's order
METHODS = ["td3", "tdm", "rig"]
SEEDS = [0, 1]
EPISODES = 6
MISSING = ("fetch_reach", "rig")  # never evaluated: a '–' cell, no row
OUTPUTS = ["summary.csv", "summary.md", "curves.png", "final.png", "vae_recon.png", "frames.png"]


def _picture(rng, rows: int, cols: int, size: int = 8) -> np.ndarray:
    return image_grid([[rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(cols)]
                       for _ in range(rows)])


def _write_csv(path, fieldnames, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """2 envs x 3 methods x 2 seeds: eval CSVs, curves (one with an extra column, one cut short), pictures."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    for env in ENVS:
        save_png(_picture(rng, 2, 8), root / env / "vae_recon.png", scale=2)
        for method in METHODS:
            if (env, method) == MISSING:
                continue
            rows = [{"env": env, "method": method, "seed": seed, "episode": i,
                     "final_distance": rng.uniform(0, 0.5), "success": bool(rng.random() < 0.6),
                     "min_distance": 0.0, "latent_distance": "" if method == "td3" else rng.uniform(0, 3),
                     "return": -rng.uniform(0, 50), "steps": 50} for seed in SEEDS for i in range(EPISODES)]
            rows += [{**rows[0], "seed": 7}]  # a seed outside params.yaml's: left out
            _write_csv(root / env / f"{method}_eval.csv", COLUMNS, rows)
            if method != "rig":
                save_png(_picture(rng, 2, 3), root / env / f"{method}_eval.png", scale=2)
            for seed in SEEDS:
                steps = range(100, 600 if seed == 0 else 400, 100)
                extra = ["eval_latent_distance"] if method != "td3" else []
                _write_csv(root / env / method / f"seed{seed}" / "curve.csv",
                           ["env_steps", "eval_success_rate", "eval_final_distance", "eval_return", "wall_clock_s",
                            *extra],
                           [{"env_steps": s, "eval_success_rate": min(1.0, s / 500 * rng.uniform(0.5, 1)),
                             "eval_final_distance": 0.1, "eval_return": -1.0, "wall_clock_s": 0.1,
                             **{k: 1.0 for k in extra}} for s in steps])
    return root


def expected_summary(results) -> dict:
    """(env, method) -> numbers computed from the eval CSVs without pandas."""
    out = {}
    for env in ENVS:
        for method in METHODS:
            path = results / env / f"{method}_eval.csv"
            if not path.is_file():
                continue
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["seed"]) in SEEDS]
            success = [statistics.mean(r["success"] == "True" for r in rows if int(r["seed"]) == s) for s in SEEDS]
            distance = [statistics.mean(float(r["final_distance"]) for r in rows if int(r["seed"]) == s)
                        for s in SEEDS]
            out[env, method] = {"n_seeds": len(SEEDS), "episodes": len(rows),
                                "success_rate_mean": statistics.mean(success),
                                "success_rate_std": statistics.stdev(success),
                                "final_distance_mean": statistics.mean(distance),
                                "final_distance_std": statistics.stdev(distance)}
    return out


@pytest.fixture(scope="module")
def cli_report(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = run_cli("report", "--results", str(results), "--out", str(out), "--profile", "default",
                     "--set", f"seeds={SEEDS}")
    assert result.returncode == 0, result.stderr
    return out, result


def test_cli_writes_every_output_atomically(cli_report):
    out, result = cli_report
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)  # no temporary files left behind
    for name in OUTPUTS:
        assert f"wrote {out / name}" in result.stderr
    for name in OUTPUTS:
        if name.endswith(".png"):
            image = matplotlib.image.imread(out / name)
            assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0.01, name


def test_summary_csv_matches_the_eval_csvs(cli_report, results):
    out, _ = cli_report
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    expected = expected_summary(results)
    assert [(r["env"], r["method"]) for r in rows] == list(expected)  # params order, the missing one skipped
    assert MISSING not in expected and len(rows) == len(ENVS) * len(METHODS) - 1
    for row in rows:
        want = expected[row["env"], row["method"]]
        assert int(row["n_seeds"]) == want["n_seeds"] and int(row["episodes"]) == want["episodes"] == 2 * EPISODES
        for key in ("success_rate_mean", "success_rate_std", "final_distance_mean", "final_distance_std"):
            assert float(row[key]) == pytest.approx(want[key], abs=1e-6), (row["env"], row["method"], key)


def test_summary_md_is_a_methods_by_envs_table(cli_report, results):
    out, _ = cli_report
    text = (out / "summary.md").read_text()
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    assert header == "| method | " + " | ".join(ENVS) + " |"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith("| ") and line != header}
    assert list(rows) == METHODS
    for (env, method), want in expected_summary(results).items():
        cell = (f"{want['success_rate_mean']:.2f} ± {want['success_rate_std']:.2f}"
                f" ({want['final_distance_mean']:.3f} m)")
        assert cell in rows[method], (env, method, cell)
    assert rows["rig"].startswith("| rig | – |")


def test_the_function_again_gives_the_same_bytes(cli_report, results, tmp_path):
    out, _ = cli_report
    assert report(results, tmp_path, load_params(profile="default", overrides=[f"seeds={SEEDS}"])) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    for name in ("summary.csv", "summary.md"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_one_seed_has_no_spread(results, tmp_path):
    report(results, tmp_path, load_params(profile="default", overrides=["seeds=[1]"]))
    text = (tmp_path / "summary.md").read_text()
    assert "±" not in text.split("|---|")[1] and "Fewer seeds" not in text
    with open(tmp_path / "summary.csv") as f:
        assert all(r["n_seeds"] == "1" and r["success_rate_std"] == "" for r in csv.DictReader(f))


def test_missing_results_fail_with_one_line(tmp_path):
    result = run_cli("report", "--results", str(tmp_path / "nothing"), "--out", str(tmp_path / "report"))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("visgoal report:")]
    assert len(errors) == 1 and errors[0].startswith("visgoal report: error:"), result.stderr
    assert "python -m visgoal evaluate" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "report").exists()


def test_eval_json_and_summary_csv_agree_on_the_spread_over_seeds(workdir, tmp_path):
    """`<method>_eval.json` (evaluate) and summary.csv (report) of the same runs give the same mean and
    the same std over seeds: the sample std (ddof=1); with one seed there is none (null, an empty cell)."""
    import json

    from visgoal.cli import main

    results = tmp_path / "results"
    for seed in (0, 1):
        assert main(["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet",
                     "--seed", str(seed), "--out", str(results / "point_maze" / "td3" / f"seed{seed}")]) == 0
    scope = ["--set", "envs=[point_maze]", "--set", "methods=[td3]"]
    for seeds in ([0, 1], [0]):
        name = "".join(map(str, seeds))
        out = tmp_path / name
        evaluation = out / "point_maze" / "td3_eval.csv"
        assert main(["evaluate", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet",
                     "--seeds", *map(str, seeds), "--runs", str(results / "point_maze" / "td3"),
                     "--out", str(evaluation)]) == 0
        assert main(["report", "--profile", "smoke", "--quiet", "--results", str(out), "--out", str(out / "report"),
                     "--set", f"seeds={seeds}", *scope]) == 0
        summary = json.loads(evaluation.with_suffix(".json").read_text())
        with open(out / "report" / "summary.csv") as f:
            (row,) = list(csv.DictReader(f))
        for key in ("success_rate", "final_distance"):
            assert float(row[f"{key}_mean"]) == pytest.approx(summary[key], abs=1e-6), (seeds, key)
            if len(seeds) == 1:
                assert summary[f"{key}_std"] is None and row[f"{key}_std"] == "", (key, summary, row)
            else:
                assert float(row[f"{key}_std"]) == pytest.approx(summary[f"{key}_std"], abs=1e-6), (key, summary, row)
        if len(seeds) == 2:  # two different seeds: a spread that tells ddof=1 from ddof=0 (sqrt 2 apart)
            with open(evaluation) as f:
                rows = list(csv.DictReader(f))
            per_seed = [statistics.mean(float(r["final_distance"]) for r in rows if int(r["seed"]) == s) for s in seeds]
            assert per_seed[0] != per_seed[1]
            assert summary["final_distance_std"] == pytest.approx(statistics.stdev(per_seed))


def _texts_outside(fig) -> list[str]:
    """What of a figure, as saved, does not lie wholly within it: its texts (titles, legends, labels)
    by name, then all that is drawn, tick labels included, as matplotlib's tight box around it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)  # the layout, as savefig does it
    box = fig.bbox
    ticks = {id(label) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)  # drawn only where their tick
             for tick in axis.get_major_ticks() + axis.get_minor_ticks()  # is in view: in the tight box
             for label in (tick.label1, tick.label2)}
    boxes = [(repr(text.get_text()), text.get_window_extent(renderer))
             for text in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_visible() and a.get_text())
             if id(text) not in ticks]
    boxes.append(("everything drawn", fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)))
    return [f"{name}: {e.x0:.0f}..{e.x1:.0f} x {e.y0:.0f}..{e.y1:.0f} in {box.width:.0f} x {box.height:.0f}"
            for name, e in boxes
            if e.x0 < box.x0 - 0.5 or e.x1 > box.x1 + 0.5 or e.y0 < box.y0 - 0.5 or e.y1 > box.y1 + 0.5]


def _position(image: np.ndarray, inside: np.ndarray) -> tuple[int, int] | None:
    """Where `image` lies pixel for pixel in `inside` (RGB uint8 arrays), if it does."""
    h, w, _ = image.shape
    ay, ax = np.argwhere((image != 255).any(axis=-1))[0]  # an anchor that is not the white padding
    for y, x in np.argwhere((inside == image[ay, ax]).all(axis=-1)) - (ay, ax):
        if y >= 0 and x >= 0 and np.array_equal(inside[y : y + h, x : x + w], image):
            return int(y), int(x)
    return None


def _rgb(path) -> np.ndarray:
    return np.round(matplotlib.image.imread(path)[..., :3] * 255).astype(np.uint8)


@pytest.mark.parametrize("envs", [["point_maze"], ENVS])
def test_figures_cut_no_text_and_frames_keeps_the_eval_pictures_pixels(results, tmp_path, monkeypatch, envs):
    """Every text of every figure lies within it (curves.png's legend title with one environment was
    wider than the figure); frames.png and vae_recon.png place the saved pictures pixel for pixel, their
    labels as sharp and whole as evaluate wrote them (resampled, "success" read "uccess")."""
    import visgoal.report

    figures, save = {}, visgoal.report._save

    def keep(fig, path):
        figures[path.name] = fig
        return save(fig, path)

    monkeypatch.setattr(visgoal.report, "_save", keep)
    report(results, tmp_path, load_params(profile="default", overrides=[f"seeds={SEEDS}", f"envs={envs}"]))
    assert sorted(figures) == ["curves.png", "final.png", "frames.png", "vae_recon.png"]
    for name, fig in figures.items():
        assert not _texts_outside(fig), (name, _texts_outside(fig))
    frames = _rgb(tmp_path / "frames.png")
    for env in envs:
        for method in METHODS:
            if (picture := results / env / f"{method}_eval.png").is_file():
                assert _position(_rgb(picture), frames) is not None, (env, method)
        assert _position(_rgb(results / env / "vae_recon.png"), _rgb(tmp_path / "vae_recon.png")) is not None, env


def test_the_teacher_is_a_row_of_its_own_with_its_one_seed(tmp_path):
    """An env's teacher_eval.csv is the table's last row, `teacher`, whatever `seeds` are (it has seed 0
    only); an env without a teacher has a '–' there, and the short-of-seeds note leaves the teacher out."""
    rng = np.random.default_rng(1)
    root = tmp_path / "results"
    for env, method, seeds in (("fetch_reach", "td3", [1, 2]), ("franka_kitchen", "td3", [1, 2]),
                               ("franka_kitchen", "gcbc", [1, 2]), ("franka_kitchen", "teacher", [0])):
        rows = [{"env": env, "method": method, "seed": seed, "episode": i, "final_distance": 0.25,
                 "success": method == "teacher", "min_distance": 0.0, "latent_distance": "", "return": -1.0,
                 "steps": 49} for seed in seeds for i in range(3)]
        _write_csv(root / env / f"{method}_eval.csv", COLUMNS, rows)
    params = load_params(profile="default", overrides=["seeds=[1, 2]", "methods=[td3]",
                                                       "envs=[fetch_reach, franka_kitchen]"])
    report(root, tmp_path / "report", params)
    with open(tmp_path / "report" / "summary.csv") as f:
        summary = {(r["env"], r["method"]): r for r in csv.DictReader(f)}
    assert list(summary) == [("fetch_reach", "td3"), ("franka_kitchen", "td3"), ("franka_kitchen", "gcbc"),
                             ("franka_kitchen", "teacher")]
    assert summary["franka_kitchen", "gcbc"]["n_seeds"] == "2"
    assert summary["franka_kitchen", "teacher"]["n_seeds"] == "1"
    assert float(summary["franka_kitchen", "teacher"]["success_rate_mean"]) == 1.0
    table = (tmp_path / "report" / "summary.md").read_text()
    assert "| teacher | – | 1.00 (0.250 rad) |" in table and "| gcbc | – | 0.00 ± 0.00 (0.250 rad) |" in table
    assert "scripted teacher" in table and "Fewer seeds" not in table


def test_gcbc_is_a_row_but_not_a_curve_over_env_steps(tmp_path, monkeypatch):
    """gcbc's clock is its updates, not env steps: its evaluation is a row of the table, and curves.png
    draws the online methods' curves only (read_curves is asked for them alone)."""
    import visgoal.report as report_module

    root = tmp_path / "results"
    for method in ("td3", "gcbc"):
        rows = [{"env": "franka_kitchen", "method": method, "seed": 0, "episode": i, "final_distance": 0.25,
                 "success": True, "min_distance": 0.0, "latent_distance": "", "return": -1.0, "steps": 49}
                for i in range(3)]
        _write_csv(root / "franka_kitchen" / f"{method}_eval.csv", COLUMNS, rows)
        _write_csv(root / "franka_kitchen" / method / "seed0" / "curve.csv", ["env_steps", "eval_success_rate"],
                   [{"env_steps": 5000, "eval_success_rate": 1.0}])
    asked = []
    read = report_module.read_curves
    monkeypatch.setattr(report_module, "read_curves", lambda *a: asked.append(list(a[2])) or read(*a))
    params = load_params(profile="default", overrides=["seeds=[0]", "methods=[td3]", "envs=[franka_kitchen]"])
    report(root, tmp_path / "report", params)
    table = (tmp_path / "report" / "summary.md").read_text()
    assert "| gcbc | 1.00 (0.250 rad) |" in table and "behaviour cloning, offline" in table
    assert asked == [["td3", "teacher"]] and (tmp_path / "report" / "curves.png").is_file()
