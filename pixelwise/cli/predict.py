"""``pixelwise predict``: label PNGs (with a palette) and optional overlays for images of any size."""

from __future__ import annotations

import argparse

from pixelwise.cli.common import add_crf, add_device, add_input_range, crf_hooks, load_checkpoint_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="segment images with a checkpoint")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="folder for NAME.png (and NAME_overlay.png)")
    parser.add_argument("--overlay", action="store_true", help="also write colour overlays with a legend")
    parser.add_argument("--tile", type=int, default=None, metavar="SIZE",
                        help="predict in tiles of SIZE pixels (unet_original: 388 is the paper's tile)")
    parser.add_argument("--tile-overlap", type=int, default=0, metavar="PIXELS",
                        help="pixels shared by neighbouring tiles, cross-faded (default 0)")
    add_input_range(parser)
    add_device(parser)
    add_crf(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelwise.engine import predict_files
    from pixelwise.engine.inference import describe_renames, list_images
    from pixelwise.engine.checkpoint import checkpoint_palette

    model, checkpoint, device = load_checkpoint_model(args)
    palette = checkpoint_palette(checkpoint)
    hooks = crf_hooks(args)
    images = list_images(args.input)
    plan = predict_files(model, images, args.output, palette=palette, class_names=checkpoint["classes"],
                         overlay=args.overlay, device=device, postprocess=hooks.predict if hooks else None,
                         tile=None if args.tile is None else (args.tile, args.tile_overlap),
                         input_range=args.input_range, progress=True)
    overlays = f" and {len(plan)} overlays" if args.overlay else ""
    print(f"wrote {len(plan)} label maps{overlays} for {len(images)} images to {args.output}")
    if renamed := describe_renames(images, plan):
        print(renamed)
    return 0
