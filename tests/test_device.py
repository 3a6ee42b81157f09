"""The `device` parameter: what it resolves to, a bad value in one line, what it sets up, where the run
records it, and a walk over the source for tensors made without a device or read back without `.cpu()`.

This machine has no GPU: the CUDA path itself is exercised here only through monkeypatched torch
calls; what has not run on a GPU is listed in docs/pipeline.md."""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from visgoal import device as devices
from visgoal.cli import main
from visgoal.config import ConfigError, load_params

SOURCES = [ROOT / "src" / "visgoal" / "agents", ROOT / "src" / "visgoal" / "vae"]


# --- resolution and bad values -------------------------------------------------------------------
def test_auto_is_the_cpu_without_a_gpu_and_the_first_gpu_with_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve("auto") == "cpu" and devices.resolve("cpu") == "cpu"
    with pytest.raises(ConfigError, match=r"device 'cuda': torch sees no CUDA GPU here .*\(--set device=cpu\)"):
        devices.resolve("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [devices.resolve(name) for name in ("auto", "cuda", "cuda:1", "cuda:0")] == [
        "cuda:0", "cuda:0", "cuda:1", "cuda:0"]  # a resolved name resolves to itself
    with pytest.raises(ConfigError, match=r"device 'cuda:2': torch sees 2 GPUs \(cuda:0 to cuda:1\)"):
        devices.resolve("cuda:2")


def test_the_params_say_auto_and_a_stage_resolves_it_here(root):
    params = load_params(root / "params.yaml", "smoke")
    assert params["device"] == "auto"
    resolved = devices.use_device(params)
    assert resolved["device"] == devices.resolve("auto") and params["device"] == "auto"  # a copy, not an edit
    assert resolved.as_dict() == {**params.as_dict(), "device": resolved["device"]}


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "CPU", "cuda:-1", "0"])
def test_a_bad_device_is_one_line_naming_the_values(value, capsys):
    assert main(["params", "--profile", "smoke", "--set", f"device={value}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "key 'device': expected auto, cpu, cuda or cuda:N" in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: cuda runs")
def test_a_gpu_asked_for_where_there_is_none_is_one_line_before_any_work(tmp_path, capsys):
    run = tmp_path / "td3" / "seed0"
    assert main(["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet",
                 "--out", str(run), "--set", "device=cuda"]) == 2
    err = capsys.readouterr().err
    (error,) = [line for line in err.splitlines() if "error:" in line]  # below the log's parameters line
    assert "Traceback" not in err and error.startswith("visgoal train: error: device 'cuda': torch sees no CUDA GPU"), err
    assert "--set device=cpu" in error, err
    assert not run.exists()  # nothing begun: no checkpoint, no MLflow run


# --- what it sets up -------------------------------------------------------------------------------
def test_on_the_cpu_nothing_is_set(monkeypatch):
    """No determinism flag, no environment variable: a CPU run is what it was before `device`."""
    for name in ("CUBLAS_WORKSPACE_CONFIG", "MUJOCO_EGL_DEVICE_ID"):
        monkeypatch.delenv(name, raising=False)
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    before = dict(os.environ)
    devices.use_device(load_params(profile="smoke", overrides=["device=cpu"]))
    assert dict(os.environ) == before
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark) == flags


def test_on_a_gpu_cuda_is_made_deterministic(monkeypatch):
    """What `prepare` asks of torch for cuda:1 (the calls themselves, monkeypatched: there is no GPU here)."""
    calls = []
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "")  # so that the teardown removes what prepare sets
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", str(d))))
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda on, warn_only: calls.append((on, warn_only)))
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    devices.prepare("cuda:1")
    assert calls == [("set_device", "cuda:1"), (True, True)]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


