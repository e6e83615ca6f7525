"""What ``pixelwise bench`` measures for one model: parameters, MACs and FLOPs, latency, peak memory.

- **FLOPs** are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass: convolutions
  and matrix products at 2 FLOPs per multiply-add (element-wise ops, pooling and interpolation are not
  counted, as in the papers). **MACs** are FLOPs / 2. The count runs on the ``meta`` device (no memory, no
  time); a model whose forward needs real values is counted on the CPU.
- **Latency**: ``warmup`` untimed passes, then ``runs`` timed ones (``time.perf_counter`` around the
  forward only; the input tensor is made once, before; CUDA is synchronised). Median and 90th percentile.
  FPS is ``batch * 1000 / median``.
- **Peak memory**: on CUDA, ``torch.cuda.max_memory_allocated`` over the timed passes. On the CPU the
  growth of the process's peak resident memory (``VmHWM``, reset through ``/proc/self/clear_refs``)
  over its resident memory before the model was built: weights plus activations. ``None`` where the
  kernel offers no reset.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pixelwise.models import create_model

__all__ = ["BACKENDS", "count_flops", "make_runner", "model_flops", "peak_memory", "percentile", "time_runs"]

BACKENDS = ("eager", "optimised", "onnxruntime")
_MIB = 2**20


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs (2 per multiply-add) of ``model(x)`` under ``torch.no_grad``.

    >>> count_flops(nn.Conv2d(3, 8, 3, padding=1), torch.zeros(1, 3, 4, 4))  # 2 x (8 x 3 x 3 x 3) x 4 x 4
    6912
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def model_flops(name: str, num_classes: int, size: tuple[int, int], batch: int = 1, **kwargs: Any) -> int:
    """FLOPs of one eval forward of ``create_model(name, num_classes, **kwargs)`` on ``batch x 3 x H x W``,
    counted on the meta device (the CPU when the forward needs values)."""
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                model = create_model(name, num_classes, **kwargs).eval()
                x = torch.zeros(batch, model.in_channels if hasattr(model, "in_channels") else 3, *size)
            return count_flops(model, x)
        except (NotImplementedError, RuntimeError):
            if device == "cpu":
                raise
    raise AssertionError("unreachable")


def make_runner(model: nn.Module, backend: str, x: torch.Tensor, *, threads: int,
                workdir: Path | None = None, compile: bool = False) -> Callable[[], Any]:
    """A no-argument callable running one forward of ``model`` on ``x`` with ``backend`` (``compile``: the
    optimised model through ``torch.compile`` as well)."""
    if compile and backend != "optimised":
        raise ValueError(f"compile applies to the optimised backend (optimize_for_inference), not {backend!r}")
    if backend == "eager":
        def run() -> Any:
            with torch.inference_mode():
                return model(x)
        return run
    if backend == "optimised":
        from pixelwise.engine.optimize import optimize_for_inference

        fast = optimize_for_inference(model, example_size=tuple(x.shape[-2:]), compile=compile)
        return lambda: fast(x)
    if backend == "onnxruntime":
        return _onnx_runner(model, x, threads, workdir)
    raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def _onnx_runner(model: nn.Module, x: torch.Tensor, threads: int, workdir: Path | None) -> Callable[[], Any]:
    from pixelwise.engine.onnx import export_onnx, load_onnx_model

    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, path, input_size=tuple(x.shape[-2:]), dynamic_batch=x.shape[0] > 1,
                    meta={"model_name": getattr(model, "registered_as", type(model).__name__)})
        onnx_model = load_onnx_model(path, threads=threads)
    return lambda: onnx_model(x)


def time_runs(run: Callable[[], Any], *, warmup: int, runs: int, cuda: bool = False) -> list[float]:
    """Milliseconds of each of ``runs`` calls of ``run`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation between order statistics.

    >>> percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90), percentile([7.0], 90)
    (4.6, 7.0)
    """
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


@dataclass
class PeakMemory:
    """Filled by :func:`peak_memory`: ``mb`` once the block ends (None where it cannot be measured)."""

    device: torch.device
    mb: float | None = None
    resettable: bool = True

    def restart_peak(self) -> None:
        """Forget peaks before now (one-off set-up such as an export), keeping the baseline."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.resettable = self.resettable and _reset_peak_rss()


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[PeakMemory]:
    """Measure the peak memory a block adds over what was in use when it began (see the module docstring)."""
    result = PeakMemory(device)
    cuda = device.type == "cuda"
    before = torch.cuda.memory_allocated(device) if cuda else _status_kib("VmRSS")
    result.resettable = before is not None
    result.restart_peak()
    yield result
    if cuda:
        torch.cuda.synchronize(device)
        result.mb = (torch.cuda.max_memory_allocated(device) - before) / _MIB
        return
    peak = _status_kib("VmHWM")
    if result.resettable and peak is not None:
        result.mb = max(0.0, (peak - before) / 1024)


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
