"""ONNX export with a parity report, and exported graphs run by onnxruntime like a torch model.

:func:`export_onnx` writes a model as an ONNX graph whose input is the model's own (normalised
float ``N x C x H x W``, named ``input``) and whose output is its logits (``N x K x H x W``,
named ``logits``), with the checkpoint's description (name, classes, palette, ...) in the
file's ``metadata_props``. Height and width are dynamic unless ``input_size`` fixes them; the
batch is 1 unless ``dynamic_batch``. Every export is checked before it is written: onnxruntime
and PyTorch run the same inputs of several sizes, and :func:`parity_report` compares them (max
absolute difference, argmax agreement, mIoU of the ONNX labels against the PyTorch labels).

Two exporters: TorchScript tracing (``torch.onnx.export(dynamo=False)``, deprecated in torch
but 5-20x faster) and ``torch.export`` (``dynamo=True``), which exports more models with
dynamic sizes (SegNet's unpooling sizes, SpineNet's resampling). ``exporter="auto"`` tries
TorchScript first and takes ``torch.export`` whenever TorchScript fails or its graph disagrees.
:data:`FIXED_SIZE_ONLY` lists the models neither exports with dynamic sizes, and why.

:func:`load_onnx_model` opens an exported file for ``pixelwise predict --backend onnxruntime``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pixelwise.engine.checkpoint import CheckpointError
from pixelwise.files import atomic_write

ONNX_FORMAT = "pixelwise-onnx/1"
DEFAULT_OPSET = 18  # torch.export's own opset; TorchScript reaches 20
EXPORTERS = ("auto", "torchscript", "dynamo")
# Parity inputs of a dynamic export: a multiple of every stride, odd sides, and a mix.
PARITY_SIZES = ((64, 64), (37, 53), (96, 80))
# The traced input: odd sides, so that every model's pad-to-a-multiple branch is recorded
# (a side that is already a multiple traces the branch that pads nothing).
TRACE_SIZE = (45, 59)
MIN_AGREEMENT = 0.999
LOGIT_TOLERANCE = 1e-4  # of max(1, max |logit|): float32 rounding grows with the logits
INPUT_NAME, OUTPUT_NAME = "input", "logits"
AXIS_NAMES = {0: "batch", 2: "height", 3: "width"}

# Registered models that export only at a fixed size (``input_size``), and why.
FIXED_SIZE_ONLY = {
    "unet_original": "its forward pads each side to the next valid tile side with a Python loop over "
                     "the side length (valid_input_size), which a graph cannot record",
}




def _not_exportable() -> dict[str, str]:
    """Registered models no ONNX graph expresses, and why (read from the model files)."""
    from pixelwise.models.crf_rnn_fcn import EXPORT_LIMITATION

    return {"crf_rnn_fcn8s": EXPORT_LIMITATION + "; export fcn8s from its model.* weights instead"}


NOT_EXPORTABLE = _not_exportable()


def fixed_size_table_markdown() -> str:
    """The README's table of :data:`FIXED_SIZE_ONLY` (``tests/export`` checks it is current)."""
    rows = [f"| `{name}` | fixed size only: {reason} |" for name, reason in sorted(FIXED_SIZE_ONLY.items())]
    rows += [f"| `{name}` | not at all: {reason} |" for name, reason in sorted(NOT_EXPORTABLE.items())]
    return "\n".join(["| model | why only a fixed-size export (`--input-size HxW`), or none |", "|---|---|", *rows])


class ExportError(ValueError):
    """No exporter produced a graph that agrees with the model; the parity report says where."""


