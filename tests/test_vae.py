"""The beta-VAE: training through the real CLI and MLflow, the loss, annealing, checkpoints, the prior."""

import csv
import json

import numpy as np
import pytest
import torch

from conftest import run_cli
from visgoal.config import load_params
from visgoal.tracking import experiment_name
from visgoal.data import DatasetError, ImageDataset
from visgoal.vae import VAE, VAEError, kl_weight, load_vae
from visgoal.vae.lightning import VAEDataModule, split_indices
from visgoal.vae.model import kl_divergence, reconstruction_loss
from visgoal.vae import save_vae
from visgoal.vae.train import SCORES, pair_metrics

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(smoke_dataset):
    return smoke_dataset


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vae_run")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    out = tmp / "vae.pt"
    result = run_cli("train-vae", "--env", "point_maze", "--profile", "smoke", "--dataset", str(dataset),
                     "--out", str(out), "--quiet", env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr
    return out, uri


def test_cli_trains_and_writes_outputs(trained):
    out, _ = trained
    metrics = json.loads(out.with_name("vae_metrics.json").read_text())
    assert sorted(metrics) == sorted(SCORES)  # DVC's metric columns; the epochs are in vae_history.csv
    with open(out.with_name("vae_history.csv")) as f:
        history = list(csv.DictReader(f))
    assert [int(h["epoch"]) for h in history] == [1] and float(history[0]["val_loss"]) == pytest.approx(metrics["val_loss"])
    for key in ("val_recon", "val_kl", "val_loss"):
        assert np.isfinite(metrics[key]), key
    assert np.isfinite(float(history[0]["train_recon"])) and np.isfinite(float(history[0]["train_kl"]))
    assert -1.0 <= metrics["distance_spearman"] <= 1.0
    assert metrics["success_auc"] is None or 0.0 <= metrics["success_auc"] <= 1.0
    assert metrics["epochs_run"] == 1
    assert out.with_name("vae_recon.png").stat().st_size > 0
    assert not list(out.parent.glob(".*tmp-*")), "no temporary files left behind"


def test_pair_metrics_rank_latent_against_true_distances():
    rng = np.random.default_rng(0)
    a_obs, a_goal = rng.uniform(-1, 1, (40, 2)), rng.uniform(-1, 1, (30, 2))
    # A latent that is the true position (embedded in 3 dims): a perfect ranking.
    exact = pair_metrics(np.c_[a_obs, np.zeros(40)], np.c_[a_goal, np.zeros(30)], a_obs, a_goal, threshold=0.5)
    assert exact["distance_spearman"] == pytest.approx(1.0) and exact["success_auc"] == pytest.approx(1.0)
    assert exact["distance_pairs"] == 1200 and 0 < exact["success_pairs"] < 1200
    # A latent that ignores the position ranks nothing.
    noise = pair_metrics(rng.normal(size=(40, 3)), rng.normal(size=(30, 3)), a_obs, a_goal, threshold=0.5)
    assert abs(noise["distance_spearman"]) < 0.1 and abs(noise["success_auc"] - 0.5) < 0.1
    scaled = pair_metrics(-10 * a_obs, -10 * a_goal, a_obs, a_goal, threshold=0.5)
    assert scaled["distance_spearman"] == pytest.approx(1.0)  # ranks only: scale and reflection do not matter
    far = pair_metrics(a_obs, a_goal, a_obs, a_goal, threshold=10.0)
    assert far["success_auc"] is None and far["success_pairs"] == 1200  # every pair a success: undefined
    empty = pair_metrics(np.zeros((0, 2)), a_goal, np.zeros((0, 2)), a_goal, threshold=0.5)  # no observation frames
    assert empty == {"distance_pairs": 0, "success_pairs": 0, "distance_spearman": None, "success_auc": None}


def test_mlflow_run_has_params_metrics_tags_and_artifacts(trained):
    import mlflow

    out, uri = trained
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name("point_maze", "smoke"))
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.run_name = 'vae'")
    assert len(runs) == 1
    run = runs[0]
    params = load_params(profile="smoke")
    for key, value in params.flat().items():
        if key.startswith("vae."):
            assert run.data.params[key] == str(value), key
    assert run.data.params["profile"] == "smoke"
    for key in ("train_recon", "train_kl", "val_loss", "val_recon", "val_kl", "distance_spearman"):
        assert key in run.data.metrics, key
    assert run.data.tags["env"] == "point_maze" and run.data.tags["method"] == "vae"
    assert run.data.tags["profile"] == "smoke" and len(run.data.tags["input_md5.dataset"]) == 32
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"vae_recon.png", "vae_metrics.json"} <= artifacts


