"""``pixelwise serve``: a web page (and its JSON API) where one drops an image and sees it segmented.

FastAPI and uvicorn (the ``serve`` extra) are imported only when the server starts, like torch.
"""

from __future__ import annotations

import argparse

from pixelwise.cli.common import add_device

# The defaults of pixelwise.serve.app.create_app (not imported here: it needs FastAPI).
DEFAULT_MAX_UPLOAD_MB = 25.0
DEFAULT_MAX_SIDE = 8192


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="a web page and JSON API: upload an image, see it segmented",
        description="Serve a page (and POST /api/segment, GET /api/models, /openapi.json) that segments uploaded "
                    "images with checkpoints, k-means or SLIC, optionally refined by the dense CRF.",
    )
    parser.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                        help="a checkpoint to offer (repeatable; the first is the default); without one only "
                             "the classical methods are offered")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 opens the "
                             "server, which has no authentication, to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                        help=f"largest upload in MB of 10^6 bytes; larger ones are answered 413 "
                             f"(default: {DEFAULT_MAX_UPLOAD_MB:g})")
    parser.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE, metavar="PIXELS",
                        help=f"longest image side accepted; larger images are answered 413 "
                             f"(default: {DEFAULT_MAX_SIDE})")
    add_device(parser)
    parser.set_defaults(run=run)


def check_limits(args: argparse.Namespace) -> int:
    """The upload limit in bytes; bad limits or port are ValueErrors naming the flag."""
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if not args.max_upload_mb > 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb:g}")
    if args.max_side < 1:
        raise ValueError(f"--max-side must be at least 1, got {args.max_side}")
    return max(1, int(args.max_upload_mb * 1_000_000))


def run(args: argparse.Namespace) -> int:
    max_upload_bytes = check_limits(args)
    try:
        import uvicorn
    except ImportError as error:
        raise ImportError(f"pixelwise serve needs uvicorn ({error}): pip install 'pixelwise[serve]'") from error
    from pixelwise.engine.builders import resolve_device
    from pixelwise.serve import create_app, load_segmenters

    device = resolve_device(args.device or "auto")
    segmenters = load_segmenters(args.checkpoint, device)
    app = create_app(segmenters, max_upload_bytes=max_upload_bytes, max_side=args.max_side)
    where = f"[{args.host}]" if ":" in args.host else args.host
    print(f"pixelwise serve: {', '.join(segmenters)} on {device}; open http://{where}:{args.port}/ (Ctrl-C stops)")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"pixelwise serve: listening on {args.host}: anyone who reaches this port can use the server "
              "(it has no authentication)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
