"""The report: tables and plots over every environment and method.

Reads what the evaluate and train stages wrote under `results/`, skipping what is
missing, and writes to `results/report/`:

- `summary.csv`, `summary.md`: per (env, method), success rate and final distance,
  first averaged over each seed's evaluation episodes, then mean and std over seeds
  (`evaluation.over_seeds`, as in `<method>_eval.json`: the sample std, none for one seed).
  The envs with a scripted teacher have two rows more, last: gcbc's (`gcbc_eval.csv`, behaviour
  cloning from the teacher's demonstrations alone) and the teacher's (`teacher_eval.csv`, one seed,
  the only one it has).
- `curves.png`: evaluation success rate (true distance) against env steps, from each
  run's curve.csv (not gcbc's, whose clock is its updates: it never steps its env); mean
  over seeds with a 95% confidence band (Student t). Where a seed's curve ends early,
  later points average the seeds that reach them (no band from a single seed).
- `final.png`: final success rate and final distance per env, bars grouped by method.
- `vae_recon.png`, `frames.png`: the VAE reconstruction grids and the evaluation
  pictures (first frame, final frame, goal image) gathered into one figure each.

Two runs on the same results give byte-identical summary.csv and summary.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from visgoal import paths
from visgoal.files import atomic_output

log = logging.getLogger("visgoal")

SUMMARY_COLUMNS = ("env", "method", "n_seeds", "success_rate_mean", "success_rate_std", "final_distance_mean",
                   "final_distance_std", "episodes")  # episodes: evaluated in all, over every seed
CURVE_COLUMNS = ("env_steps", "eval_success_rate")


# --- reading ------------------------------------------------------------------------------
def read_evaluations(results_dir: Path, envs, methods, seeds) -> pd.DataFrame:
    """Every `<env>/<method>_eval.csv` there is, one row per (env, method, seed, episode); of `seeds`,
    but the teacher's one seed whatever they are."""
    frames = []
    for env in envs:
        for method in methods:
            path = paths.evaluation(env, method, "csv", results_dir)
            if path.is_file():
                frames.append(pd.read_csv(path, usecols=["seed", "episode", "final_distance", "success"])
                              .assign(env=env, method=method))
    if not frames:
        raise FileNotFoundError(
            f"{results_dir}: no <env>/<method>_eval.csv for envs {', '.join(envs)} and methods {', '.join(methods)};"
            f" run `python -m visgoal evaluate --env <env> --method <method>` first")
    evals = pd.concat(frames, ignore_index=True)
    evals["success"] = evals["success"].astype(str).str.lower().isin(["true", "1", "1.0"])
    return evals[evals["seed"].isin(seeds) | (evals["method"] == paths.TEACHER)]


def read_curves(results_dir: Path, envs, methods, seeds) -> pd.DataFrame:
    """Every `<env>/<method>/seed<k>/curve.csv` there is (its first two columns only)."""
    frames = [pd.read_csv(path, usecols=list(CURVE_COLUMNS)).assign(env=env, method=method, seed=seed)
              for env in envs for method in methods for seed in seeds
              if (path := paths.run_dir(env, method, seed, results_dir) / paths.CURVE).is_file()]
    if not frames:
        return pd.DataFrame(columns=[*CURVE_COLUMNS, "env", "method", "seed"])
    return pd.concat(frames, ignore_index=True)


# --- tables -------------------------------------------------------------------------------
def summarize(evals: pd.DataFrame, envs, methods) -> pd.DataFrame:
    """One row per (env, method): mean and std over seeds of each seed's episode means."""
    from visgoal.evaluation import over_seeds

    per_seed = evals.groupby(["env", "method", "seed"], sort=False).agg(
        success_rate=("success", "mean"), final_distance=("final_distance", "mean"), episodes=("episode", "size"))
    rows = []
    for (env, method), group in per_seed.groupby(level=["env", "method"], sort=False):
        row = {"env": env, "method": method, "n_seeds": len(group), "episodes": int(group["episodes"].sum())}
        for key in ("success_rate", "final_distance"):  # std NaN for one seed: written empty
            row[f"{key}_mean"], row[f"{key}_std"] = over_seeds(group[key])
        rows.append(row)
    order = {(env, method): i for i, (env, method) in enumerate((e, m) for e in envs for m in methods)}
    rows.sort(key=lambda r: order[r["env"], r["method"]])  # params.yaml's order, not the order files were found
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def unit(env: str) -> str:
    """The unit of an env's true goal distance (m; rad for a joint angle; both for the cart-pole)."""
    from visgoal.envs import load_spec

    return load_spec(env).distance_unit


