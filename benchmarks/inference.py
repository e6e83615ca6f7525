"""Fast inference on the CPU: torchvision eager against pixelwise eager, optimised and ONNX Runtime.

For ``deeplabv3_resnet50`` and ``lraspp_mobilenet_v3_large`` (batch 1, 512x512, float32) the same weights
run as

- torchvision eager (the reference, ratio 1.00),
- pixelwise eager (``create_model``, ``torch.inference_mode``),
- pixelwise optimised (``pixelwise.engine.optimize_for_inference``: batch norms folded, channels-last),
- pixelwise optimised + ``torch.compile`` (inductor), unless ``--no-compile``,
- pixelwise ONNX Runtime (``pixelwise.engine.export_onnx`` at the fixed size, CPU provider, the same threads),

timed *interleaved* (one call of each in turn, ``--repeats`` times after ``--warmup`` rounds) so that load
on the machine hits all alike; the ratios are of the medians. Outputs are checked against torchvision's
first. Achieved GFLOP/s (FLOPs from ``torch.utils.flop_counter``, 2 per multiply-add) are compared with
the machine's peak: cores x FP32 FLOPs per cycle x clock, FLOPs per cycle being 2 FMA units x the vector
lanes (8 with AVX2, 16 with AVX-512) x 2, the clock measured by ``cpu_clock.c`` (dependent integer adds,
one copy per thread at once; /proc/cpuinfo's "cpu MHz" without a C compiler: virtual machines report
their base clock there). "x floor" is the latency over the time the FLOPs take at that peak. The FLOPs
include the multiplications by the zero padding of dilated convolutions, which runtimes may skip
(DeepLab v3's ASPP, dilations 12/24/36 on a 64x64 map at 512x512), so such a model can beat its "floor".

    python benchmarks/inference.py [--size 512] [--threads 2] [--repeats 20] [--warmup 3] [--no-compile]

Goal (issue "real-time models"): eager <= 1.0x, optimised <= 0.75x, ONNX Runtime <= 0.70x; compute-bound
models within 1.5x of the FLOP floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_torchvision import interleaved, torchvision_model  # noqa: E402  (the shared timing protocol)

from pixelwise.bench.measure import count_flops  # noqa: E402
from pixelwise.bench.runner import device_name  # noqa: E402
from pixelwise.engine import export_onnx, load_onnx_model, optimize_for_inference  # noqa: E402
from pixelwise.models import from_torchvision  # noqa: E402

MODELS = ("deeplabv3_resnet50", "lraspp_mobilenet_v3_large")


def peak_gflops(cores: int) -> tuple[float, str]:
    """The FP32 peak of ``cores`` cores and how it was derived: cores x FLOPs per cycle x clock. The clock is
    measured (:func:`measured_clock_ghz`) where a C compiler is present, since virtual machines report the
    base clock in /proc/cpuinfo and the cores run faster; else /proc/cpuinfo's "cpu MHz"."""
    text = Path("/proc/cpuinfo").read_text()
    flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
    reported = float(next(line for line in text.splitlines() if line.startswith("cpu MHz")).split(":")[1]) / 1e3
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    per_cycle = 2 * lanes * 2  # two FMA units, each a multiply and an add per lane
    measured = measured_clock_ghz(cores)
    clock, source = (measured, f"measured, /proc/cpuinfo says {reported:.3f}") if measured else (reported, "cpu MHz")
    return cores * per_cycle * clock, f"{cores} cores x {per_cycle} FLOP/cycle x {clock:.3f} GHz ({source})"


def measured_clock_ghz(copies: int) -> float | None:
    """The mean core clock of ``copies`` simultaneous runs of benchmarks/cpu_clock.c, or None without a C compiler."""
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        return None
    with tempfile.TemporaryDirectory() as folder:
        binary = Path(folder) / "cpu_clock"
        subprocess.run([compiler, "-O2", "-o", str(binary), str(Path(__file__).with_name("cpu_clock.c"))], check=True)
        runs = [subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True) for _ in range(copies)]
        return statistics.fmean(float(run.communicate()[0]) for run in runs)


def callables(name: str, x: torch.Tensor, threads: int, compile_: bool, folder: Path) -> dict[str, callable]:
    reference = torchvision_model(name, aux=False).eval()
    ours = from_torchvision(reference).eval()
    fast = optimize_for_inference(ours, example_size=tuple(x.shape[-2:]))
    export_onnx(ours, folder / f"{name}.onnx", input_size=tuple(x.shape[-2:]), meta={"model_name": name})
    onnx_model = load_onnx_model(folder / f"{name}.onnx", threads=threads)
    calls = {"torchvision eager": lambda: reference(x)["out"], "pixelwise eager": lambda: ours(x),
             "pixelwise optimised": lambda: fast(x)}
    if compile_:
        compiled = optimize_for_inference(ours, example_size=tuple(x.shape[-2:]), compile=True)
        calls["pixelwise optimised + compile"] = lambda: compiled(x)
    calls["pixelwise ONNX Runtime"] = lambda: onnx_model(x)
    with torch.inference_mode():
        expected = calls["torchvision eager"]()
        for label, call in calls.items():
            difference = (call() - expected).abs().max().item()
            if difference > 1e-3 * max(1.0, expected.abs().max().item()):
                raise AssertionError(f"{name}: {label} differs from torchvision by {difference:.2e}")
    return calls


def report(name: str, times: dict[str, list[float]], flops: int, peak: float) -> None:
    reference = statistics.median(times["torchvision eager"])
    print(f"\n`{name}`: {flops / 1e9:.1f} GFLOPs per image; floor at peak {flops / 1e9 / peak * 1e3:.1f} ms\n")
    print("| runtime | median ms | ratio to torchvision eager | GFLOP/s | x floor |")
    print("|---|---:|---:|---:|---:|")
    for label, values in times.items():
        median = statistics.median(values)
        print(f"| {label} | {median * 1e3:.1f} | {median / reference:.3f}x | {flops / median / 1e9:.1f} | "
              f"{median / (flops / 1e9 / peak):.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    peak, derivation = peak_gflops(args.threads)
    print(f"torch {torch.__version__}, CPU {device_name(torch.device('cpu'))}, {args.threads} threads, float32, "
          f"batch 1, {args.size}x{args.size}; median of {args.repeats} interleaved runs after {args.warmup} rounds "
          f"of warm-up. Peak {peak:.1f} GFLOP/s ({derivation}).")
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            calls = callables(name, x, args.threads, not args.no_compile, Path(folder))
            flops = count_flops(from_torchvision(torchvision_model(name, aux=False)).eval(), x)
            with torch.inference_mode():
                times = interleaved(calls, args.warmup, args.repeats)
            report(name, times, flops, peak)


if __name__ == "__main__":
    main()
