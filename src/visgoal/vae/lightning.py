"""Lightning wrappers: the training module (annealed beta-VAE loss) and the HDF5 data module.

The data module reads the dataset lazily through `ImageDataset` (one HDF5 handle
per DataLoader worker, opened on first use) and splits it 75/25 into training and
validation frames with a seeded permutation, so the split depends only on the seed
and the dataset length. Batches are read whole: a batch sampler hands each worker
a list of indices, read chunk by chunk in one pass.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from visgoal.data import DatasetError, ImageDataset
from visgoal.vae.model import VAE, beta_vae_loss, kl_weight

log = logging.getLogger("visgoal")


def split_indices(length: int, seed: int, val_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, validation) frame indices, each sorted."""
    order = np.random.default_rng(seed).permutation(length)
    n_val = max(1, int(round(length * val_fraction))) if length > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


class FrameBatches(Dataset):
    """Item k = a batch of frames, given as a list of dataset indices -> float (n, 3, H, W) in [0, 1].

    With `frames` (every frame of the dataset, uint8, already in memory) a batch is one index
    into that array; without, it is read from the HDF5 file, decompressing its chunks."""

    def __init__(self, data: ImageDataset, frames: np.ndarray | None = None):
        self.data, self.frames = data, frames

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, indices) -> torch.Tensor:
        indices = np.atleast_1d(np.asarray(indices))
        images = self.frames[indices] if self.frames is not None else read_frames_at(self.data, indices)
        return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def read_frames_at(data: ImageDataset, indices: np.ndarray) -> np.ndarray:
    """Images at `indices`, in that order (HDF5 reads want increasing indices: sort, read, put back)."""
    order = np.argsort(indices, kind="stable")
    out = np.empty((len(indices), *data.image_shape), np.uint8)
    out[order] = read_frames(data, indices[order])
    return out


def read_frames(data: ImageDataset, sorted_indices: np.ndarray) -> np.ndarray:
    """Images at sorted indices, read as a few contiguous slices (decompresses each chunk once)."""
    if len(sorted_indices) == 0:
        return np.zeros((0, *data.image_shape), np.uint8)
    lo, hi = int(sorted_indices[0]), int(sorted_indices[-1]) + 1
    if hi - lo <= 4 * len(sorted_indices):  # dense: one slice
        return data.images(slice(lo, hi))[sorted_indices - lo]
    parts, start = [], 0
    breaks = np.flatnonzero(np.diff(sorted_indices) > 64) + 1
    for stop in [*breaks, len(sorted_indices)]:
        run = sorted_indices[start:stop]
        parts.append(data.images(slice(int(run[0]), int(run[-1]) + 1))[run - run[0]])
        start = stop
    return np.concatenate(parts)


