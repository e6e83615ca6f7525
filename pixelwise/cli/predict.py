"""``pixelwise predict``: label PNGs (with a palette) and optional overlays for images of any size."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pixelwise.cli.common import (
    add_crf,
    add_device,
    apply_max_image_pixels,
    add_inference,
    add_input_range,
    add_task,
    crf_hooks,
    inference_options,
    load_checkpoint_model,
    task_model,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="segment images with a checkpoint",
        description="Label maps (index PNGs with the palette) for an image, a folder or a glob. Outputs "
                    "that exist are skipped, so an interrupted run resumes; a file that fails is reported "
                    "and the rest go on (exit status 1 if any failed). Under torchrun each process "
                    "predicts its share.")
    parser.add_argument("--checkpoint", help="RUN/best.pt, an exported .safetensors, ... (the torch backend)")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="torch: --checkpoint; onnxruntime: --model-file, a graph `pixelwise export` wrote, "
                             "or --checkpoint, exported on the fly (CPU; default torch)")
    parser.add_argument("--model-file", help="MODEL.onnx for --backend onnxruntime")
    parser.add_argument("--input", required=True, help="an image file, a folder of images or a glob ('a/**/*.png')")
    parser.add_argument("--output", required=True, help="folder for NAME.png (and NAME_overlay.png)")
    parser.add_argument("--overlay", action="store_true", help="also write colour overlays with a legend")
    parser.add_argument("--overwrite", action="store_true", help="predict again images whose outputs exist")
    parser.add_argument("--batch-size", type=int, default=4, help="images of one size per forward pass (default 4)")
    parser.add_argument("--num-workers", type=int, default=2, help="image-decoding processes (default 2)")
    parser.add_argument("--windowed", action="store_true",
                        help="TIFFs larger than memory: read window by window, labelled tile by tile (slide "
                             "mode), written as NAME.tif (tiled palette BigTIFF) window by window")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_inference(parser)
    add_input_range(parser)
    add_device(parser)
    add_crf(parser)
    add_task(parser, "semantic: label PNGs; panoptic: COCO panoptic PNGs + panoptic.json and NAME_overlay.png; "
                     "instance: instances.json (COCO, RLE masks) and NAME_overlay.png")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pixelwise.engine import predict_files
    from pixelwise.engine.checkpoint import checkpoint_palette
    from pixelwise.engine.inference import describe_renames, list_images
    from pixelwise.engine.predictor import describe_options

    apply_max_image_pixels(args)
    options = inference_options(args)
    if args.windowed:
        from dataclasses import replace

        options = replace(options, mode="slide")
    hooks = crf_hooks(args)
    model, checkpoint, device = load_predictor(args)
    images = list_images(args.input)
    if args.task not in (None, "semantic") or checkpoint.get("task", "semantic") != "semantic":
        return predict_task(args, model, checkpoint, device, images, options, hooks)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    manifest = describe_options(args.checkpoint or args.model_file, options, backend=args.backend, crf=hooks is not None, overlay=args.overlay,
                                windowed=args.windowed,
                                input_range=list(args.input_range) if args.input_range else None)
    if args.windowed:
        summary = predict_windowed(args, model, images, checkpoint, options, hooks, device, manifest, rank,
                                   world_size)
    else:
        summary = predict_files(model, images, args.output, palette=checkpoint_palette(checkpoint),
                                class_names=checkpoint["classes"], overlay=args.overlay, device=device,
                                postprocess=hooks.predict if hooks else None, options=options,
                                input_range=args.input_range, batch_size=args.batch_size,
                                num_workers=args.num_workers, overwrite=args.overwrite, manifest=manifest,
                                rank=rank, world_size=world_size, progress=not args.no_progress and rank == 0)
    where = f"process {rank} of {world_size}: " if world_size > 1 else ""
    print(f"{where}{summary.line(args.overlay)} -> {args.output}")
    if rank == 0 and (renamed := describe_renames(images, summary.plan)):
        print(renamed)
    for image, reason in summary.failed:
        print(f"failed: {image}: {reason}", file=sys.stderr)
    return 1 if summary.failed else 0


def predict_task(args: argparse.Namespace, model, checkpoint: dict, device, images, options, hooks) -> int:
    """``--task panoptic|instance`` (:mod:`pixelwise.engine.task_predictor`): whole images, one pass each."""
    from pixelwise.engine.checkpoint import checkpoint_palette
    from pixelwise.engine.task_predictor import predict_task_files, report_failures
    from pixelwise.errors import with_article

    if args.backend != "torch":
        raise ValueError("--backend onnxruntime predicts semantic label maps; instance and panoptic models run on "
                         "the torch backend")
    task, model = task_model(args, model, checkpoint, device)
    if task == "semantic":
        raise ValueError(f"{args.checkpoint} is {with_article(checkpoint['task'])} model; it predicts --task {checkpoint['task']}")
    if options.mode != "whole" or options.passes > 1 or hooks is not None or args.windowed or args.overlay:
        raise ValueError(f"--task {task} runs the model once on each whole image and always writes the picture: "
                         "--mode slide, --tta-*, --crf, --windowed and --overlay are for semantic label maps")
    summary = predict_task_files(model, images, args.output, task=task, classes=checkpoint["classes"],
                                 palette=checkpoint_palette(checkpoint), things=checkpoint.get("things", []),
                                 category_ids=checkpoint.get("category_ids"), device=device,
                                 input_range=args.input_range, score_threshold=args.score_threshold,
                                 progress=not args.no_progress)
    print(f"{summary.line()} -> {args.output}")
    report_failures(summary)
    return 1 if summary.failed else 0


def predict_windowed(args: argparse.Namespace, model, images, checkpoint: dict, options, hooks, device, manifest,
                     rank: int, world_size: int):
    """``--windowed``: TIFFs only, in slide mode, without overlays or a CRF (both need the whole image)."""
    from pixelwise.engine.checkpoint import checkpoint_palette
    from pixelwise.engine.predictor import predict_rasters

    others = [str(path) for path in images if path.suffix.lower() not in (".tif", ".tiff")]
    if others:
        raise ValueError(f"--windowed reads TIFFs window by window; not TIFFs: {', '.join(others[:5])}")
    if args.overlay or hooks is not None:
        raise ValueError("--windowed writes label maps only: --overlay and --crf need the whole image in memory")
    if args.mode == "whole":
        raise ValueError("--windowed predicts tile by tile: drop --mode whole")
    return predict_rasters(model, images, args.output, palette=checkpoint_palette(checkpoint),
                           options=options, device=device, input_range=args.input_range,
                           overwrite=args.overwrite, manifest=manifest, rank=rank, world_size=world_size,
                           progress=not args.no_progress and rank == 0)


def export_on_the_fly(checkpoint: str):
    """The ONNX Runtime model of ``checkpoint``, exported (and parity-checked) into a temporary folder."""
    import tempfile

    from pixelwise.engine.onnx import export_onnx, load_onnx_model

    with tempfile.TemporaryDirectory(prefix="pixelwise-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        report = export_onnx(checkpoint, path)
        print(f"pixelwise predict: exported {checkpoint} to ONNX on the fly ({report['exporter']} exporter, "
              f"max |difference| {report['max_abs_diff']:.1e}); `pixelwise export` keeps the file for reuse",
              file=sys.stderr)
        return load_onnx_model(path)


def load_predictor(args: argparse.Namespace):
    """``(model, checkpoint, device)``: the checkpoint's torch model, or the ONNX graph of ``--model-file``
    run by ONNX Runtime on the CPU (with the classes and palette its metadata holds)."""
    if args.backend == "torch":
        if not args.checkpoint or args.model_file:
            raise ValueError("--backend torch takes --checkpoint RUN/best.pt (--model-file is for --backend "
                             "onnxruntime)")
        return load_checkpoint_model(args)
    if args.model_file and args.checkpoint:
        raise ValueError("--backend onnxruntime takes --model-file MODEL.onnx (written by pixelwise export) or "
                         "--checkpoint (exported on the fly), not both")
    if not args.model_file and not args.checkpoint:
        raise ValueError("--backend onnxruntime takes --model-file MODEL.onnx (written by pixelwise export) or "
                         "--checkpoint RUN/best.pt (exported on the fly)")
    if args.device not in (None, "auto", "cpu"):
        raise ValueError(f"--backend onnxruntime runs on the CPU; got --device {args.device}")
    from pixelwise.engine.onnx import load_onnx_model

    model = load_onnx_model(args.model_file) if args.model_file else export_on_the_fly(args.checkpoint)
    return model, model.checkpoint, "cpu"