@pytest.mark.parametrize("device, environ, expected", [
    ("cuda:0", {"MUJOCO_GL": "egl"}, "0"),
    ("cuda:1", {"MUJOCO_GL": "egl"}, "1"),
    ("cuda:0", {"MUJOCO_GL": "egl", "CUDA_VISIBLE_DEVICES": "3"}, "3"),         # a SLURM job's one GPU
    ("cuda:1", {"MUJOCO_GL": "egl", "CUDA_VISIBLE_DEVICES": "2,5"}, "5"),
    ("cuda:0", {"MUJOCO_GL": "egl", "CUDA_VISIBLE_DEVICES": "GPU-8f3c"}, None),  # a UUID: no index to give
    ("cuda:0", {"MUJOCO_GL": "egl", "MUJOCO_EGL_DEVICE_ID": "2"}, None),        # the user's choice stands
    ("cuda:0", {"MUJOCO_GL": "osmesa"}, None),
    ("cpu", {"MUJOCO_GL": "egl"}, None),
])
def test_the_egl_renderer_follows_the_jobs_gpu(device, environ, expected):
    assert devices.egl_device(device, environ) == expected


def test_a_gpu_is_requested_for_cuda_whatever_the_submitting_machine_has():
    assert devices.requests_gpu("cuda") and devices.requests_gpu("cuda:3") and not devices.requests_gpu("cpu")
    assert devices.requests_gpu("auto") == torch.cuda.is_available()


def test_the_renderer_is_named_and_a_software_one_on_a_gpu_is_warned_of(monkeypatch, caplog):
    from visgoal import gl
    from visgoal.envs.render import gl_context

    gl_context()
    name = gl.renderer()
    assert name and len(name) > 3, name  # e.g. "llvmpipe (LLVM 15.0.6, 256 bits), Mesa/X.org"
    with caplog.at_level(logging.INFO, logger="visgoal"):
        assert gl.log_renderer("cpu") == name
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        monkeypatch.setattr(gl, "renderer", lambda: "llvmpipe (LLVM 15.0.6, 256 bits), Mesa/X.org")
        gl.log_renderer("cuda:0")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "renders in software" in warning and "NVIDIA_DRIVER_CAPABILITIES" in warning


# --- where the run records it -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def td3_run(workdir):
    """A smoke td3 run on point_maze (the state: no VAE, no pictures), trained once through the CLI."""
    run = workdir / "td3" / "seed0"
    assert main(["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet",
                 "--out", str(run), "--set", "train.total_steps=150"]) == 0
    return run


def test_the_resolved_device_is_in_the_policy_the_checkpoint_and_mlflow(td3_run):
    import mlflow

    here = devices.resolve("auto")
    policy = torch.load(td3_run / "policy.pt", weights_only=True)
    checkpoint = torch.load(td3_run / "checkpoint.pt", weights_only=True)
    assert policy["meta"]["params"]["device"] == here and checkpoint["params"]["device"] == here
    assert "speed" not in policy["meta"]["params"]
    found = mlflow.MlflowClient().get_run(checkpoint["run_id"])
    assert found.data.params["device"] == here and found.data.tags["device"] == here
    assert "gl_renderer" not in found.data.tags  # the state: nothing rendered


