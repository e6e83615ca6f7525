"""Time k-means in XYRGB against scikit-learn's ``KMeans`` on the same features, in the same run.

Input: a 512 x 512 synthetic scene (``pixelwise.data.scenes.generate_scene``), its
``(λx, λy, r, g, b)`` features from ``xyrgb_features`` (float32, λ = 1), k = 8.

Settings shared by every contender (the fair part):
* greedy k-means++ seeding (``2 + ln k`` candidates per centre), one initialisation (``n_init=1``);
* at most ``--iterations`` Lloyd steps (default 100) and the relative tolerance ``--tolerance``
  (default 1e-4, times the mean feature variance, on the summed squared centre shift);
* float32 features; the same thread count (``--threads``, default 1): ``torch.set_num_threads``
  for pixelwise, ``threadpoolctl`` for scikit-learn's OpenMP. One thread is the default because
  on a machine whose cores are busy with other jobs every multi-threaded torch op waits for a
  descheduled worker (milliseconds per op), which says nothing about either implementation.

Contenders: ``pixelwise.classical.kmeans`` on the features, ``kmeans_xyrgb`` on the image
(features and relabelling included), and scikit-learn ``KMeans(n_clusters=8,
init="k-means++", n_init=1, max_iter, tol, algorithm="lloyd" | "elkan", random_state=seed)``.
The random streams differ, so each seed starts each contender from a different seeding:
the table gives the median time over ``--seeds`` seeds x ``--repeats`` round-robin repeats,
and the mean (and best) inertia and the mean Lloyd-step count over the seeds (scikit-learn's
``n_iter_`` also counts the last update, which finds nothing changed; pixelwise does not). Single
k-means runs land in different local minima; the mean inertia of two implementations
differs by a few percent from seed luck alone, the best one should agree.

With ``--quality`` it also scores the methods on ``--scenes`` synthetic scenes of 128 px
against their ground truth: k-means clusters matched to the 7 classes (Hungarian, leftover
clusters to their majority class; ``ClusterEvaluator``), and for every method the
boundary recall (tolerance 2 px) and undersegmentation error against the instance-level
segments (``Scene.panoptic``), with the mean number of segments per image.

    python benchmarks/classical.py [--size 512] [--k 8] [--seeds 10] [--repeats 2] [--threads 1] [--quality]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from pixelwise.classical.clustering import kmeans, kmeans_xyrgb, xyrgb_features
from pixelwise.classical.evaluation import ClusterEvaluator, boundary_recall, undersegmentation_error
from pixelwise.classical.superpixels import segment
from pixelwise.data.scenes import CLASSES, generate_scene

Run = Callable[[int], tuple[float, int]]  # seed -> (inertia, Lloyd steps)


def contenders(image: np.ndarray, features: torch.Tensor, args: argparse.Namespace) -> dict[str, Run]:
    def pixelwise_kmeans(seed: int) -> tuple[float, int]:
        result = kmeans(features, args.k, iterations=args.iterations, tolerance=args.tolerance, seed=seed)
        return result.inertia, result.iterations

    def pixelwise_image(seed: int) -> tuple[float, int]:
        kmeans_xyrgb(image, args.k, iterations=args.iterations, tolerance=args.tolerance, seed=seed)
        return float("nan"), 0

    def sklearn(algorithm: str) -> Run:
        def fit(seed: int) -> tuple[float, int]:
            model = KMeans(n_clusters=args.k, init="k-means++", n_init=1, max_iter=args.iterations,
                           tol=args.tolerance, algorithm=algorithm, random_state=seed).fit(features_np)
            return float(model.inertia_), int(model.n_iter_)
        return fit

    features_np = features.numpy()
    return {
        "sklearn KMeans lloyd": sklearn("lloyd"),
        "sklearn KMeans elkan": sklearn("elkan"),
        "pixelwise kmeans": pixelwise_kmeans,
        "pixelwise kmeans_xyrgb": pixelwise_image,
    }


def measure(runs: dict[str, Run], seeds: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median ms over seeds x repeats (round-robin, so load drift hits all alike), mean inertia and steps."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    outcomes: dict[str, list[tuple[float, int]]] = {name: [] for name in runs}
    for seed in range(seeds):
        for repeat in range(repeats + 1):  # repeat 0 warms up and records the outcome
            for name, run in runs.items():
                start = time.perf_counter()
                outcome = run(seed)
                elapsed = time.perf_counter() - start
                if repeat == 0:
                    outcomes[name].append(outcome)
                else:
                    times[name].append(elapsed)
    return {
        name: {
            "ms": 1e3 * statistics.median(times[name]),
            "inertia": statistics.fmean(inertia for inertia, _ in outcomes[name]),
            "best": min(inertia for inertia, _ in outcomes[name]),
            "steps": statistics.fmean(steps for _, steps in outcomes[name]),
        }
        for name in runs
    }


def print_table(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    reference = results["sklearn KMeans lloyd"]
    print(f"{args.size}x{args.size} scene, k={args.k}, XYRGB features (λ=1), float32; n_init=1, greedy "
          f"k-means++, max {args.iterations} steps, tol {args.tolerance:g}; torch {torch.__version__}, "
          f"{args.threads} thread(s); median of {args.seeds} seeds x {args.repeats} repeats")
    print(f"{'implementation':<24} {'ms':>8} {'time / sklearn lloyd':>21} {'steps':>6} {'inertia':>9} "
          f"{'inertia / sklearn':>18} {'best inertia':>13}")
    for name, row in results.items():
        ratio = row["inertia"] / reference["inertia"]
        inertia = "" if np.isnan(row["inertia"]) else f"{row['inertia']:9.1f} {ratio:18.3f} {row['best']:13.1f}"
        steps = f"{row['steps']:6.1f}" if row["steps"] else f"{'':6}"
        print(f"{name:<24} {row['ms']:8.1f} {row['ms'] / reference['ms']:21.2f} {steps} {inertia}")
    ours = results["pixelwise kmeans"]
    print(f"goal: time / sklearn lloyd < 1 -> {ours['ms'] / reference['ms']:.2f}; "
          f"inertia / sklearn lloyd ~ 1 -> {ours['inertia'] / reference['inertia']:.3f}")


QUALITY_METHODS = {
    "kmeans k=8 λ=1": ("kmeans", {"k": 8, "spatial_weight": 1.0}),
    "slic n=100 m=10": ("slic", {"n_segments": 100, "compactness": 10.0}),
    "felzenszwalb k=300 σ=0.8": ("felzenszwalb", {"scale": 300.0, "sigma": 0.8, "min_size": 20}),
}


def print_quality(scenes: int) -> None:
    """Boundary recall, undersegmentation error, segment count (and mIoU for k-means) on synthetic scenes."""
    print(f"\nquality on {scenes} synthetic 128 px scenes (boundary recall at 2 px; UE: Neubert & Protzel)")
    print(f"{'method':<26} {'segments':>8} {'boundary recall':>16} {'UE':>6} {'mIoU (matched)':>15}")
    for name, (method, options) in QUALITY_METHODS.items():
        evaluator = ClusterEvaluator(num_classes=len(CLASSES))
        counts, recalls, errors = [], [], []
        for seed in range(scenes):
            scene = generate_scene(1000 + seed, size=128)
            labels = segment(scene.image, method, **options)
            counts.append(labels.max() + 1)
            recalls.append(boundary_recall(labels, scene.panoptic, tolerance=2))
            errors.append(undersegmentation_error(labels, scene.panoptic))
            evaluator.update(labels, scene.semantic)
        miou = f"{evaluator.compute()['miou']:15.3f}" if method == "kmeans" else f"{'':15}"
        print(f"{name:<26} {np.mean(counts):8.1f} {np.mean(recalls):16.3f} {np.mean(errors):6.3f} {miou}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads for both torch and scikit-learn")
    parser.add_argument("--scene", type=int, default=0, help="seed of the synthetic scene")
    parser.add_argument("--quality", action="store_true", help="also score the methods on synthetic scenes")
    parser.add_argument("--scenes", type=int, default=8, help="scenes for --quality")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    image = generate_scene(args.scene, size=args.size).image
    features = xyrgb_features(image, spatial_weight=1.0)
    with threadpool_limits(limits=args.threads):
        results = measure(contenders(image, features, args), args.seeds, args.repeats)
    print_table(results, args)
    if args.quality:
        print_quality(args.scenes)


if __name__ == "__main__":
    main()
