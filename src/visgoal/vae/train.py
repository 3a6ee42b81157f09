"""`train_vae`: fit the beta-VAE on an image dataset, keep the best validation weights, check latent distances.

Writes, next to `out_path` (e.g. results/<env>/vae.pt), all atomically:

- `vae.pt`: weights-only checkpoint (architecture config, state dict, fitted prior);
  `torch.load(path, weights_only=True)` reads it, `visgoal.vae.load_vae` rebuilds the model.
- `vae_history.csv`: losses and KL weight per epoch.
- `vae_metrics.json` (`SCORES`): validation loss, reconstruction and KL at the kept epoch, and
  `distance_spearman`, the rank correlation between latent and true goal distances, and
  `success_auc`, how well latent distance tells pairs within the success threshold from the rest.
  `train_vae` returns these and more (training losses, frame and pair counts, the history).
- `vae_recon.png`: validation images (top) above their reconstructions (bottom).

A killed training resumes: Lightning checkpoints every epoch into `.vae.pt.resume/last.ckpt`
beside the output (not an output; removed once vae.pt is written), with what Lightning does
not hold of ours (history, best weights, RNG states). It is resumed only if its fingerprint
(the `vae` parameters, the dataset's content, the package version) matches this run.

Everything is also logged to MLflow (experiment `visgoal/<env>`, run `vae`).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch

from visgoal import paths
from visgoal.config import Params
from visgoal.data import ImageDataset
from visgoal.device import resolve
from visgoal.files import atomic_output
from visgoal.vae.lightning import VAEDataModule, VAEModule, read_frames, read_frames_at
from visgoal.vae import VAE, save_vae

log = logging.getLogger("visgoal")

# What vae_metrics.json keeps: the scores a researcher compares across VAEs (DVC's metric columns).
SCORES = ("best_epoch", "epochs_run", "val_loss", "val_recon", "val_kl", "distance_spearman", "success_auc")


def encode_frames(vae: VAE, data: ImageDataset, indices: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Posterior means of the frames at `indices` (any order), read batch by batch."""
    indices = np.asarray(indices)
    out = np.zeros((len(indices), vae.latent_dim), np.float32)
    for start in range(0, len(indices), batch_size):
        part = indices[start : start + batch_size]
        out[start : start + len(part)] = vae.encode(read_frames_at(data, part), batch_size=batch_size)
    return out


def fit_prior(vae: VAE, data: ImageDataset, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the training-set latent means (RIG section 4.3); stored in the model's buffers."""
    return vae.set_prior(torch.from_numpy(encode_frames(vae, data, indices)))


def pair_metrics(z_obs: np.ndarray, z_goal: np.ndarray, a_obs: np.ndarray, a_goal: np.ndarray,
                 threshold: float) -> dict:
    """How well latent distance ranks true goal distance, over every (observation, goal) pair.

    `distance_spearman`: the rank correlation of ||z_obs - z_goal|| with ||a_obs - a_goal||.
    `success_auc`: the probability that a pair within the success `threshold` has a smaller
    latent distance than a pair outside it (Mann-Whitney AUC): what a reward needs near the
    goal, where a global correlation can hide it. Either is None when undefined.
    """
    from scipy.stats import mannwhitneyu, spearmanr

    true = np.linalg.norm(a_obs[:, None, :] - a_goal[None, :, :], axis=-1).ravel()
    latent = np.linalg.norm(z_obs[:, None, :] - z_goal[None, :, :], axis=-1).ravel()
    near = true < threshold
    metrics = {"distance_pairs": len(true), "success_pairs": int(near.sum()),
               "distance_spearman": None, "success_auc": None}
    if len(true) >= 3 and np.ptp(true) > 0 and np.ptp(latent) > 0:
        metrics["distance_spearman"] = _finite(spearmanr(latent, true).statistic)
    if 0 < near.sum() < len(true):
        u = mannwhitneyu(latent[~near], latent[near]).statistic  # pairs (far, near) with the far one farther
        metrics["success_auc"] = _finite(u / (near.sum() * (~near).sum()))
    return metrics


def distance_metrics(vae: VAE, data: ImageDataset, indices: np.ndarray, threshold: float, max_frames: int = 512,
                     seed: int = 0) -> dict:
    """`pair_metrics` over held-out frames: every observation frame paired with every goal frame
    (at most `max_frames` of each, picked with a seeded generator)."""
    indices = np.sort(np.asarray(indices))
    is_goal = data.read("is_goal", slice(None))[indices]
    rng = np.random.default_rng(seed)
    picked = []
    for flag in (False, True):
        group = indices[is_goal == flag]
        if len(group) > max_frames:
            group = np.sort(rng.choice(group, max_frames, replace=False))
        picked.append(group)
    obs, goals = picked
    achieved = data.read("achieved_goal", slice(None))
    return pair_metrics(encode_frames(vae, data, obs), encode_frames(vae, data, goals), achieved[obs],
                        achieved[goals], threshold)


def recon_rows(vae: VAE, data: ImageDataset, indices: np.ndarray, columns: int = 8) -> list[list[np.ndarray]]:
    """Validation images (top row) above their reconstructions (bottom row)."""
    indices = np.sort(np.asarray(indices))
    pick = indices[np.unique(np.linspace(0, len(indices) - 1, min(columns, len(indices))).astype(int))]
    images = read_frames(data, pick)
    recon = vae.decode(vae.encode(images))
    return [list(images), list(recon)]


def write_history(history: list[dict], path: Path) -> None:
    """One row per epoch."""
    import csv

    columns = ["epoch", *dict.fromkeys(k for row in history for k in row if k != "epoch")]
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)