class VAEDataModule(L.LightningDataModule):
    def __init__(self, dataset_path: str | Path, batch_size: int, seed: int, num_workers: int = 0,
                 val_fraction: float = 0.25, preload_mb: float = 0):
        """`preload_mb`: read every frame into memory once, when they take at most this many MB;
        batches then index that array instead of decompressing HDF5 chunks every epoch."""
        super().__init__()
        self.dataset_path = Path(dataset_path)
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.data = ImageDataset(self.dataset_path)  # fails now, with one line, if the file is bad
        if len(self.data) < 4:
            raise DatasetError(f"{self.dataset_path}: only {len(self.data)} frames; the VAE needs at least 4")
        self.train_idx, self.val_idx = split_indices(len(self.data), seed, val_fraction)
        self.shuffle = torch.Generator().manual_seed(seed)  # its state travels in the resume checkpoint
        self.frames = None
        if len(self.data) * int(np.prod(self.data.image_shape)) <= preload_mb * 2**20:
            self.frames = self.data.images(slice(None))
            self.num_workers = 0  # nothing left to read in the background

    @property
    def image_size(self) -> int:
        return int(self.data.image_shape[0])

    def _loader(self, indices: np.ndarray, shuffle: bool) -> DataLoader:
        subset = indices.tolist()
        base = RandomSampler(subset, generator=self.shuffle) if shuffle else SequentialSampler(subset)
        # training drops a short last batch (a batch of one breaks batch norm) unless it is the only one
        drop_last = shuffle and len(subset) >= self.batch_size
        sampler = BatchSampler(_Mapped(base, subset), batch_size=self.batch_size, drop_last=drop_last)
        return DataLoader(FrameBatches(self.data, self.frames), sampler=sampler, batch_size=None,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def state_dict(self) -> dict:
        return {"shuffle": self.shuffle.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.shuffle.set_state(state["shuffle"])

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_idx, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_idx, shuffle=False)


class _Mapped:
    """A sampler over positions, mapped to dataset indices."""

    def __init__(self, sampler, indices: list[int]):
        self.sampler, self.indices = sampler, indices

    def __iter__(self):
        return (self.indices[i] for i in self.sampler)

    def __len__(self) -> int:
        return len(self.indices)


class VAEModule(L.LightningModule):
    """Trains a VAE with the loss recon + w(step) * KL, w annealed from 0 to beta.

    Validation always uses the full weight beta (`val_loss`), so that the kept
    checkpoint and early stopping are not fooled by a small annealed weight. The
    best validation weights are kept in memory (`best_state`).
    """

    def __init__(self, vae: VAE, beta: float, recon_loss: str, lr: float, kl_cycles: int, kl_ratio: float,
                 total_steps: int | None = None, lr_schedule: str = "constant"):
        """`lr_schedule`: constant, or onecycle (Smith & Topin 2019: warm up to `lr`, then anneal by cosine
        over the whole run, stepped every batch)."""
        super().__init__()
        if lr_schedule not in ("constant", "onecycle"):
            raise ValueError(f"vae.lr_schedule: unknown '{lr_schedule}' (choose constant or onecycle)")
        self.vae, self.lr_schedule = vae, lr_schedule
        self.beta, self.recon_kind, self.lr = float(beta), recon_loss, float(lr)
        self.kl_cycles, self.kl_ratio, self.total_steps = int(kl_cycles), float(kl_ratio), total_steps
        self.best_val = float("inf")
        self.best_state: dict | None = None
        self.best_epoch = -1
        self.history: list[dict] = []
        self._sums: dict[str, list[float]] = {}
        self._weight = 0.0
        self._epoch_start, self._epoch_frames = 0.0, 0
        self.frames_per_second: list[float] = []
        self.log_epochs = False  # a line per epoch in the log (set when there is no progress bar)
        self.resume_extra: dict = {}  # saved beside our state in the resume checkpoint (fingerprint, run id)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.vae.parameters(), lr=self.lr)
        if self.lr_schedule == "constant":
            return opt
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self._steps())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        self._epoch_start, self._epoch_frames = time.perf_counter(), 0

    def _steps(self) -> int:
        return self.total_steps if self.total_steps is not None else int(self.trainer.estimated_stepping_batches)

    def _add(self, prefix: str, n: int, **values: torch.Tensor | float) -> None:
        for name, value in values.items():
            self._sums.setdefault(f"{prefix}_{name}", []).append((float(value) * n, n))

    def _mean(self, key: str) -> float:
        pairs = self._sums.get(key, [])
        return sum(v for v, _ in pairs) / max(1, sum(n for _, n in pairs))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        weight = kl_weight(self.global_step, self._steps(), self.beta, self.kl_cycles, self.kl_ratio)
        loss, recon, kl = beta_vae_loss(self.vae, batch, weight, self.recon_kind)
        self._add("train", len(batch), loss=loss.detach(), recon=recon.detach(), kl=kl.detach())
        self._weight = weight
        self._epoch_frames += len(batch)
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        loss, recon, kl = beta_vae_loss(self.vae, batch, self.beta, self.recon_kind)
        self._add("val", len(batch), loss=loss, recon=recon, kl=kl)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch), prog_bar=True, logger=False)

    def on_train_epoch_end(self) -> None:
        epoch = {k: self._mean(k) for k in ("train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl")
                 if k in self._sums}
        epoch["kl_weight"] = self._weight
        self.history.append({"epoch": self.current_epoch, **epoch})
        # Training frames per second, validation included: the speed a researcher waits on. Logged to
        # MLflow and kept apart from `history`, which goes into vae_history.csv byte for byte.
        self.frames_per_second.append(self._epoch_frames / max(time.perf_counter() - self._epoch_start, 1e-9))
        if self.logger is not None:
            self.logger.log_metrics({**epoch, "frames_per_second": self.frames_per_second[-1]},
                                    step=self.current_epoch + 1)  # the epoch as every output counts it
        if self.log_epochs:  # no progress bar (a pipeline's log file): one line per epoch, for `tail -f`
            log.info("epoch %d/%d: train loss %.2f, val loss %.2f (recon %.2f, kl %.2f, kl weight %.2f), %.0f frames/s",
                     self.current_epoch + 1, self.trainer.max_epochs, epoch.get("train_loss", float("nan")),
                     epoch.get("val_loss", float("nan")), epoch.get("val_recon", float("nan")),
                     epoch.get("val_kl", float("nan")), self._weight, self.frames_per_second[-1])
        self._sums = {}

    # --- resume: what Lightning's checkpoint does not hold of ours -------------------------------
    RESUMED = ("history", "best_val", "best_epoch", "best_state", "frames_per_second", "_weight")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["visgoal"] = {**{name: getattr(self, name) for name in self.RESUMED},
                                 "torch_rng": torch.get_rng_state(), **self.resume_extra}
        device = self.trainer.strategy.root_device  # the model's, once set up (not yet when a resume loads)
        if device.type == "cuda":  # the reparameterisation's noise is drawn there
            checkpoint["visgoal"]["cuda_rng"] = torch.cuda.get_rng_state(device)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["visgoal"]
        for name in self.RESUMED:
            setattr(self, name, state[name])
        torch.set_rng_state(state["torch_rng"])
        device = self.trainer.strategy.root_device
        if "cuda_rng" in state and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        val = self._mean("val_loss")
        if val < self.best_val:
            self.best_val, self.best_epoch = val, self.current_epoch
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.vae.state_dict().items()})
