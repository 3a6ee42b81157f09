"""Where the tensors live: the `device` parameter, resolved once by each stage that uses torch or renders.

    auto     the first CUDA GPU torch sees, else the CPU
    cpu      the CPU
    cuda     the first CUDA GPU (cuda:0); the one SLURM gives a job, which sees only its own
    cuda:N   GPU N, as torch numbers them (after CUDA_VISIBLE_DEVICES)

A stage records the resolved name (`cpu`, `cuda:0`), not `auto`: in MLflow, in policy.pt's and
checkpoint.pt's params, in vae.pt. It is a parameter of its own, not part of `speed`: floating-point
sums run in another order on a GPU, so the same seed does not give the same files on both.

On a GPU `use_device` also sets CUDA's determinism flags (a run repeats on the same GPU and
software) and points MuJoCo's EGL renderer at the same GPU. On the CPU it changes nothing: the
same seeds give the same files, byte for byte, as before the parameter existed.
"""

from __future__ import annotations

import logging
import os
import re

from visgoal.config import ConfigError, Params

log = logging.getLogger("visgoal")

NAMES = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")
FIX = "expected auto, cpu, cuda or cuda:N (N: a GPU's index)"


def resolve(name: str) -> str:
    """`cpu` or `cuda:<index>` for a value of `device`; a name this machine cannot run raises
    ConfigError in one line, with the fix. A resolved name resolves to itself."""
    if not isinstance(name, str) or not NAMES.match(name):
        raise ConfigError(f"device {name!r}: {FIX}")
    if name == "cpu":
        return name  # no torch import: the dataset and the commands that only read files stay light
    import torch

    if not torch.cuda.is_available():
        if name == "auto":
            return "cpu"
        built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA (a CPU build)"
        raise ConfigError(f"device '{name}': torch sees no CUDA GPU here (torch {torch.__version__}, {built}); "
                          f"set device to auto or cpu (--set device=cpu), or run where a GPU and a CUDA build "
                          f"of torch are")
    index = int(name.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"device '{name}': torch sees {count} GPU{'s' if count > 1 else ''} "
                          f"(cuda:0 to cuda:{count - 1}); choose one of them, or cuda")
    return f"cuda:{index}"


def is_gpu(device: str) -> bool:
    return device.startswith("cuda")


def requests_gpu(name: str) -> bool:
    """Whether a job of `device` = `name` asks its scheduler for a GPU (a Snakemake rule's `gpu`
    resource). `cuda` and `cuda:N` do, whatever the machine that submits the job has (a cluster's
    login node has none); `auto` does where the submitting machine has one, for a local run."""
    if is_gpu(name):
        return True
    return name == "auto" and resolve(name) != "cpu"


def prepare(device: str) -> None:
    """CUDA's determinism flags for a run on a GPU (none on the CPU). cuBLAS reads its workspace
    setting when its first handle is made: set here, before the stage's first tensor on the GPU.
    The deterministic algorithms warn, not fail, where an operation has none, so that a run on a
    new GPU or PyTorch finishes and says which operation may differ between two runs."""
    if not is_gpu(device):
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.cuda.set_device(torch.device(device))  # what Lightning and any default-device call use
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def egl_device(device: str, environ=os.environ) -> str | None:
    """The EGL device MuJoCo should render on in a job on `device`: the GPU's index in the machine,
    which is its index in CUDA_VISIBLE_DEVICES where a scheduler set that (SLURM does: a job's one
    GPU is its cuda:0), else the CUDA index. This assumes EGL lists the GPUs in the machine's order,
    as the NVIDIA driver does. None where the user chose one (MUJOCO_EGL_DEVICE_ID), where the
    renderer is not EGL, on the CPU, or where CUDA_VISIBLE_DEVICES names GPUs by UUID (no index)."""
    if not is_gpu(device) or "MUJOCO_EGL_DEVICE_ID" in environ or environ.get("MUJOCO_GL", "").lower() != "egl":
        return None
    index = int(device.partition(":")[2] or 0)
    visible = [part.strip() for part in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
    if not visible:
        return str(index)
    if index < len(visible) and visible[index].isdigit():
        return visible[index]
    return None


def use_device(params: Params) -> Params:
    """Resolve `device` for a stage, prepare torch and the renderer for it, and return the params
    with the resolved name, which is what the stage records."""
    device = resolve(params["device"])
    prepare(device)
    if (egl := egl_device(device)) is not None:
        os.environ["MUJOCO_EGL_DEVICE_ID"] = egl  # before the process's first GL context
    log.info("device %s (device: %s)%s", device, params["device"],
             f", MuJoCo's EGL renderer on GPU {os.environ['MUJOCO_EGL_DEVICE_ID']}"
             if is_gpu(device) and "MUJOCO_EGL_DEVICE_ID" in os.environ else "")
    return Params(profile=params.profile, values={**params.values, "device": device})