def export_onnx(source: dict[str, Any] | str | Path | nn.Module, path: str | Path, *, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False, input_size: tuple[int, int] | None = None,
                sizes: Sequence[tuple[int, int]] | None = None, exporter: str = "auto",
                drop_crf_rnn: bool = False, report_path: str | Path | None = None,
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``source`` to ``path``: a checkpoint dict, a file :func:`~pixelwise.engine.builders.read_model_checkpoint`
    reads, or a model (described by ``meta``: the checkpoint keys ``model_name``, ``classes``, ...).

    Height and width are dynamic, checked at ``sizes`` (default :data:`PARITY_SIZES`), unless
    ``input_size = (H, W)`` fixes them (checked at that size); ``dynamic_batch`` makes the batch
    dynamic too (checked with 2 images). Returns the parity report, also written as JSON to
    ``report_path`` (default ``PATH.parity.json``). Raises :class:`ExportError`, writing the
    report but no model, when no exporter's graph agrees with the model.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    path = Path(path)
    report_path = Path(report_path) if report_path is not None else parity_path(path)
    model, meta = _model_and_meta(source, drop_crf_rnn, meta)
    if meta["model_name"] in NOT_EXPORTABLE:
        raise ExportError(f"{meta['model_name']} cannot be exported to ONNX: {NOT_EXPORTABLE[meta['model_name']]}")
    if input_size is None and meta["model_name"] in FIXED_SIZE_ONLY:
        raise ValueError(f"{meta['model_name']} cannot be exported with dynamic height and width: "
                         f"{FIXED_SIZE_ONLY[meta['model_name']]}; pass --input-size HxW (input_size=(H, W)) "
                         "for a fixed-size export")
    batch = 2 if dynamic_batch else 1  # torch.export makes a traced batch of 1 static
    trace = torch.randn(batch, meta["in_channels"], *(input_size or TRACE_SIZE),
                        generator=torch.Generator().manual_seed(0))
    sizes = [tuple(input_size)] if input_size else [tuple(size) for size in (sizes or PARITY_SIZES)]
    axes = ([0] if dynamic_batch else []) + ([] if input_size else [2, 3])
    onnx = _import_onnx()
    candidates = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    if exporter == "auto" and opset > 20:
        candidates = ["dynamo"]  # beyond the TorchScript exporter's opsets
    attempts = []
    for name in candidates:
        try:
            proto = _export(model, trace, name, opset, axes)
            _declare_output(proto, meta["num_classes"], trace.shape, axes)
            _describe(proto, meta, name, axes)
            onnx.checker.check_model(proto, full_check=True)
        except Exception as error:  # an exporter that cannot trace this model: try the next
            attempts.append({"exporter": name, "error": _first_line(error)})
            continue
        report = parity_report(model, proto.SerializeToString(), sizes, batch=batch)
        report.update(exporter=name, opset=opset, dynamic_axes=[AXIS_NAMES[axis] for axis in axes],
                      input=_signature(proto.graph.input[0]), output=_signature(proto.graph.output[0]))
        attempts.append({"exporter": name, "passed": report["passed"]})
        if not report["passed"]:
            attempts[-1]["failure"] = _failure(report)
        if report["passed"]:
            break
    else:
        report = report if any("passed" in attempt for attempt in attempts) else {"passed": False}
    report = {"file": str(path), "model_name": meta["model_name"], **report, "attempts": attempts,
              "versions": _versions()}
    _write_json(report_path, report)
    if not report["passed"]:
        raise ExportError(f"could not export {meta['model_name']} to {path}: "
                          + "; ".join(_attempt_text(attempt) for attempt in attempts)
                          + f" (parity report: {report_path}; nothing else written)")
    atomic_write(path, lambda file: file.write(proto.SerializeToString()), "ONNX file")
    return report


def parity_path(path: str | Path) -> Path:
    """Where :func:`export_onnx` writes the report of ``path``: ``model.onnx`` -> ``model.onnx.parity.json``."""
    return Path(f"{path}.parity.json")


def parity_report(model: nn.Module, onnx_model: bytes | str | Path, sizes: Sequence[tuple[int, int]], *,
                  batch: int = 1, seed: int = 0, threads: int | None = None) -> dict[str, Any]:
    """Run ``model`` and the ONNX graph (onnxruntime, CPU) on the same random normalised inputs.

    Per size and over all: ``max_abs_diff`` of the logits, ``max_abs_logit``, ``argmax_agreement``
    (the fraction of pixels with the same label) and ``miou`` (of the ONNX labels against the
    PyTorch labels). ``passed``: every size ran, agreement >= :data:`MIN_AGREEMENT` and
    ``max_abs_diff <= LOGIT_TOLERANCE * max(1, max_abs_logit)`` at each size.
    """
    from pixelwise.metrics import confusion_matrix, scores_from_confusion_matrix

    session = _session(onnx_model, threads)
    in_channels = session.get_inputs()[0].shape[1]
    generator = torch.Generator().manual_seed(seed)
    model = model.eval()
    rows, matrix = [], None
    for height, width in sizes:
        inputs = torch.randn(batch, in_channels, height, width, generator=generator)
        with torch.no_grad():
            expected = model(inputs).float().numpy()
        row: dict[str, Any] = {"size": [height, width]}
        try:
            actual = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})[0]
        except Exception as error:
            rows.append({**row, "error": _first_line(error), "passed": False})
            continue
        if actual.shape != expected.shape:
            rows.append({**row, "error": f"output shape {list(actual.shape)}, PyTorch's {list(expected.shape)}",
                         "passed": False})
            continue
        labels, reference = actual.argmax(1), expected.argmax(1)
        counts = confusion_matrix(torch.from_numpy(labels), torch.from_numpy(reference), expected.shape[1],
                                  ignore_index=None)
        matrix = counts if matrix is None else matrix + counts
        diff, scale = float(np.abs(actual - expected).max()), float(np.abs(expected).max())
        agreement = float((labels == reference).mean())
        row.update(max_abs_diff=diff, max_abs_logit=scale, argmax_agreement=agreement,
                   miou=scores_from_confusion_matrix(counts)["miou"],
                   passed=agreement >= MIN_AGREEMENT and diff <= LOGIT_TOLERANCE * max(1.0, scale))
        rows.append(row)
    measured = [row for row in rows if "error" not in row]
    summary: dict[str, Any] = {"passed": bool(rows) and all(row["passed"] for row in rows), "batch": batch}
    if measured:
        hits = int(matrix.diagonal().sum())
        summary.update(max_abs_diff=max(row["max_abs_diff"] for row in measured),
                       max_abs_logit=max(row["max_abs_logit"] for row in measured),
                       argmax_agreement=hits / int(matrix.sum()), miou=scores_from_confusion_matrix(matrix)["miou"])
    summary.update(criteria={"min_argmax_agreement": MIN_AGREEMENT,
                             "max_abs_diff": f"{LOGIT_TOLERANCE:g} * max(1, max_abs_logit)"}, sizes=rows)
    return summary


