"""Every loss, the compiled kernels and the training harness on a CUDA device.

Skipped where no CUDA device exists (CI, this project's development machine); run on a lent GPU
with ``python -m pytest tests/test_cuda.py`` (see docs/benchmarks.md, "CUDA"). The float64
references run on the CPU, so a CUDA result is checked against a computation that shares no
kernel with it.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from cases import COUNTS, TASK_CASES, case_id, make_batch

import torch_imbalance as ti
from torch_imbalance.functional import _compiled

#: The device under test; ``TORCH_IMBALANCE_TEST_DEVICE=cpu`` dry-runs this file without a GPU.
CUDA = torch.device(os.environ.get("TORCH_IMBALANCE_TEST_DEVICE", "cuda"))
pytestmark = pytest.mark.skipif(
    CUDA.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"
)


@pytest.fixture
def mode():
    yield ti.set_compile_mode
    ti.set_compile_mode("auto")


def _kwargs(task, **kw):
    return {**kw, "task": task} if task == "multilabel" else kw


def _run(case, task, z, t, weight, reduction, probe=None):
    """Value and gradient (of ``Σ loss · probe``) of ``case`` on ``z``'s device."""
    x = z.clone().requires_grad_()
    loss = case.call_ours(x, t, **_kwargs(task, weight=weight, reduction=reduction))
    probe = torch.ones_like(loss) if probe is None else probe
    (grad,) = torch.autograd.grad((loss * probe).sum(), x)
    return loss, grad


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
@pytest.mark.parametrize("path", ["never", "always"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cuda_float64_matches_cpu_reference(mode, case, task, path, reduction):
    """Both paths (eager chunks, compiled Triton kernels) on CUDA against the CPU reference."""
    z, t = make_batch(task, (3, 4, 5, 6), 0.2)
    weight = torch.linspace(0.5, 1.5, 4, dtype=torch.float64)
    x = z.clone().requires_grad_()
    expected = case.call_reference(x, t, **_kwargs(task, weight=weight, reduction=reduction))
    probe = torch.randn(expected.shape, dtype=torch.float64)
    (expected_grad,) = torch.autograd.grad((expected * probe).sum(), x)

    mode(path)
    _compiled.kernel_runs(reset=True)
    loss, grad = _run(
        case, task, z.to(CUDA), t.to(CUDA), weight.to(CUDA), reduction, probe.to(CUDA)
    )
    assert loss.device.type == CUDA.type and grad.device.type == CUDA.type
    torch.testing.assert_close(loss.cpu(), expected, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(grad.cpu(), expected_grad, rtol=1e-8, atol=1e-10)
    runs = _compiled.kernel_runs()
    assert not _compiled.compile_broken(), _compiled._state["broken"]
    compiled = any(key.startswith("compiled-") and key != "compiled-counts" for key in runs)
    assert compiled == (path == "always"), runs


@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
def test_cuda_float32_dense_auto_path(mode, case, task):
    """A segmentation-sized float32 batch on "auto": the one-pass compiled kernel runs (every
    reduced loss, multi-class and multi-label) and agrees with the float64 reference to float32 rounding."""
    z, t = make_batch(task, (2, 4, 96, 96), 0.05, dtype=torch.float32)
    assert z.numel() >= _compiled.MIN_COMPILED_ELEMENTS
    weight = torch.linspace(0.5, 1.5, 4, dtype=torch.float64)
    x = z.double().requires_grad_()
    expected = case.call_reference(x, t, **_kwargs(task, weight=weight))
    (expected_grad,) = torch.autograd.grad(expected, x)

    _compiled.kernel_runs(reset=True)
    loss, grad = _run(case, task, z.to(CUDA), t.to(CUDA), weight.float().to(CUDA), "mean")
    runs = _compiled.kernel_runs()
    assert not _compiled.compile_broken(), _compiled._state["broken"]
    # "auto" compiles on the tested torch range only (a GPU machine may have an older torch).
    assert runs.get("compiled-one-pass", 0) == int(_compiled.torch_is_tested()), runs
    assert loss.dtype == torch.float32 and grad.dtype == torch.float32
    torch.testing.assert_close(loss.double().cpu(), expected, rtol=2e-5, atol=1e-6)
    scale = expected_grad.abs().max()
    torch.testing.assert_close(grad.double().cpu(), expected_grad, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("case", "task"), TASK_CASES, ids=lambda v: case_id(v) or v)
def test_cuda_half_precision_logits(case, task, dtype):
    """Half-precision logits (autocast's output): the loss is computed and returned in float32
    (as autocast does for ``F.cross_entropy``), finite and close to the float32 input's; the
    gradient comes back in the logits' dtype."""
    z, t = make_batch(task, (2, 4, 64, 64), 0.05, dtype=torch.float32)
    z, t = z.to(CUDA), t.to(CUDA)
    reference_loss, _ = _run(case, task, z, t, None, "mean")
    loss, grad = _run(case, task, z.to(dtype), t, None, "mean")
    assert loss.dtype == torch.float32 and grad.dtype == dtype
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    torch.testing.assert_close(loss.float(), reference_loss, rtol=3e-2, atol=1e-3)


@pytest.mark.parametrize("name", ti.available_losses())
def test_every_registry_module_moves_to_cuda_and_trains(name):
    drw = name in ("ldam_drw", "lmf_drw")
    loss = ti.build_loss(name, COUNTS[4], **({"total_epochs": 10} if drw else {})).to(CUDA)
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(9)
    loss.train()
    z, t = make_batch("multiclass", (2, 4, 32, 32), 0.1, dtype=torch.float32)
    z = z.to(CUDA).requires_grad_()
    value = loss(z, t.to(CUDA))
    value.backward()
    assert value.device.type == CUDA.type and torch.isfinite(value) and torch.isfinite(z.grad).all()
    for tensor in [*loss.parameters(), *loss.buffers()]:
        assert tensor.device.type == CUDA.type, name
    cpu_loss = ti.build_loss(name, COUNTS[4], **({"total_epochs": 10} if drw else {}))
    cpu_loss.load_state_dict({k: v.cpu() for k, v in loss.state_dict().items()})


@pytest.mark.parametrize("name", ti.available_losses())
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_loss_calls_never_wait_for_the_device(mode, name, reduction):
    """A training call (forward and backward, validate=True, both paths) makes no host sync:
    the value checks are device-side asserts (``_driver.check_flag``)."""
    if CUDA.type != "cuda":
        pytest.skip("sync debug mode needs CUDA")
    drw = name in ("ldam_drw", "lmf_drw")
    loss = ti.build_loss(name, COUNTS[4], **({"total_epochs": 10} if drw else {})).to(CUDA)
    loss.reduction = reduction
    z, t = make_batch("multiclass", (2, 4, 32, 32), 0.1, dtype=torch.float32)
    z, t = z.to(CUDA).requires_grad_(), t.to(CUDA)
    for path in ("never", "always"):
        mode(path)
        loss(z, t).sum().backward()  # compile and warm up outside the sync check
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            loss(z, t).sum().backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")


def test_invalid_label_fails_on_the_device():
    """An out-of-range label trips the device-side assert (in a child process: a failed device
    assert ends its CUDA context)."""
    if CUDA.type != "cuda":
        pytest.skip("device-side asserts need CUDA")
    import subprocess
    import sys

    script = (
        "import torch, torch_imbalance as ti\n"
        "z = torch.randn(8, 4, device='cuda')\n"
        "t = torch.tensor([0, 1, 2, 3, 0, 1, 2, 7], device='cuda')\n"
        "ti.FocalLoss()(z, t)\n"
        "torch.cuda.synchronize()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode != 0
    assert "device-side assert" in done.stderr or "label out of range" in done.stderr


@pytest.mark.parametrize("name", ["focal", "lmf", "dual_focal"])
def test_training_step_under_reduce_overhead(name):
    """A whole training step (model, our loss, backward) under
    ``torch.compile(mode="reduce-overhead")`` (CUDA graphs) gives eager's loss and gradients."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 3, padding=1).to(CUDA)
    loss = ti.build_loss(name, COUNTS[4]).to(CUDA)

    def step(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        value = loss(model(x), t)
        value.backward()
        return value.detach()

    compiled = torch.compile(step, mode="reduce-overhead")
    for seed in range(3):  # the graph is recorded on a warm-up call, then replayed
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(2, 3, 16, 16, generator=generator).to(CUDA)
        t = torch.randint(0, 4, (2, 16, 16), generator=generator).to(CUDA)
        model.zero_grad()
        expected = step(x, t)
        expected_grad = model.weight.grad.clone()
        model.zero_grad()
        got = compiled(x, t).clone()
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model.weight.grad, expected_grad, rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_classification_training_on_cuda(tmp_path):
    from torch_imbalance.cli.main import main

    out = tmp_path / "run"
    args = ["train", "--dataset", "digits-lt", "--loss", "lmf", "--epochs", "2", "--seed", "0"]
    fast = ["--image-size", "32", "--batch-size", "64", "--no-progress"]
    gpu = [
        "--accelerator",
        "gpu" if CUDA.type == "cuda" else "cpu",
        "--devices",
        "1",
        "--precision",
        "bf16-mixed",
    ]
    assert main([*args, *fast, *gpu, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["macro_f1"] <= 1.0
    checkpoint = out / "checkpoints" / "best.ckpt"
    assert main(["gradcam", str(checkpoint), "--out", str(tmp_path / "cam.png")]) == 0


@pytest.mark.slow
def test_segmentation_training_on_cuda(tmp_path):
    from harness_helpers import write_segfolder

    from torch_imbalance.cli.main import main

    root = write_segfolder(tmp_path / "data", count=16, size=32)
    out = tmp_path / "seg"
    args = ["train", "--task", "segmentation", "--dataset", "segfolder", "--root", str(root)]
    rest = ["--loss", "dual_focal_adaptive", "--epochs", "2", "--batch-size", "8", "--no-progress"]
    gpu = ["--accelerator", "gpu" if CUDA.type == "cuda" else "cpu", "--devices", "1"]
    assert main([*args, *rest, *gpu, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"miou", "mean_dice"} <= set(metrics["test"])
