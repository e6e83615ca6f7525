"""Peak memory and time of sliding-window inference on large images, against whole-image inference.

Each measurement runs in a fresh process (peak RSS is a process-wide high-water mark):

    python benchmarks/slide.py                   # 2048, 4096, 8192 squares, fcn8s_tiny, 21 classes
    python benchmarks/slide.py --sizes 2048 --model unet --model-arg base_width=16
    python benchmarks/slide.py --sizes 2048 --windowed 8192x8192,2048x32768   # TIFFs read/written by window

Whole-image inference would hold C x H x W float logits (5.6 GB at 8192x8192 with 21 classes)
plus the network's activations at full size; it is measured only where it fits (--whole-up-to).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from pixelwise.models import create_model
from pixelwise.engine.inference import to_model_input
from pixelwise.engine.sliding import slide_labels
size, mode, name, kwargs, threads, tile_batch = (json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4]),
                                                 int(sys.argv[5]), int(sys.argv[6]))
torch.set_num_threads(threads)
torch.manual_seed(0)
model = create_model(name, num_classes=21, **kwargs).eval()
if mode == "windowed":  # a tiled BigTIFF of size[0] x size[1], written tile by tile (never whole in memory)
    import tempfile, tifffile
    from pixelwise.engine.rasters import predict_raster
    from pixelwise.engine.sliding import SlideOptions
    from pixelwise.visualize import default_palette
    height, width = size
    block = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    folder = tempfile.mkdtemp()
    tiles = (np.roll(block, index, 0) for index in range(-(-height // 256) * -(-width // 256)))
    tifffile.imwrite(f"{folder}/in.tif", tiles, shape=(height, width, 3), dtype=np.uint8, tile=(256, 256),
                     bigtiff=True, photometric="rgb")
else:
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with torch.inference_mode():
    if mode == "whole":
        labels = model(to_model_input(image)).argmax(1)[0].to(torch.uint8)
    elif mode == "slide":
        labels = slide_labels(model, image, tile=(512, 512), overlap=0.25, tile_batch=tile_batch)
    else:
        predict_raster(model, f"{folder}/in.tif", f"{folder}/labels.tif", palette=default_palette(21),
                       options=SlideOptions((512, 512), 0.25, tile_batch))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"size": size if isinstance(size, int) else "x".join(map(str, size)), "mode": mode, "seconds": seconds, "peak_rss_mib": peak / 1024,
                  "rss_before_mib": before / 1024}))
"""


def measure(size, mode: str, model: str, kwargs: dict, threads: int, tile_batch: int) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, json.dumps(size), mode, model, json.dumps(kwargs), str(threads),
                             str(tile_batch)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return {"size": size, "mode": mode, "error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2048,4096,8192")
    parser.add_argument("--model", default="fcn8s_tiny")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile-batch", type=int, default=2, help="tiles per forward pass (default 2)")
    parser.add_argument("--whole-up-to", type=int, default=2048, help="largest side also run whole (default 2048)")
    parser.add_argument("--windowed", default="", metavar="HxW,...",
                        help="also label tiled BigTIFFs of these sizes window by window (e.g. 8192x8192,2048x32768)")
    args = parser.parse_args()
    import yaml

    kwargs = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.model_arg)}
    print(f"{args.model} {kwargs or ''}, 21 classes, CPU, {args.threads} threads; slide: 512x512 tiles, "
          f"overlap 0.25, {args.tile_batch} tiles per batch, gaussian blend")
    print(f"{'size':>6}  {'mode':<6} {'time s':>8} {'peak RSS MiB':>13}  {'vs whole':>9}")
    for size in map(int, args.sizes.split(",")):
        whole = measure(size, "whole", args.model, kwargs, args.threads, args.tile_batch) if size <= args.whole_up_to else None
        slide = measure(size, "slide", args.model, kwargs, args.threads, args.tile_batch)
        for row in filter(None, (whole, slide)):
            if "error" in row:
                print(f"{size:>6}  {row['mode']:<6} failed: {row['error']}")
                continue
            ratio = f"{row['seconds'] / whole['seconds']:.2f}x" if whole and "error" not in whole else ""
            print(f"{size:>6}  {row['mode']:<6} {row['seconds']:>8.1f} {row['peak_rss_mib']:>13.0f}  {ratio:>9}")
    for text in filter(None, args.windowed.split(",")):
        row = measure([int(side) for side in text.split("x")], "windowed", args.model, kwargs, args.threads,
                      args.tile_batch)
        if "error" in row:
            print(f"{text}  windowed failed: {row['error']}")
        else:
            print(f"{text}  windowed {row['seconds']:>8.1f} {row['peak_rss_mib']:>13.0f}  (read and written window by window)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