def markdown_table(summary: pd.DataFrame, envs, methods, seeds, profile: str) -> str:
    """Methods x environments; a cell is `success mean ± std over seeds (final distance)`."""
    envs = [e for e in envs if (summary["env"] == e).any()]
    methods = [m for m in methods if (summary["method"] == m).any()]
    cells = {}
    for r in summary.itertuples():
        spread = "" if r.n_seeds < 2 else f" ± {r.success_rate_std:.2f}"
        cells[r.env, r.method] = f"{r.success_rate_mean:.2f}{spread} ({r.final_distance_mean:.3f} {unit(r.env)})"
    lines = [
        f"# visgoal results (profile {profile})",
        "",
        "Success rate on the fixed evaluation episodes (true distance below the env's threshold): mean ± std over",
        "seeds (sample std) of each seed's success rate; in brackets, the mean final distance to the goal.",
        "",
        "| method | " + " | ".join(envs) + " |",
        "|---|" + "---|" * len(envs),
        *("| " + " | ".join([m, *(cells.get((e, m), "–") for e in envs)]) + " |" for m in methods),
        "",
        f"Seeds: {', '.join(map(str, seeds))}; '–': not evaluated.",
    ]
    short = [f"{r.env}/{r.method} ({r.n_seeds})" for r in summary.itertuples()
             if r.n_seeds < len(seeds) and r.method != paths.TEACHER]
    if short:
        lines.append(f"Fewer seeds (no ± below two): {', '.join(short)}.")
    if paths.GCBC in methods:
        lines.append(f"{paths.GCBC}: behaviour cloning, offline, from the scripted teacher's demonstrations alone "
                     f"(`demos`), in the envs that have one.")
    if paths.TEACHER in methods:
        lines.append(f"{paths.TEACHER}: the env's scripted teacher (`evaluate --method teacher`), where it has one; "
                     f"it learns nothing and has one seed.")
    return "\n".join(lines) + "\n"


# --- figures ------------------------------------------------------------------------------
def _figure(width: float, height: float):
    # A bare Figure renders with Agg and leaves pyplot's global state (and backend) alone.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
    log.info("wrote %s", path)
    return path


def method_colors(methods) -> dict[str, tuple]:
    """The same colour for a method in every panel and figure."""
    from matplotlib import colormaps

    return {m: colormaps["tab10"](i % 10) for i, m in enumerate(methods)}