def test_a_checkpoint_resumes_on_another_device_with_a_warning(td3_run, tmp_path, caplog):
    """`device` is not in a checkpoint's fingerprint: a run moved to another machine goes on, and says
    that its numbers are not a one-device run's."""
    import shutil

    run = tmp_path / "seed0"
    shutil.copytree(td3_run, run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["params"]["device"] = "cuda:0"  # as a GPU's checkpoint records it
    torch.save(state, run / "checkpoint.pt")
    with caplog.at_level(logging.WARNING, logger="visgoal"):
        assert main(["train", "--env", "point_maze", "--method", "td3", "--profile", "smoke", "--quiet",
                     "--out", str(run), "--set", "train.total_steps=300"]) == 0
    assert any("was made on cuda:0, and the run continues on" in r.getMessage() for r in caplog.records)
    assert torch.load(run / "policy.pt", weights_only=True)["meta"]["env_steps"] == 300  # resumed, not restarted
    assert not any("starting afresh" in r.getMessage() for r in caplog.records)


def test_a_policy_saved_on_a_gpu_acts_on_the_cpu(td3_run, tmp_path):
    """policy.pt's tensors tagged as CUDA storages (as torch.save writes a GPU's): torch.load without a
    map_location refuses them here, and `load_policy` reads them onto the CPU and acts the same."""
    from torch import serialization

    from visgoal.agents import load_policy

    saved = torch.load(td3_run / "policy.pt", weights_only=True)
    gpu_run = tmp_path / "seed0"
    gpu_run.mkdir()
    entry = (-1, lambda storage: "cuda:0" if storage.device.type == "cpu" else None, lambda storage, location: None)
    serialization._package_registry.insert(0, entry)  # tag every storage as a GPU's, for this save only
    try:
        torch.save(saved, gpu_run / "policy.pt")
    finally:
        serialization._package_registry.remove(entry)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(gpu_run / "policy.pt", weights_only=True)
    _, policy, meta = load_policy(gpu_run)
    _, reference, _ = load_policy(td3_run)
    obs, goal = np.array([0.5, -0.2, 0.1, 0.0], np.float32), np.array([1.0, 1.0], np.float32)
    np.testing.assert_array_equal(policy(obs, goal), reference(obs, goal))
    assert meta["params"]["device"] == saved["meta"]["params"]["device"]


def test_the_vae_records_where_it_trained(smoke_vae):
    assert torch.load(smoke_vae, weights_only=True)["device"] == devices.resolve("auto")


# --- the source: no tensor without a device, no numpy of a tensor that may be on a GPU ------------------
FACTORIES = {"zeros", "ones", "empty", "full", "rand", "randn", "randint", "randperm", "arange", "linspace", "eye",
             "tensor", "as_tensor"}
# A module's own state may be made without a device: `.to(device)` moves it with the weights.
MODULE_STATE = {"register_buffer", "register_parameter", "Parameter"}


def device_problems(source: str, where: str = "<string>") -> list[str]:
    """`torch.<factory>(...)` calls without a `device=` keyword (but the argument of register_buffer or
    nn.Parameter), and `.numpy()` read off anything but `.cpu()`: each as `where:line: what`. A tensor
    meant for the CPU says so, `device="cpu"`."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        func = node.func
        if (isinstance(func.value, ast.Name) and func.value.id == "torch" and func.attr in FACTORIES
                and not any(k.arg == "device" for k in node.keywords)):
            parent = parents.get(node)
            state = (isinstance(parent, ast.Call) and node in parent.args
                     and getattr(parent.func, "attr", getattr(parent.func, "id", None)) in MODULE_STATE)
            if not state:
                found.append(f"{where}:{node.lineno}: torch.{func.attr}(...) without device=")
        if func.attr == "numpy" and not node.args:
            receiver = func.value
            if not (isinstance(receiver, ast.Call) and isinstance(receiver.func, ast.Attribute)
                    and receiver.func.attr == "cpu"):
                found.append(f"{where}:{node.lineno}: .numpy() of something not .cpu()'d")
    return found


def test_the_walk_finds_a_tensor_without_a_device_and_numpy_without_cpu():
    bad = """
import torch
def f(x, self):
    a = torch.zeros(3)                       # 3: no device
    b = torch.as_tensor(x, dtype=torch.float32)  # 4: no device
    c = torch.randint(0, 5, (2, 3))          # 5: no device
    low = torch.tensor([1.0])                # 6: a buffer's value, but made apart from register_buffer
    self.register_buffer("low", low)
    return a.numpy(), x.detach().numpy(), b.cpu().detach().numpy()   # 8: three reads, none off .cpu()
"""
    good = """
import torch
from torch import nn
def f(x, self):
    a = torch.zeros(3, device=x.device)
    b = torch.as_tensor(x, dtype=torch.float32, device="cpu")
    self.register_buffer("mean", torch.zeros(3, dtype=torch.float64))
    self.log_alpha = nn.Parameter(torch.zeros(()))
    return a.cpu().numpy(), x.detach().cpu().numpy(), torch.zeros_like(x), x.new_zeros(3)
"""
    problems = device_problems(bad.strip())
    assert [p.split(":")[1] for p in problems] == ["3", "4", "5", "6", "8", "8", "8"], problems
    assert device_problems(good) == []


def test_no_tensor_is_made_without_a_device_nor_read_back_without_cpu():
    files = sorted(path for folder in SOURCES for path in folder.rglob("*.py"))
    assert len(files) >= 10
    problems = [p for path in files for p in device_problems(path.read_text(), str(path.relative_to(ROOT)))]
    assert not problems, "\n".join(problems)