def format_report(report: dict[str, Any]) -> str:
    """The parity report as the few lines ``pixelwise export`` prints."""
    lines = [f"parity of {report['file']} (onnxruntime) against PyTorch, batch {report.get('batch', 1)}, "
             f"{report.get('exporter', 'no')} exporter, opset {report.get('opset', '-')}:",
             "  size      max |diff|  max |logit|  argmax agreement  mIoU"]
    for row in report.get("sizes", []):
        size = "x".join(map(str, row["size"]))
        if "error" in row:
            lines.append(f"  {size:<9} failed: {row['error']}")
        else:
            lines.append(f"  {size:<9} {row['max_abs_diff']:<11.2g} {row['max_abs_logit']:<12.3g} "
                         f"{100 * row['argmax_agreement']:>15.3f}%  {row['miou']:.4f}")
    dynamic = ", ".join(report.get("dynamic_axes", [])) or "none"
    verdict = "passed" if report["passed"] else "FAILED"
    lines.append(f"  {verdict}: argmax agreement >= {100 * MIN_AGREEMENT:g}% and max |diff| <= "
                 f"{LOGIT_TOLERANCE:g} x max(1, max |logit|) at every size; dynamic axes: {dynamic}")
    return "\n".join(lines)


# ---------------------------------------------------------------- running an exported file


class OnnxModel(nn.Module):
    """An exported graph in onnxruntime (CPU), used like the torch model it came from.

    ``model(x)``: normalised float ``N x C x H x W`` -> float logits ``N x K x H x W`` (on ``x``'s
    device). A graph with a fixed batch of 1 runs a larger batch image by image; a fixed-size
    graph refuses other sizes with an error naming the file and its size. ``checkpoint`` holds
    the file's description: ``model_name``, ``num_classes``, ``in_channels``, ``classes``,
    ``palette``, ``ignore_index`` (and ``model_kwargs``, ``dataset``).
    """

    def __init__(self, path: str | Path, session: Any, checkpoint: dict[str, Any]) -> None:
        super().__init__()
        self.path, self.session, self.checkpoint = Path(path), session, checkpoint
        self.num_classes, self.in_channels = checkpoint["num_classes"], checkpoint["in_channels"]
        self.input_name = session.get_inputs()[0].name
        self.input_shape = session.get_inputs()[0].shape  # ints where fixed, names where dynamic
        super().train(False)

    def train(self, mode: bool = True) -> OnnxModel:
        if mode:
            raise RuntimeError(f"{self.path} is an ONNX graph for inference; it cannot be trained")
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self.path} expects input N x {self.in_channels} x H x W, got {tuple(x.shape)}")
        fixed = [(axis, side) for axis, side in zip((2, 3), self.input_shape[2:]) if isinstance(side, int)]
        if any(x.shape[axis] != side for axis, side in fixed):
            raise ValueError(f"{self.path} is a fixed-size export for {self.input_shape[2]}x{self.input_shape[3]} "
                             f"inputs, got {x.shape[2]}x{x.shape[3]}: predict tile by tile at that size, or "
                             "export with dynamic height and width")
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        parts = [array] if not isinstance(self.input_shape[0], int) else np.split(array, len(array))
        outputs = [self.session.run(None, {self.input_name: part})[0] for part in parts]
        return torch.from_numpy(np.concatenate(outputs)).to(x.device)

    def extra_repr(self) -> str:
        return f"{self.path}, {self.checkpoint['model_name']}, input {self.input_shape}"