def test_checkpoint_is_weights_only_and_reloads_identically(trained, dataset):
    out, _ = trained
    raw = torch.load(out, weights_only=True)
    assert raw["format"] == "visgoal-vae/1" and raw["config"]["latent_dim"] == 4
    images = ImageDataset(dataset).images(slice(0, 10))
    first, second = load_vae(out), load_vae(out)
    z1 = first.encode(images)
    assert z1.shape == (10, 4) and z1.dtype == np.float32
    assert np.array_equal(z1, second.encode(images))
    assert np.array_equal(z1, first.encode(images)), "encoding is deterministic (posterior mean, eval mode)"
    assert torch.equal(first.prior_std, raw["prior"]["std"]) and (raw["prior"]["std"] > 0).all()
    decoded = first.decode(z1)
    assert decoded.shape == (10, 64, 64, 3) and decoded.dtype == np.uint8
    as_float = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(first.encode(as_float), torch.from_numpy(z1), atol=1e-5)


def test_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    vae = VAE(image_size=32, latent_dim=8, encoder_channels=[16, 16, 16], decoder_channels=[16, 16, 16, 16])
    x = torch.zeros(8, 3, 32, 32)  # a bright square on a dark background, in 8 places
    for i in range(8):
        x[i, i % 3, 4 * i : 4 * i + 8, 4 * i : 4 * i + 8] = 1.0
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        logits, mean, logvar = vae(x)
        loss = reconstruction_loss(logits, x, "bce") + 0.1 * kl_divergence(mean, logvar)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_kl_annealing_schedule():
    assert kl_weight(0, 100, beta=2.0, cycles=1, ratio=0.5) == 0.0
    assert kl_weight(25, 100, beta=2.0, cycles=1, ratio=0.5) == pytest.approx(1.0)
    assert kl_weight(50, 100, beta=2.0, cycles=1, ratio=0.5) == pytest.approx(2.0)
    assert kl_weight(99, 100, beta=2.0, cycles=1, ratio=0.5) == pytest.approx(2.0)
    assert kl_weight(100, 100, beta=2.0) == pytest.approx(2.0)
    # two cycles of 50 steps: rise over 25 steps, hold, restart at 0
    assert kl_weight(10, 100, beta=1.0, cycles=2, ratio=0.5) == pytest.approx(0.4)
    assert kl_weight(30, 100, beta=1.0, cycles=2, ratio=0.5) == pytest.approx(1.0)
    assert kl_weight(50, 100, beta=1.0, cycles=2, ratio=0.5) == 0.0
    assert kl_weight(60, 100, beta=1.0, cycles=2, ratio=0.5) == pytest.approx(0.4)
    assert kl_weight(99, 100, beta=1.0, cycles=2, ratio=0.5) == pytest.approx(1.0)
    weights = [kl_weight(s, 100, 1.0) for s in range(100)]
    assert all(b >= a for a, b in zip(weights, weights[1:])), "one cycle: never decreases"


def test_split_is_deterministic_and_disjoint():
    train, val = split_indices(64, seed=0)
    assert len(train) == 48 and len(val) == 16 and not set(train) & set(val)
    assert np.array_equal(split_indices(64, seed=0)[1], val)
    assert not np.array_equal(split_indices(64, seed=1)[1], val)