def _score(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def train_vae(env: str, dataset_path: str | Path, out_path: str | Path, params: Params, progress: bool = True) -> dict:
    """Train the VAE of `params['vae']` on `dataset_path`; write vae.pt, vae_metrics.json, vae_history.csv,
    vae_recon.png."""
    import lightning as L
    import mlflow
    from lightning.pytorch.loggers import MLFlowLogger

    from visgoal import tracking

    cfg, device = params["vae"], resolve(params["device"])
    out_path = Path(out_path)
    data_module = VAEDataModule(dataset_path, batch_size=cfg["batch_size"], seed=cfg["seed"],
                                num_workers=cfg["num_workers"], preload_mb=cfg["preload_mb"])  # fails here, before MLflow
    L.seed_everything(cfg["seed"], workers=True, verbose=False)
    vae = VAE(image_size=data_module.image_size, latent_dim=cfg["latent_dim"],
              encoder_channels=cfg["encoder_channels"], decoder_channels=cfg["decoder_channels"],
              negative_slope=cfg["negative_slope"])
    if cfg["channels_last"]:  # the images arrive (n, H, W, 3): convolutions keep that layout, no copies
        vae = vae.to(memory_format=torch.channels_last)
    module = VAEModule(vae, beta=cfg["beta"], recon_loss=cfg["recon_loss"], lr=cfg["lr"],
                       kl_cycles=cfg["kl_cycles"], kl_ratio=cfg["kl_ratio"], lr_schedule=cfg["lr_schedule"])
    hyper = {k: v for k, v in params.flat().items() if k.startswith("vae.")}
    hyper.update({"profile": params.profile, "image_size": data_module.image_size,
                  "train_frames": len(data_module.train_idx), "val_frames": len(data_module.val_idx)})
    resume = resume_file(out_path)
    now = tracking.fingerprint(hyper, {"dataset": dataset_path}, run=f"{env}/vae")
    saved = resume_state(resume, now)
    with tracking.run(env, "vae", params.profile, run_id=saved and saved["run_id"], params=hyper,
                      inputs={"dataset": dataset_path}) as run_id:
        module.resume_extra = {"fingerprint": now, "run_id": run_id}
        mlflow.set_tag("device", device)  # where it trained (vae.pt records it too); not in the fingerprint
        logger = MLFlowLogger(experiment_name=tracking.experiment_name(env, params.profile), run_id=run_id,
                              tracking_uri=tracking.tracking_uri())
        return _fit_and_write(env, cfg, params.profile, data_module, vae, module, logger, out_path, progress,
                              resume if saved else None, device)


def lightning_device(device: str) -> dict:
    """The Trainer's accelerator, devices and determinism for a resolved `device`: the CPU as ever, or
    the one GPU, where an operation with no deterministic algorithm warns instead of failing
    (visgoal.device.prepare's choice)."""
    if device.startswith("cuda"):
        return {"accelerator": "gpu", "devices": [int(device.partition(":")[2])], "deterministic": "warn"}
    return {"accelerator": "cpu", "devices": 1, "deterministic": True}


def resume_file(out_path: Path) -> Path:
    """Lightning's per-epoch checkpoint of a VAE training that writes `out_path`."""
    return out_path.with_name(f".{out_path.name}.resume") / "last.ckpt"


def resume_state(path: Path, now: dict) -> dict | None:
    """Our part of a resume checkpoint that matches this run (`now`'s fingerprint), else None: an
    unreadable one (killed while written) or one of other inputs is removed, with a warning."""
    import shutil

    from visgoal.tracking import changed

    if not path.is_file():
        return None
    try:  # weights only: no file visgoal reads can run code
        state = torch.load(path, map_location="cpu", weights_only=True).get("visgoal")
        problem = f"changed: {', '.join(differ)}" if (differ := changed((state or {}).get("fingerprint"), now)) else ""
    except Exception as err:  # noqa: BLE001 (whatever torch raises on a truncated or foreign file)
        problem = f"unreadable: {str(err).splitlines()[0][:80]}"
    if problem:
        log.warning("%s does not match this run (%s): starting the VAE afresh", path, problem)
        shutil.rmtree(path.parent)
        return None
    log.info("resuming the VAE's training from %s, after epoch %d", path, len(state["history"]))
    return state


def _fit_and_write(env, cfg, profile, data_module, vae, module, logger, out_path, progress, resume,
                   device: str = "cpu") -> dict:
    import shutil

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from visgoal.figures import save_labelled_grid

    metrics_path, recon_path = out_path.with_name("vae_metrics.json"), out_path.with_name("vae_recon.png")
    torch.set_num_threads(cfg["threads"])
    module.log_epochs = not progress
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # GPU/TPU lines, tips: not ours to print
    with warnings.catch_warnings():  # Lightning's own warnings that no user can act on
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*deprecated")
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # a resume
        warnings.filterwarnings("ignore", message=r"The `srun` command is available")  # SLURM jobs run us as is
        trainer = L.Trainer(
            max_epochs=cfg["max_epochs"], **lightning_device(device), logger=logger, precision=cfg["precision"],
            callbacks=[EarlyStopping("val_loss", patience=cfg["patience"], mode="min"),
                       # at each epoch's very end, after our own epoch-end bookkeeping, for a resume
                       ModelCheckpoint(dirpath=resume_file(out_path).parent, filename=resume_file(out_path).stem,
                                       save_top_k=1, save_on_train_epoch_end=True, enable_version_counter=False)],
            enable_checkpointing=True, enable_progress_bar=progress, enable_model_summary=False,
            num_sanity_val_steps=0, log_every_n_steps=1,
        )
        trainer.fit(module, datamodule=data_module, ckpt_path=resume, weights_only=True)
    vae = vae.to(memory_format=torch.contiguous_format)  # what vae.pt and the agents expect
    if module.best_state is None:
        raise RuntimeError("VAE training produced no validation loss (no epoch finished)")
    vae.load_state_dict(module.best_state)
    vae.eval()

    data = data_module.data
    fit_prior(vae, data, data_module.train_idx)
    from visgoal.envs import load_spec

    threshold = load_spec(env).success_threshold
    distances = distance_metrics(vae, data, data_module.val_idx, threshold, seed=cfg["seed"])
    # Epochs counted from 1 in every output (the json, the history, the picture, the log), as the
    # log's "epoch 3/20" lines count them; Lightning's current_epoch, kept inside, counts from 0.
    history = [{**row, "epoch": row["epoch"] + 1} for row in module.history]
    best_epoch = module.best_epoch + 1
    best = next(h for h in history if h["epoch"] == best_epoch)
    metrics = {
        "env": env,
        "profile": profile,
        "best_epoch": best_epoch,
        "epochs_run": len(module.history),
        "train_loss": best.get("train_loss"), "train_recon": best.get("train_recon"), "train_kl": best.get("train_kl"),
        "val_loss": best.get("val_loss"), "val_recon": best.get("val_recon"), "val_kl": best.get("val_kl"),
        **distances,
        "latent_dim": vae.latent_dim,
        "train_frames": len(data_module.train_idx),
        "val_frames": len(data_module.val_idx),
    }
    with atomic_output(metrics_path) as tmp:  # what `dvc metrics show` and `dvc exp show` compare
        tmp.write_text(json.dumps({k: metrics[k] for k in SCORES}, indent=2, sort_keys=True) + "\n")
    write_history(history, out_path.with_name(paths.vae_history(env).name))
    metrics["history"] = history
    save_labelled_grid(recon_rows(vae, data, data_module.val_idx), recon_path,
                       f"{env} VAE (latent {vae.latent_dim}, best epoch {best_epoch}): held-out images and "
                       f"their reconstructions", ["held-out\nimage", "reconstruction"])
    # the checkpoint last: a workflow that sees vae.pt sees its metrics and picture too
    save_vae(vae, out_path, {"env": env, "profile": profile, "recon_loss": cfg["recon_loss"],
                             "beta": float(cfg["beta"]), "device": device})
    shutil.rmtree(resume_file(out_path).parent, ignore_errors=True)  # done: nothing left to resume

    final = {f"best_{k}": v for k, v in metrics.items()
             if k in ("train_recon", "train_kl", "val_loss", "val_recon", "val_kl") and v is not None}
    final.update({k: metrics[k] for k in ("distance_spearman", "success_auc") if metrics[k] is not None})
    logger.log_metrics(final)
    for artifact in (recon_path, metrics_path, out_path):
        logger.experiment.log_artifact(logger.run_id, str(artifact))
    data.close()
    log.info("VAE: best epoch %d, val loss %.2f, distance_spearman %s, success_auc %s, %.0f training frames/s "
             "(median epoch); wrote %s", best_epoch, metrics["val_loss"], _score(metrics["distance_spearman"]),
             _score(metrics["success_auc"]), float(np.median(module.frames_per_second)), out_path)
    return metrics
