"""``pixelwise segment``: classical segmentation without training (k-means in XYRGB, SLIC, Felzenszwalb).

Writes, per input image, ``NAME.png`` (the label map: 8-bit grayscale up to 256 labels,
16-bit beyond) and ``NAME_segments.png`` (each segment in its mean colour, boundaries drawn).
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from pixelwise.cli.common import add_input_range, apply_max_image_pixels

# Method options: flag -> keyword argument of the method (the dest). A flag is passed on only
# when given, so each method keeps its own defaults; one given to a method without that
# argument is an error rather than silently ignored.
OPTION_FLAGS = {
    "k": "--k",
    "spatial_weight": "--spatial-weight",
    "seed": "--seed",
    "iterations": "--iterations",
    "n_segments": "--n-segments",
    "compactness": "--compactness",
    "scale": "--scale",
    "sigma": "--sigma",
    "min_size": "--min-size",
}
# Values for method arguments that the library leaves without a default.
CLI_DEFAULTS = {"k": 8}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment images without training: k-means, SLIC superpixels, Felzenszwalb",
        description="Segment images with a classical method; writes NAME.png (labels) and NAME_segments.png.",
    )
    parser.add_argument("--method", required=True, help="kmeans | slic | felzenszwalb")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="folder for NAME.png and NAME_segments.png")
    add_input_range(parser)
    kmeans = parser.add_argument_group("kmeans options")
    kmeans.add_argument("--k", type=int, help="number of clusters (default 8)")
    kmeans.add_argument("--spatial-weight", type=float,
                        help="weight λ of position against colour; positions are divided by the longer "
                             "image side, colours by 255 (default 1.0)")
    kmeans.add_argument("--seed", type=int, help="seed of the k-means++ initialisation (default 0)")
    kmeans.add_argument("--iterations", type=int, help="most Lloyd steps for kmeans (default 100), "
                                                       "k-means steps for slic (default 10)")
    slic = parser.add_argument_group("slic options")
    slic.add_argument("--n-segments", type=int, help="approximate number of superpixels (default 100)")
    slic.add_argument("--compactness", type=float, help="colour vs position balance m (default 10)")
    felzenszwalb = parser.add_argument_group("felzenszwalb options")
    felzenszwalb.add_argument("--scale", type=float, help="merge threshold k; larger gives larger regions "
                                                          "(default 300)")
    felzenszwalb.add_argument("--min-size", type=int, help="smallest region in pixels (default 20)")
    felzenszwalb.add_argument("--sigma", type=float, help="Gaussian pre-smoothing, also for slic "
                                                          "(default 0.8; slic: 0)")
    parser.set_defaults(run=run)


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments given on the command line for ``args.method``.

    Raises ``UnknownNameError`` for an unknown method and ``ValueError`` for a flag the
    method does not take.
    """
    from pixelwise.classical.superpixels import SEGMENTATION_METHODS

    accepted = inspect.signature(SEGMENTATION_METHODS.get(args.method)).parameters
    given = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name, None) is not None}
    foreign = [OPTION_FLAGS[name] for name in given if name not in accepted]
    if foreign:
        own = ", ".join(flag for name, flag in OPTION_FLAGS.items() if name in accepted)
        raise ValueError(f"{', '.join(foreign)} does not apply to --method {args.method} (its options: {own})")
    for name, parameter in accepted.items():
        if parameter.default is inspect.Parameter.empty and name in CLI_DEFAULTS:
            given.setdefault(name, CLI_DEFAULTS[name])
    return given


def run(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm.auto import tqdm

    from pixelwise.classical.superpixels import draw_boundaries, mean_color_image, save_label_png, segment
    from pixelwise.engine.inference import describe_renames, list_images, plan_outputs, read_rgb

    apply_max_image_pixels(args)
    options = method_options(args)
    images = list_images(args.input)
    plan = plan_outputs(images, args.output, (".png", "_segments.png"))
    Path(args.output).mkdir(parents=True, exist_ok=True)
    for path, (label_path, picture_path) in zip(tqdm(images, desc=f"segment ({args.method})", unit="image"), plan,
                                                strict=True):
        image = read_rgb(path, args.input_range)
        labels = segment(image, args.method, **options)
        save_label_png(labels, label_path)
        Image.fromarray(draw_boundaries(mean_color_image(image, labels), labels)).save(picture_path)
    print(f"wrote {len(images)} label maps and {len(images)} segment pictures for {len(images)} images to {args.output}")
    if renamed := describe_renames(images, plan):
        print(renamed)
    return 0