def test_missing_or_corrupt_dataset_gives_one_line_error(dataset, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        VAEDataModule(tmp_path / "missing.h5", batch_size=4, seed=0)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(dataset.read_bytes()[:5000])
    for path, message in ((cut, "truncated or corrupt"),):
        result = run_cli("train-vae", "--env", "point_maze", "--profile", "smoke", "--dataset", str(path),
                         "--out", str(tmp_path / "vae.pt"), "--quiet",
                         env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
        assert result.returncode == 2 and "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("visgoal train-vae: error:") and message in last
    assert not (tmp_path / "vae.pt").exists()
    with pytest.raises(VAEError, match="not found"):
        load_vae(tmp_path / "vae.pt")
    with pytest.raises(VAEError, match="not a visgoal VAE checkpoint"):
        load_vae(cut)


def test_sample_prior_matches_fitted_prior(tmp_path):
    vae = VAE(image_size=16, latent_dim=3, encoder_channels=[4], decoder_channels=[4])
    vae.prior_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
    vae.prior_std.copy_(torch.tensor([0.5, 2.0, 1.0]))
    save_vae(vae, tmp_path / "vae.pt", {})
    loaded = load_vae(tmp_path / "vae.pt")
    z = loaded.sample_prior(100_000, generator=0)
    assert z.shape == (100_000, 3)
    assert torch.allclose(z.mean(0), torch.tensor([1.0, -2.0, 0.5]), atol=0.03)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 2.0, 1.0]), rtol=0.02)
    assert torch.equal(loaded.sample_prior(5, generator=7), loaded.sample_prior(5, generator=7))


def test_model_handles_64_and_128_pixel_images():
    for size in (64, 128):
        vae = VAE(image_size=size, latent_dim=8)
        images = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
        assert vae.encode(images).shape == (2, 8)
        assert vae.decode(vae.encode(images)).shape == (2, size, size, 3)
    with pytest.raises(ValueError, match="multiple of"):
        VAE(image_size=40)


def test_training_is_deterministic_and_keeps_best_full_beta_epoch(dataset, tmp_path, monkeypatch):
    from visgoal.vae.train import train_vae

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = load_params(profile="smoke", overrides=["vae.max_epochs=3", "vae.kl_cycles=2"])
    runs = []
    for name in ("a", "b"):
        metrics = train_vae("point_maze", dataset, tmp_path / name / "vae.pt", params, progress=False)
        runs.append((metrics, torch.load(tmp_path / name / "vae.pt", weights_only=True)))
    (m1, c1), (m2, c2) = runs
    assert c1["state_dict"].keys() == c2["state_dict"].keys()
    assert all(torch.equal(c1["state_dict"][k], c2["state_dict"][k]) for k in c1["state_dict"])
    assert m1["history"] == m2["history"]
    val = [h["val_loss"] for h in m1["history"]]
    assert m1["val_loss"] == min(val) and m1["best_epoch"] == m1["history"][int(np.argmin(val))]["epoch"]
    for h in m1["history"]:  # the kept loss uses the full KL weight beta = 1, not the annealed one
        assert h["val_loss"] == pytest.approx(h["val_recon"] + h["val_kl"], rel=1e-5)


def test_best_epoch_is_counted_from_1_in_every_output(dataset, tmp_path, monkeypatch, caplog):
    """vae_metrics.json, vae_history.csv, the log and vae_recon.png's title name the same kept epoch:
    the history's epoch with the lowest monitored loss (val_loss), counted from 1."""
    import logging

    from visgoal.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "vae.pt"
    with caplog.at_level(logging.INFO, logger="visgoal"):
        assert main(["train-vae", "--env", "point_maze", "--profile", "smoke", "--quiet", "--dataset", str(dataset),
                     "--out", str(out), "--set", "vae.max_epochs=3"]) == 0
    metrics = json.loads(out.with_name("vae_metrics.json").read_text())
    with open(out.with_name("vae_history.csv")) as f:
        history = list(csv.DictReader(f))
    assert [int(h["epoch"]) for h in history] == [1, 2, 3]
    kept = min(history, key=lambda h: float(h["val_loss"]))
    assert metrics["best_epoch"] == int(kept["epoch"]), (metrics["best_epoch"], history)
    assert metrics["val_loss"] == pytest.approx(float(kept["val_loss"]))
    assert f"VAE: best epoch {metrics['best_epoch']}," in caplog.text