def load_onnx_model(path: str | Path, *, threads: int | None = None) -> OnnxModel:
    """The :class:`OnnxModel` of a file :func:`export_onnx` wrote (needs onnxruntime only);
    ``threads``: onnxruntime's intra-op threads (default: its own choice, one per core). A file
    that is not ONNX, or an ONNX graph pixelwise did not export, is a :class:`CheckpointError`
    naming it."""
    path = _existing(path)
    try:
        session = _session(path, threads)
    except ImportError:
        raise
    except Exception as error:
        raise CheckpointError(f"cannot read {path} as an ONNX model onnxruntime runs (damaged, another kind "
                              f"of file, or operators it lacks): {_first_line(error)}") from error
    return OnnxModel(path, session, _metadata(session.get_modelmeta().custom_metadata_map, path))


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint-like description :func:`export_onnx` stored in ``path``'s ``metadata_props``."""
    onnx = _import_onnx()
    path = _existing(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise CheckpointError(f"cannot read {path} as an ONNX model (damaged, or another kind of file): "
                              f"{_first_line(error)}") from error
    return _metadata({prop.key: prop.value for prop in proto.metadata_props}, path)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist" if not path.exists() else
                                f"ONNX model {path} is a folder, not a file")
    return path


def _metadata(props: dict[str, str], path: Path) -> dict[str, Any]:
    if props.get("pixelwise_format") != ONNX_FORMAT:
        raise CheckpointError(f"{path} is an ONNX model that pixelwise did not export (no {ONNX_FORMAT!r} "
                              "metadata): export it with `pixelwise export --output FILE.onnx`")
    try:
        return {key: json.loads(props[key]) for key in ("model_name", "model_kwargs", "num_classes", "in_channels",
                                                        "classes", "palette", "ignore_index", "dataset")}
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: the pixelwise metadata is incomplete or damaged ({error})") from error


# ---------------------------------------------------------------- internals


def _model_and_meta(source: dict[str, Any] | str | Path | nn.Module, drop_crf_rnn: bool,
                    meta: dict[str, Any] | None) -> tuple[nn.Module, dict[str, Any]]:
    from pixelwise.engine.builders import build_model
    from pixelwise.engine.checkpoint import load_model_state

    if isinstance(source, nn.Module):
        classes = int(source.num_classes)
        return source.eval(), {"model_name": type(source).__name__, "model_kwargs": {}, "num_classes": classes,
                               "in_channels": int(getattr(source, "in_channels", 3)), "dataset": None,
                               "classes": [f"class {index}" for index in range(classes)], "palette": None,
                               "ignore_index": 255, **(meta or {})}
    if isinstance(source, (str, Path)):
        from pixelwise.engine.builders import read_model_checkpoint

        source = read_model_checkpoint(source)
    meta = dict(source)
    if meta.get("crf_rnn") is not None:
        if not drop_crf_rnn:
            raise ValueError(f"this {meta['model_name']} checkpoint ends in a CRF-RNN layer, which cannot be "
                             "exported: its permutohedral lattice has as many vertices as the image has distinct "
                             "colours and positions (data-dependent shapes); pass --drop-crf-rnn "
                             "(drop_crf_rnn=True) to export the network without it")
        meta["crf_rnn"] = None
    model = build_model({**meta, "crf_rnn": None}, meta["model_kwargs"])
    state = source["model"]
    if source.get("crf_rnn") is not None:  # CRFRNNModel keeps the network under "model."
        state = {key[len("model."):]: value for key, value in state.items() if key.startswith("model.")}
    load_model_state(model, state, source=f"the {meta['model_name']} checkpoint")
    return model.eval(), meta


