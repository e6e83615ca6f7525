"""``benchmark_model``: one row of ``pixelwise bench``, every number with the conditions it was taken under."""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from pixelwise.bench.measure import BACKENDS, make_runner, model_flops, peak_memory, percentile, time_runs
from pixelwise.models import count_parameters, create_model

__all__ = ["MIN_RUNS", "MIN_WARMUP", "benchmark_model", "device_name"]

MIN_RUNS, MIN_WARMUP = 50, 5  # the defaults; fewer are allowed and recorded in every row


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name from /proc/cpuinfo (the platform's processor elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def benchmark_model(name: str, *, size: tuple[int, int] = (1024, 2048), batch: int = 1, threads: int | None = None,
                    backend: str = "eager", num_classes: int = 19, warmup: int = MIN_WARMUP, runs: int = MIN_RUNS,
                    device: str = "cpu", model_kwargs: dict[str, Any] | None = None,
                    compile: bool = False) -> dict[str, Any]:
    """Measure ``name`` at ``batch x 3 x H x W``: parameters, MACs, FLOPs, latency, FPS, peak memory.

    Returns one row (the keys of ``pixelwise bench --json``): ``name``, ``input_size`` ("HxW"), ``batch``,
    ``params``, ``macs``, ``flops``, ``latency_ms_median``, ``latency_ms_p90``, ``fps``, ``peak_memory_mb``,
    ``backend``, ``precision``, ``threads``, ``torch``, ``device``, ``warmup``, ``runs``, ``compiled``
    (``compile``: the optimised backend through ``torch.compile``; its compilation happens in the warm-up).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if runs < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"runs and batch must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}, "
                         f"batch={batch}")
    model_kwargs = dict(model_kwargs or {})
    target = torch.device(device)
    flops = model_flops(name, num_classes, size, batch, **model_kwargs)
    with torch_threads(threads) as used_threads, peak_memory(target) as memory:
        model = create_model(name, num_classes, **model_kwargs).eval().to(target)
        x = torch.randn(batch, getattr(model, "in_channels", 3), *size, device=target)
        params = count_parameters(model)
        run = make_runner(model, backend, x, threads=used_threads, compile=compile)
        memory.restart_peak()  # an export or a fold is set-up, not inference
        times = time_runs(run, warmup=warmup, runs=runs, cuda=target.type == "cuda")
    median = percentile(times, 50)
    return {"name": name, "input_size": f"{size[0]}x{size[1]}", "batch": batch, "params": params,
            "macs": flops // 2, "flops": flops, "latency_ms_median": round(median, 3),
            "latency_ms_p90": round(percentile(times, 90), 3), "fps": round(batch * 1000 / median, 2),
            "peak_memory_mb": None if memory.mb is None else round(memory.mb, 1), "backend": backend,
            "precision": "float32", "threads": used_threads, "torch": torch.__version__,
            "device": f"{target.type}: {device_name(target)}", "warmup": warmup, "runs": runs, "compiled": compile}