def test_data_module_batches_are_the_split_frames(dataset):
    module = VAEDataModule(dataset, batch_size=10, seed=0)
    assert [len(b) for b in module.train_dataloader()] == [10, 10, 10, 10], "a short last training batch is dropped"
    val = torch.cat(list(module.val_dataloader()))
    expected = ImageDataset(dataset).images(module.val_idx).transpose(0, 3, 1, 2) / 255.0
    assert torch.allclose(val, torch.from_numpy(expected).float())
    seen = torch.cat(list(module.train_dataloader()))
    assert seen.shape == (40, 3, 64, 64)


class Killed(BaseException):
    """A stand-in for SIGKILL that Lightning does not swallow (it keeps KeyboardInterrupt for itself)."""


def test_killed_training_resumes_to_the_same_vae(dataset, tmp_path, monkeypatch, caplog):
    """Killed after its second epoch's checkpoint, train-vae resumes at the third and writes the very
    vae.pt and metrics an uninterrupted run writes; a resume checkpoint of other parameters is not used."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from visgoal.cli import main
    from visgoal.vae.train import resume_file

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    def train(out, *extra):
        return main(["train-vae", "--env", "point_maze", "--profile", "smoke", "--quiet", "--dataset", str(dataset),
                     "--out", str(out), "--set", "vae.max_epochs=4", *extra])

    assert train(tmp_path / "straight" / "vae.pt") == 0
    save = ModelCheckpoint.on_train_epoch_end

    def save_then_die(self, trainer, module):
        save(self, trainer, module)
        if trainer.current_epoch == 1:
            raise Killed

    monkeypatch.setattr(ModelCheckpoint, "on_train_epoch_end", save_then_die)
    with pytest.raises(Killed):
        train(tmp_path / "resumed" / "vae.pt")
    monkeypatch.setattr(ModelCheckpoint, "on_train_epoch_end", save)
    resume = resume_file(tmp_path / "resumed" / "vae.pt")
    assert resume.is_file() and not (tmp_path / "resumed" / "vae.pt").exists()
    assert torch.load(resume, weights_only=True)["visgoal"]["history"][-1]["epoch"] == 1  # no code in it

    assert train(tmp_path / "resumed" / "vae.pt") == 0
    assert "resuming the VAE's training" in caplog.text and "after epoch 2" in caplog.text
    assert "epoch 3/4: train loss" in caplog.text  # --quiet (a pipeline's log): a line per epoch instead of a bar
    assert not resume.parent.exists()  # done: nothing left to resume
    straight, resumed = (torch.load(tmp_path / d / "vae.pt", weights_only=True) for d in ("straight", "resumed"))
    assert all(torch.equal(straight["state_dict"][k], resumed["state_dict"][k]) for k in straight["state_dict"])
    metrics = [json.loads((tmp_path / d / "vae_metrics.json").read_text()) for d in ("straight", "resumed")]
    assert metrics[0] == metrics[1] and metrics[0]["epochs_run"] == 4
    histories = [(tmp_path / d / "vae_history.csv").read_text() for d in ("straight", "resumed")]
    assert histories[0] == histories[1] and len(histories[0].splitlines()) == 5

    monkeypatch.setattr(ModelCheckpoint, "on_train_epoch_end", save_then_die)
    with pytest.raises(Killed):
        train(tmp_path / "other" / "vae.pt")
    monkeypatch.setattr(ModelCheckpoint, "on_train_epoch_end", save)
    caplog.clear()
    assert train(tmp_path / "other" / "vae.pt", "--set", "vae.lr=0.002") == 0
    assert "does not match this run (changed: parameters)" in caplog.text and "resuming" not in caplog.text