def _export(model: nn.Module, trace: torch.Tensor, exporter: str, opset: int, axes: list[int]) -> Any:
    """The ONNX ``ModelProto`` of ``model`` traced on ``trace``, ``axes`` of input and output dynamic."""
    onnx = _import_onnx()
    names = {"input_names": [INPUT_NAME], "output_names": [OUTPUT_NAME], "opset_version": opset}
    with _quiet(), torch.no_grad():
        if exporter == "torchscript":
            buffer = io.BytesIO()
            dynamic = {name: {axis: AXIS_NAMES[axis] for axis in axes} for name in (INPUT_NAME, OUTPUT_NAME)}
            torch.onnx.export(model, (trace,), buffer, dynamo=False, dynamic_axes=dynamic or None,
                              do_constant_folding=True, **names)
            return onnx.load_from_string(buffer.getvalue())
        shapes = ({axis: torch.export.Dim.DYNAMIC for axis in axes},) if axes else None
        program = torch.onnx.export(model, (trace,), dynamo=True, dynamic_shapes=shapes, verbose=False,
                                    external_data=False, **names)
        proto = program.model_proto
    _name_dynamic_axes(proto, axes)
    return proto


def _name_dynamic_axes(proto: Any, axes: list[int]) -> None:
    """torch.export names dynamic sizes ``s53``, ``s77``: call them ``batch``, ``height``, ``width``."""
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    renamed = {dims[axis].dim_param: AXIS_NAMES[axis] for axis in axes if dims[axis].dim_param}
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renamed:
                dim.dim_param = renamed[dim.dim_param]


def _declare_output(proto: Any, num_classes: int, shape: Sequence[int], axes: list[int]) -> None:
    """The output's shape as it is, ``batch|1 x K x height|H x width|W``: the TorchScript exporter
    leaves the sizes it cannot infer through the final crop as names like ``Slicelogits_dim_1``."""
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    for axis, dim in enumerate(dims):
        if axis in axes:
            dim.dim_param = AXIS_NAMES[axis]
        else:
            dim.dim_value = num_classes if axis == 1 else int(shape[axis])


def _describe(proto: Any, meta: dict[str, Any], exporter: str, axes: list[int]) -> None:
    """The checkpoint's description in ``metadata_props`` (JSON values), for predicting from the file alone."""
    import onnx

    from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    palette = meta.get("palette")
    props = {
        "pixelwise_format": ONNX_FORMAT,
        **{key: json.dumps(meta.get(key)) for key in ("model_name", "model_kwargs", "num_classes", "in_channels",
                                                      "classes", "ignore_index", "dataset")},
        "palette": json.dumps(None if palette is None else np.asarray(palette).tolist()),
        "input_normalisation": json.dumps({"scale": 1 / 255, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}),
        "dynamic_axes": json.dumps([AXIS_NAMES[axis] for axis in axes]),
        "exporter": exporter,
    }
    onnx.helper.set_model_props(proto, props)
    proto.producer_name, proto.doc_string = "pixelwise", f"{meta['model_name']}: normalised image -> logits"


def _session(onnx_model: bytes | str | Path, threads: int | None) -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError("running ONNX models needs onnxruntime: pip install 'pixelwise[onnx]'") from error
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # errors come back as exceptions; no log lines on stderr
    if threads:
        options.intra_op_num_threads = threads
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as error:
        raise ImportError("ONNX export needs onnx and onnxruntime: pip install 'pixelwise[onnx]'") from error
    return onnx


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters: the TorchScript one dumps its whole graph on file descriptor 1 when it
    fails, torch.export's ONNX libraries log warnings about attributes, both warn about tracing."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx", "torch.export")]
    levels = [logger.level for logger in loggers]
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _signature(value: Any) -> str:
    dims = [dim.dim_param or str(dim.dim_value) for dim in value.type.tensor_type.shape.dim]
    return f"{value.name}: {' x '.join(dims)} float32"


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _failure(report: dict[str, Any]) -> str:
    """Where a graph first disagrees with its model: ``SIZE: what went wrong``."""
    row = next(row for row in report["sizes"] if not row["passed"]) if report["sizes"] else {"size": []}
    what = row.get("error") or (f"argmax agreement {100 * row['argmax_agreement']:.3f}%, max |diff| "
                                f"{row['max_abs_diff']:.2g} (max |logit| {row['max_abs_logit']:.3g})")
    return f"{'x'.join(map(str, row['size']))}: {what}"


def _attempt_text(attempt: dict[str, Any]) -> str:
    return f"{attempt['exporter']}: {attempt.get('error') or 'the graph fails at ' + attempt['failure']}"


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    text = json.dumps(data, indent=2) + "\n"
    return atomic_write(path, lambda file: file.write(text.encode()), "parity report")
