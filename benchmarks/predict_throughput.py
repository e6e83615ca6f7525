"""Throughput of ``pixelwise predict`` on a folder of 200 images, against one image at a time.

    python benchmarks/predict_throughput.py [--images 200] [--size 256] [--model unet --model-arg base_width=16]

The reference is the same command with ``--batch-size 1 --num-workers 0`` (decode, predict and
write one image after the other in one process), measured in the same run. The model is
untrained (its weights do not change the cost). CPU, torch's default threads unless --threads.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pixelwise.cli.main import main as pixelwise
from pixelwise.engine import save_checkpoint
from pixelwise.engine.export import untrained_checkpoint


def run(checkpoint: Path, images: Path, out: Path, *flags: str) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = pixelwise(["predict", "--checkpoint", str(checkpoint), "--input", str(images), "--output", str(out),
                          "--no-progress", "--device", "cpu", *flags])
    if code != 0:
        raise SystemExit(f"predict failed with {code}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--model", default="unet")
    parser.add_argument("--model-arg", action="append", default=["base_width=16"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import yaml

    kwargs = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.model_arg)}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "images").mkdir()
        rng = np.random.default_rng(0)
        for index in range(args.images):
            pixels = rng.integers(0, 256, (args.size, args.size, 3), np.uint8)
            Image.fromarray(pixels).save(root / "images" / f"{index:04d}.jpg", quality=90)
        save_checkpoint(untrained_checkpoint(args.model, 21, model_kwargs=kwargs), root / "model.pt")
        print(f"{args.images} JPEGs of {args.size}x{args.size}, {args.model} {kwargs}, 21 classes, CPU, "
              f"{torch.get_num_threads()} threads")
        reference = run(root / "model.pt", root / "images", root / "one", "--batch-size", "1", "--num-workers", "0")
        print(f"one at a time (--batch-size 1 --num-workers 0): {args.images / reference:6.2f} images/s")
        for batch, workers in ((4, 0), (4, 2), (8, 2)):
            seconds = run(root / "model.pt", root / "images", root / f"b{batch}w{workers}",
                          "--batch-size", str(batch), "--num-workers", str(workers))
            print(f"--batch-size {batch} --num-workers {workers}:            {args.images / seconds:6.2f} images/s "
                  f"({reference / seconds:.2f}x)")
        resumed = run(root / "model.pt", root / "images", root / "one")
        print(f"rerun over finished outputs (all skipped): {resumed:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