def plot_curves(curves: pd.DataFrame, envs, methods, path: Path, title: str) -> Path:
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter
    from scipy.special import stdtrit  # Student t quantiles; scipy.stats costs a second to import

    envs = [e for e in envs if (curves["env"] == e).any()]
    colors = method_colors(methods)
    cols = min(3, len(envs))
    rows = -(-len(envs) // cols)
    fig = _figure(4.2 * cols, 3.2 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    for ax, env in zip(axes, envs):
        for method in methods:
            runs = curves[(curves["env"] == env) & (curves["method"] == method)]
            if runs.empty:
                continue
            by_step = runs.groupby("env_steps")["eval_success_rate"].agg(["mean", "sem", "count"])
            steps = by_step.index.to_numpy()
            ax.plot(steps, by_step["mean"], color=colors[method], label=method, marker="o" if len(steps) < 4 else None)
            half = by_step["sem"] * stdtrit(np.maximum(by_step["count"] - 1, 1), 0.975)
            ok = by_step["count"] > 1  # no band from a single seed
            low, high = ((by_step["mean"] + sign * half).clip(0, 1).where(ok) for sign in (-1, 1))  # a rate
            ax.fill_between(steps, low, high, color=colors[method], alpha=0.2, linewidth=0)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20k, not 2.0 with a 1e4 offset
    for ax in axes[:: cols]:
        ax.set_ylabel("eval success rate")
    for ax in axes[len(envs):]:
        ax.set_visible(False)
    present = [m for m in methods if (curves["method"] == m).any()]
    handles = [Line2D([], [], color=colors[m], label=m) for m in present]
    legend = fig.legend(handles=handles, loc="outside upper center", ncols=len(present))  # (a suptitle would overlap)
    _fit_title(fig, legend, f"{title}\nmean over seeds, shaded: 95% confidence interval")
    return _save(fig, path)


def _fit_title(fig, legend, title: str) -> None:
    """Give `legend` the title `title`, its lines wrapped until the legend is no wider than the figure:
    a legend outside the axes is not shrunk by the layout, and one panel is narrower than a line."""
    import textwrap

    room = fig.bbox.width - 8  # pixels: the legend's frame within the figure's edges
    legend.get_title().set_multialignment("center")
    chars = max(len(line) for line in title.splitlines())
    while True:
        legend.set_title("\n".join(textwrap.fill(line, chars) for line in title.splitlines()))
        fig.draw_without_rendering()  # the layout, and the legend's size in it
        wide = legend.get_window_extent().width
        if wide <= room or chars <= 10:
            return
        chars = min(chars - 1, int(chars * room / wide))


def plot_final(summary: pd.DataFrame, envs, methods, path: Path) -> Path:
    colors = method_colors(methods)
    envs = [e for e in envs if (summary["env"] == e).any()]
    present = [m for m in methods if (summary["method"] == m).any()]
    fig = _figure(max(4.5, 1.2 + len(envs) * (0.4 + 0.45 * len(present))), 6.4)
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.8 / max(len(present), 2)  # one method: not one bar filling the panel
    x = np.arange(len(envs))
    table = summary.set_index(["env", "method"])
    for ax, metric, label, fmt in zip(axes, ("success_rate", "final_distance"),
                                      ("final success rate", "final distance to goal"), ("{:.2f}", "{:.3g}")):
        for i, method in enumerate(present):
            rows = table.reindex([(e, method) for e in envs])
            bars = ax.bar(x + (i - (len(present) - 1) / 2) * width, rows[f"{metric}_mean"].fillna(0), width,
                          color=colors[method], label=method)
            ax.errorbar([b.get_x() + b.get_width() / 2 for b in bars], rows[f"{metric}_mean"],
                        yerr=rows[f"{metric}_std"], fmt="none", ecolor="0.2", capsize=3, elinewidth=1)  # NaN: none
            # the value above each error bar: a zero success rate must not look like a missing run
            for bar, mean, std in zip(bars, rows[f"{metric}_mean"], rows[f"{metric}_std"].fillna(0)):
                if np.isfinite(mean):
                    ax.annotate(fmt.format(mean), (bar.get_x() + bar.get_width() / 2, mean + std), ha="center",
                                va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.12)
    axes[0].set_ylim(0, 1.12)
    axes[1].set_xticks(x, [f"{e}\n(distance in {unit(e)})" for e in envs], rotation=20 if len(envs) > 3 else 0,
                       ha="right" if len(envs) > 3 else "center")
    legend = fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=len(present))
    _fit_title(fig, legend, "mean over seeds, error bars: std over seeds")
    return _save(fig, path)


def plot_pictures(pictures: dict[tuple[str, str], Path], path: Path) -> Path:
    """Saved (labelled) PNGs in a grid of panels: one row per env, one column per method (or one column).
    Each is placed pixel for pixel, not resampled: scaled, its labels would blur, and lose their first
    letters at its edges ("uccess, 0.033 m"); each panel's title is drawn whole above it."""
    import matplotlib.image
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    envs = list(dict.fromkeys(env for env, _ in pictures))
    methods = list(dict.fromkeys(method for _, method in pictures))
    images = {key: np.round(matplotlib.image.imread(p)[..., :3] * 255).astype(np.uint8) for key, p in pictures.items()}
    titles = {(env, method): (env if method == "" else f"{env} / {method}")
              + ("" if (env, method) in images else ": not evaluated") for env in envs for method in methods}
    dpi, pad, font = 110, 12, FontProperties(size=10)
    measure = RendererAgg(1, 1, dpi).get_text_width_height_descent
    title_h = int(1.8 * max(measure(t, font, ismath=False)[1] for t in titles.values()))
    widths = [max(max((images[e, m].shape[1] for e in envs if (e, m) in images), default=0),
                  *(int(measure(titles[e, m], font, ismath=False)[0]) + pad for e in envs)) for m in methods]
    heights = [max(images[e, m].shape[0] for m in methods if (e, m) in images) for e in envs]
    width, height = sum(widths) + pad * (len(methods) + 1), sum(heights) + (title_h + pad) * len(envs) + pad
    fig = Figure(figsize=((width + 0.5) / dpi, (height + 0.5) / dpi), dpi=dpi)  # whole pixels, not one short
    top = pad
    for env, row_h in zip(envs, heights):
        left = pad
        for method, col_w in zip(methods, widths):
            missing = (env, method) not in images
            fig.text((left + col_w / 2) / width, 1 - (top + title_h / 2) / height, titles[env, method], ha="center",
                     va="center", fontproperties=font, color="0.5" if missing else "black")
            if not missing:
                image = images[env, method]
                fig.figimage(image, xo=left + (col_w - image.shape[1]) // 2, yo=height - top - title_h - image.shape[0],
                             origin="upper")
            left += col_w + pad
        top += title_h + row_h + pad
    return _save(fig, path)


# --- the stage ----------------------------------------------------------------------------
def report(results_dir: Path, out_dir: Path, params) -> Path:
    """Write summary.csv, summary.md and the figures of the module docstring to `out_dir`; return it."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    envs, methods, seeds = list(params["envs"]), [*params["methods"], paths.GCBC, paths.TEACHER], list(params["seeds"])
    evals = read_evaluations(results_dir, envs, methods, seeds)
    summary = summarize(evals, envs, methods)

    with atomic_output(out_dir / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")
    log.info("wrote %s", out_dir / "summary.csv")
    with atomic_output(out_dir / "summary.md") as tmp:
        tmp.write_text(markdown_table(summary, envs, methods, seeds, params.profile))
    log.info("wrote %s", out_dir / "summary.md")

    if summary.empty:
        log.warning("no evaluation rows for seeds %s: no figures", seeds)
        return out_dir
    plot_final(summary, envs, methods, out_dir / "final.png")
    online = [m for m in methods if m != paths.GCBC]  # an offline clock is not env steps
    curves = read_curves(results_dir, envs, online, seeds)
    if curves.empty:
        log.warning("no <env>/<method>/seed<k>/curve.csv under %s: no curves.png", results_dir)
    else:
        budget = int(curves["env_steps"].max())
        plot_curves(curves, envs, online, out_dir / "curves.png",
                    f"profile {params.profile}: evaluation success during training, up to {budget:,} env steps, "
                    f"seeds {', '.join(map(str, seeds))}")
    recon = {(env, ""): p for env in envs if (p := paths.vae_recon(env, results_dir)).is_file()}
    if recon:
        plot_pictures(recon, out_dir / "vae_recon.png")
    else:
        log.warning("no <env>/vae_recon.png under %s: no vae_recon.png", results_dir)
    frames = {(env, m): p for env in envs for m in methods if (p := paths.evaluation(env, m, "png", results_dir)).is_file()}
    if frames:
        plot_pictures(frames, out_dir / "frames.png")
    else:
        log.warning("no <env>/<method>_eval.png under %s: no frames.png", results_dir)
    return out_dir
