"""Time ``pixelwise.classical.dense_crf`` against the reference dense CRF measured in the same run.

Reference: pydensecrf2 (Krähenbühl's C++ code behind Cython; ``pip install pydensecrf2``),
``DenseCRF2D`` + ``unary_from_softmax`` + ``addPairwiseGaussian(sxy=3, compat=3)`` +
``addPairwiseBilateral(sxy=80, srgb=13, compat=10)`` + ``inference(iterations)``: the same
model as ``dense_crf``'s defaults. Inputs: a generated scene (``pixelwise.data.scenes``) at each
size and a noisy unary over ``--labels`` classes. Each timing covers the whole call (unary,
both lattices, inference); the two contenders run round-robin, so load on a shared machine hits
both alike, and the median of ``--repeats`` runs is kept. The reference is single-threaded;
``--threads`` sets torch's threads (default: torch's default). On a CPU shared with other
processes, use ``--threads 1`` or set ``OMP_WAIT_POLICY=PASSIVE``: with OpenMP's default
spin-waiting, each parallel region can wait a whole scheduler slice for a descheduled thread.

Peak memory: each contender runs once in a fresh subprocess per size, which reports the growth
of its peak resident set (Linux ``VmHWM``, reset after loading the inputs) during the call.

    python benchmarks/crf.py [--repeats 5] [--threads N] [--sizes 500x375,1024x512,2048x1024]
                             [--labels 21] [--iterations 5] [--no-memory]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pixelwise.classical import dense_crf
from pixelwise.data.scenes import generate_scene

PARAMS = {"pos_xy_std": 3.0, "pos_w": 3.0, "bi_xy_std": 80.0, "bi_rgb_std": 13.0, "bi_w": 10.0}


def make_inputs(width: int, height: int, labels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A scene image ``H x W x 3`` uint8 and noisy probabilities ``labels x H x W`` float32
    whose argmax is right on about a third of the pixels."""
    scene = generate_scene(seed, size=(height, width))
    rng = np.random.default_rng(seed)
    logits = 1.5 * rng.standard_normal((labels, height, width), dtype=np.float32)
    np.put_along_axis(logits, scene.semantic[None].astype(np.int64), 1.0 + np.take_along_axis(
        logits, scene.semantic[None].astype(np.int64), 0), 0)  # fmt: skip
    probs = np.exp(logits - logits.max(0))
    return (probs / probs.sum(0)).astype(np.float32), scene.image


def run_reference(probs: np.ndarray, image: np.ndarray, iterations: int) -> np.ndarray:
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    labels, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    crf.addPairwiseGaussian(sxy=PARAMS["pos_xy_std"], compat=PARAMS["pos_w"])
    crf.addPairwiseBilateral(sxy=PARAMS["bi_xy_std"], srgb=PARAMS["bi_rgb_std"], rgbim=image, compat=PARAMS["bi_w"])
    return np.asarray(crf.inference(iterations)).reshape(labels, height, width)


def run_pixelwise(probs: np.ndarray, image: np.ndarray, iterations: int) -> np.ndarray:
    return dense_crf(probs, image, iterations=iterations, **PARAMS)


CONTENDERS: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "reference": run_reference,
    "pixelwise": run_pixelwise,
}


def median_seconds(probs: np.ndarray, image: np.ndarray, iterations: int, repeats: int) -> dict[str, float]:
    """Round-robin timings, median per contender."""
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _ in range(repeats):
        for name, run in CONTENDERS.items():
            start = time.perf_counter()
            run(probs, image, iterations)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_mb(name: str, inputs: Path, iterations: int, threads: int | None) -> float:
    """Peak RSS growth of one call on the saved inputs, in a fresh interpreter."""
    command = [sys.executable, __file__, "--probe", name, "--inputs", str(inputs), "--iterations", str(iterations)]
    command += ["--threads", str(threads)] if threads else []
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])


def probe(name: str, inputs: Path, iterations: int) -> None:
    """Print the peak RSS growth (MB) of one call of ``name`` over the loaded inputs."""
    probs, image = np.load(inputs / "probs.npy"), np.load(inputs / "image.npy")
    tiny = np.full((2, 8, 8), 0.5, np.float32), np.zeros((8, 8, 3), np.uint8)
    for run in CONTENDERS.values():  # load the libraries before measuring
        run(*tiny, 1)
    before = reset_peak_rss_mb()
    CONTENDERS[name](probs, image, iterations)
    print(peak_rss_mb() - before)


def peak_rss_mb() -> float:
    """This process's peak resident set (Linux ``VmHWM``; ``getrusage`` elsewhere)."""
    status = Path("/proc/self/status")
    if status.exists():
        line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss_mb() -> float:
    """Reset the peak to the current resident set where Linux allows it; return the peak.
    (``ru_maxrss`` would not do: a child inherits its parent's peak across fork and exec.)"""
    clear = Path("/proc/self/clear_refs")
    if clear.exists():
        clear.write_text("5")
    return peak_rss_mb()


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.split("x")) for item in text.split(",")]  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--sizes", default="500x375,1024x512,2048x1024", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--labels", type=int, default=21)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--probe", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        probe(args.probe, args.inputs, args.iterations)
        return
    sizes = parse_sizes(args.sizes)
    print(f"dense CRF, {args.labels} labels, {args.iterations} iterations, torch threads {torch.get_num_threads()} "
          f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}), median of {args.repeats} round-robin runs")
    header = f"{'size':>10} {'reference':>10} {'pixelwise':>10} {'ratio':>6} {'agree %':>8}"
    print(header + ("" if args.no_memory else f" {'ref MB':>8} {'ours MB':>8} {'ours MB/Mpx':>11}"))
    for width, height in sizes:
        probs, image = make_inputs(width, height, args.labels)
        agree = (run_reference(probs, image, args.iterations).argmax(0)
                 == run_pixelwise(probs, image, args.iterations).argmax(0)).mean() * 100  # fmt: skip
        seconds = median_seconds(probs, image, args.iterations, args.repeats)
        line = (f"{width}x{height:<5} {seconds['reference'] * 1e3:8.0f}ms {seconds['pixelwise'] * 1e3:8.0f}ms "
                f"{seconds['pixelwise'] / seconds['reference']:6.2f} {agree:8.3f}")  # fmt: skip
        if not args.no_memory:
            with tempfile.TemporaryDirectory() as folder:
                np.save(Path(folder) / "probs.npy", probs)
                np.save(Path(folder) / "image.npy", image)
                memory = {name: peak_memory_mb(name, Path(folder), args.iterations, args.threads)
                          for name in CONTENDERS}  # fmt: skip
            megapixels = width * height / 1e6
            line += f" {memory['reference']:8.0f} {memory['pixelwise']:8.0f} {memory['pixelwise'] / megapixels:11.0f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
