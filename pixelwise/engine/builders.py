"""The config layer: turns a :class:`TrainConfig` into datasets, loaders, a model and a trainer.

Modules never read configs; this file is the only place that does. ``train(config)`` is the
Python equivalent of ``pixelwise train``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pixelwise.data.sampling import EpochSampler, SeededDataset, collate_skipping
from pixelwise.data.targets import collate
from pixelwise.data.transforms import eval_transforms, train_transforms
from pixelwise.engine.checkpoint import CheckpointError, load_checkpoint, load_model_state
from pixelwise.engine.config import TrainConfig
from pixelwise.engine.optim import build_optimizer, build_scheduler
from pixelwise.engine.tasks import build_task_dataset, check_model_task, score_key, task_evaluator
from pixelwise.engine.trainer import Trainer, trim_log
from pixelwise.files import remove_stale_temporaries
from pixelwise.losses import build_loss
from pixelwise.models import create_model
from pixelwise.weights import load_matching_state, read_torch_file

# Files a run directory holds; --overwrite removes exactly these and nothing else.
RUN_FILES = ("last.pt", "best.pt", "log.jsonl", "metrics.json", "curves.png", "figures.png", "config.yaml")
# A folder holds a run only once it holds one of these; the other files of a start that failed
# before its first checkpoint are replaced by the next start.
CHECKPOINT_FILES = ("last.pt", "best.pt")


class RunExistsError(FileExistsError):
    """The output directory already holds a run and neither resume nor overwrite was asked."""


DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available; a device this machine lacks, or a name torch does not
    know (``gpu``), is an error that says what to pass instead.

    >>> resolve_device("gpu")
    Traceback (most recent call last):
    ...
    ValueError: unknown device 'gpu'; use auto, cpu, cuda, cuda:N or mps (a GPU is 'cuda')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        hint = " (a GPU is 'cuda')" if name.lower().startswith("gpu") else ""
        raise ValueError(f"unknown device {name!r}; use {DEVICE_CHOICES}{hint}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} (Apple's GPU) is not available on this machine; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported; use {DEVICE_CHOICES}")
    return device


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with ``data_root``, ``init_from``, ``eval_crf`` and the ``*_root`` dataset arguments made
    absolute, so the recipe stored in each checkpoint still finds its files from any working directory."""
    def absolute(path: Any) -> Any:
        return str(Path(path).expanduser().absolute()) if isinstance(path, (str, Path)) else path

    dataset_kwargs = {key: absolute(value) if key.endswith("_root") else value
                      for key, value in config.dataset_kwargs.items()}
    return config.replace(data_root=absolute(config.data_root), init_from=absolute(config.init_from),
                          eval_crf=absolute(config.eval_crf), dataset_kwargs=dataset_kwargs)


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset]:
    train_tf = train_transforms(config.crop, scale=config.scale, hflip=config.hflip,
                                color=config.color, elastic=config.elastic)

    def build(split: str, transforms: Any) -> Dataset:
        return build_task_dataset(config.dataset, config.data_root, split, transforms, config.task,
                                  **config.dataset_kwargs)

    return build(config.train_split, train_tf), build(config.val_split, eval_transforms())


def distributed_rank_and_size(device: torch.device = torch.device("cpu")) -> tuple[int, int]:
    """Join the process group ``torchrun`` describes in the environment; (0, 1) without one.
    The backend follows the training device (NCCL for CUDA, gloo for CPUs), not the machine:
    ``--device cpu`` on a GPU machine still needs gloo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def prepare_run_dir(out_dir: str | Path, *, resume: bool, overwrite: bool) -> Path:
    """Refuse to mix two runs in one folder; ``overwrite`` deletes only a run's own files.

    A folder counts as a run only once it holds a checkpoint: what a start that failed before its
    first checkpoint left (``config.yaml``, an early ``log.jsonl``) is replaced without asking.
    """
    out_dir = Path(out_dir)
    existing = [name for name in RUN_FILES if (out_dir / name).exists()]
    checkpoints = [name for name in CHECKPOINT_FILES if name in existing]
    if checkpoints and not (resume or overwrite):
        how = f"pass --resume {out_dir / 'last.pt'} to continue it, " if "last.pt" in checkpoints else ""
        raise RunExistsError(f"{out_dir} already holds a run ({', '.join(existing)}); {how}"
                             "--overwrite to replace it, or choose another --out")
    if not resume and (overwrite or not checkpoints):
        for name in existing:
            (out_dir / name).unlink()
        shutil.rmtree(out_dir / "tensorboard", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def model_meta(config: TrainConfig, dataset: Any, in_channels: int = 3) -> dict[str, Any]:
    """What a checkpoint needs to rebuild and describe its model without the recipe."""
    palette = getattr(dataset, "palette", None)
    return {
        "task": config.task,
        # The countable and amorphous classes (instance and panoptic tasks; empty for semantic readers).
        "things": sorted(getattr(dataset, "things", ())),
        "stuffs": sorted(getattr(dataset, "stuffs", ())),
        # COCO's category id of each class (COCO panoptic readers), for the files predict writes.
        "category_ids": list(map(int, dataset.category_ids)) if getattr(dataset, "category_ids", None) else None,
        "model_name": config.model,
        # Pretrained backbone files only initialise a fresh run: the checkpoint holds the weights.
        "model_kwargs": {k: v for k, v in config.model_kwargs.items() if k != "backbone_weights"},
        "num_classes": len(dataset.classes),
        "in_channels": in_channels,
        "classes": list(dataset.classes),
        "palette": None if palette is None else np.asarray(palette).tolist(),
        "ignore_index": int(getattr(dataset, "ignore_index", 255)),
        "crf_rnn": dict(config.crf_rnn_kwargs) if config.crf_rnn else None,
        "dataset": config.dataset,
        "config": config.to_dict(),
    }


def check_resume_compatible(checkpoint: dict[str, Any], meta: dict[str, Any], source: str) -> None:
    """Resuming into a different model or label set is an error that lists every difference."""
    keys = ("task", "model_name", "model_kwargs", "num_classes", "in_channels", "classes", "crf_rnn")
    stored = {**checkpoint, "task": checkpoint.get("task", "semantic")}  # checkpoints before tasks: semantic
    differences = [f"{key}: checkpoint {stored.get(key)!r} vs now {meta[key]!r}"
                   for key in keys if stored.get(key) != meta[key]]
    if differences:
        raise CheckpointError(f"cannot resume from {source}: " + "; ".join(differences))


def distributed_cuda_index() -> int:
    """This process's GPU under torchrun: ``LOCAL_RANK``, which must name a visible device."""
    local_rank, visible = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local_rank >= visible:
        raise ValueError(f"torchrun process with LOCAL_RANK={local_rank} but only {visible} CUDA device(s) "
                         f"visible: start at most {visible} processes per node (--nproc_per_node), "
                         "or train on CPUs with --device cpu")
    return local_rank


def build_trainer(config: TrainConfig, *, resume: str | Path | None = None, overwrite: bool = False,
                  progress: bool = True) -> Trainer:
    """Everything ``pixelwise train`` builds, ready to ``fit()``."""
    config = with_absolute_paths(config)
    device = resolve_device(config.device)
    rank, world_size = distributed_rank_and_size(device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", distributed_cuda_index())
        torch.cuda.set_device(device)
    checkpoint = load_checkpoint(resume) if resume else None
    # A resumed run's weights come from its own checkpoint, whatever init_from says.
    init = load_init_weights(config.init_from) if checkpoint is None and config.init_from else None

    check_model_task(config.model, config.task)
    train_set, val_set = build_datasets(config)
    meta = model_meta(config, train_set)
    torch.manual_seed(config.seed)  # the initial weights
    model = build_model(meta, config.model_kwargs)
    report = initialise_from(model, init, source=str(config.init_from)) if init is not None else None
    # Only now that data, model and checkpoints have loaded may --overwrite remove an old run.
    out_dir = prepare_run_dir(config.out, resume=checkpoint is not None, overwrite=overwrite) if rank == 0 \
        else Path(config.out)
    if report and rank == 0:
        print(report, file=sys.stderr)
    model = model.to(device)
    model = _wrap_distributed(model, device, world_size, config.sync_bn)  # before the optimizer: SyncBN makes new params
    steps_per_epoch = _batches_per_epoch(len(train_set), config.batch_size, world_size)
    total_iters = config.epochs * steps_per_epoch
    optimizer = build_optimizer(model, config.optimizer, lr=config.lr, weight_decay=config.weight_decay,
                                momentum=config.momentum)
    scheduler = build_scheduler(optimizer, total_iters=total_iters, warmup_iters=config.warmup_iters,
                                power=config.poly_power, schedule=config.schedule, gamma=config.lr_gamma,
                                steps_per_epoch=steps_per_epoch)
    sampler = EpochSampler(len(train_set), seed=config.seed, rank=rank, world_size=world_size, drop_last=True)
    trainer = Trainer(
        model, build_loss(config.loss, ignore_index=meta["ignore_index"], class_weights=config.class_weights),
        optimizer, scheduler, _train_loader(train_set, sampler, config, world_size), sampler,
        val_loader=_val_loader(val_set, config, rank, world_size), out_dir=out_dir, epochs=config.epochs,
        num_classes=meta["num_classes"], device=device, class_names=meta["classes"], amp=config.amp,
        grad_clip=config.grad_clip, eval_every=config.eval_every, log_every=config.log_every,
        seed=config.seed, checkpoint_meta=meta, progress=progress, rank=rank,
        checkpoint_every=config.checkpoint_every, skip_nonfinite=config.skip_nonfinite,
        evaluator=task_evaluator(config.task, num_classes=meta["num_classes"], ignore_index=meta["ignore_index"],
                                 things=meta["things"], stuffs=meta["stuffs"]),
        score=score_key(config.task),
    )
    if checkpoint is not None:
        check_resume_compatible(checkpoint, meta, str(resume))
        trainer.load_state_dict(checkpoint, source=str(resume))
        if rank == 0:  # a killed run: its half-written file, and the log of steps about to be redone
            remove_stale_temporaries(out_dir)
            trim_log(out_dir / "log.jsonl", trainer.state.iteration)
    elif rank == 0:
        import yaml

        (out_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    if rank == 0:
        print(startup_summary(config, trainer, train_set, val_set, world_size), file=sys.stderr)
    return trainer


def startup_summary(config: TrainConfig, trainer: Trainer, train_set: Dataset, val_set: Dataset,
                    world_size: int) -> str:
    """What is about to run, on one screen: model, data, schedule, device, output folder."""
    from pixelwise.models import count_parameters

    model_args = ", ".join(f"{key}={value}" for key, value in config.model_kwargs.items())
    steps = len(trainer.train_loader)
    crop = config.crop if isinstance(config.crop, tuple) else (config.crop, config.crop)
    where = "built in" if config.data_root is None else config.data_root
    resumed = f", resuming at step {trainer.state.iteration}" if trainer.state.iteration else ""
    processes = f" x {world_size} processes" if world_size > 1 else ""
    lines = [
        f"train   {config.model} ({count_parameters(trainer.bare_model):,} parameters"
        + (f"; {model_args}" if model_args else "") + (", + CRF-RNN" if config.crf_rnn else "") + ")"
        + ("" if config.task == "semantic" else f", {config.task} task"),
        f"data    {config.dataset} ({where}): {config.train_split} {len(train_set)} / {config.val_split} "
        f"{len(val_set)} samples, {trainer.num_classes} classes, crop {crop[0]}x{crop[1]}",
        f"steps   {config.epochs} epochs x {steps} steps = {config.epochs * steps} (batch {config.batch_size}"
        f"{processes}); {config.optimizer} lr {config.lr:g}, {config.schedule} schedule",
        f"device  {trainer.device}, {torch.get_num_threads()} threads, torch {torch.__version__}"
        + (", AMP" if config.amp else ""),
        f"output  {Path(config.out).absolute()}{resumed}",
    ]
    return "\n".join(lines)


def train(config: TrainConfig, *, resume: str | Path | None = None, overwrite: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train as ``pixelwise train`` does; returns the run summary (also in ``metrics.json``) and, with
    ``config.figures``, draws ``RUN/figures.png`` from ``best.pt``."""
    trainer = build_trainer(config, resume=resume, overwrite=overwrite, progress=progress)
    summary = trainer.fit()
    if trainer.is_main and config.figures and (trainer.out_dir / "best.pt").exists():
        write_run_figure(trainer.out_dir, config.figures)
    return summary


def write_run_figure(run_dir: Path, count: int) -> Path | None:
    """``run_dir/figures.png``: ``count`` val samples through ``best.pt`` (:func:`dataset_figure`; panoptic
    runs: :func:`pixelwise.engine.panoptic.panoptic_dataset_figure`)."""
    from pixelwise.engine.checkpoint import checkpoint_palette
    from pixelwise.engine.inference import dataset_figure
    from pixelwise.engine.panoptic import panoptic_dataset_figure

    model, checkpoint = load_model(run_dir / "best.pt")
    recipe = TrainConfig.from_dict(checkpoint["config"])
    draw = {"semantic": dataset_figure, "panoptic": panoptic_dataset_figure}.get(recipe.task)
    if draw is None:  # instance runs: no figure yet
        return None
    dataset = build_task_dataset(recipe.dataset, recipe.data_root, recipe.val_split, None, recipe.task,
                                 **recipe.dataset_kwargs)
    figure = draw(model, dataset, count, palette=checkpoint_palette(checkpoint), class_names=checkpoint["classes"])
    figure.save(run_dir / "figures.png")
    return run_dir / "figures.png"


def load_init_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, description)`` of a warm-start file: a pixelwise checkpoint, or a plain state dict
    (``torch.save(model.state_dict(), FILE)``, also nested under ``"state_dict"`` or ``"model"`` as
    other libraries save them)."""
    from pixelwise.engine.checkpoint import FORMAT

    from pixelwise.models.interop import is_torchvision_state_dict, torchvision_to_pixelwise_keys

    state = read_torch_file(path, "init_from file")
    if isinstance(state, dict) and state.get("format") == FORMAT:
        return state["model"], f"a {state.get('model_name')} checkpoint"
    if isinstance(state, dict) and is_torchvision_state_dict(state):
        return torchvision_to_pixelwise_keys(state), "a torchvision segmentation model's state dict"
    for candidate in (state, *(state.get(key) for key in ("state_dict", "model") if isinstance(state, dict))):
        if isinstance(candidate, dict) and candidate and all(isinstance(v, torch.Tensor) for v in candidate.values()):
            return candidate, "a state dict"
    raise CheckpointError(f"init_from file {path} is neither a pixelwise checkpoint nor a state dict "
                          "(a mapping of parameter names to tensors)")


def initialise_from(model: nn.Module, init: tuple[dict[str, torch.Tensor], str], *, source: str) -> str:
    """Load the tensors of ``init`` (:func:`load_init_weights` of ``source``) that fit ``model`` (same name
    and shape); returns a short report of what was loaded, what is new and what was skipped."""
    state_dict, description = init
    result = load_matching_state(model, state_dict, source=source)
    lines = [f"init_from {source}: loaded {len(result['loaded'])} of {len(model.state_dict())} tensors "
             f"from {description}"]
    if result["new"]:
        lines.append(f"  new (own initialisation): {', '.join(result['new'])}")
    if result["skipped"]:
        lines.append(f"  skipped (shape differs): {'; '.join(result['skipped'])}")
    return "\n".join(lines)


def build_model(meta: dict[str, Any], model_kwargs: dict[str, Any]) -> nn.Module:
    """The model ``meta`` describes (name, classes, channels, optional CRF-RNN), freshly initialised; a model
    that takes ``things`` (instance and panoptic models) gets the dataset's, unless ``model_kwargs`` set them."""
    from pixelwise.models import model_info

    kwargs = dict(model_kwargs)
    if meta.get("things") and "things" in model_info(meta["model_name"])["default_kwargs"]:
        kwargs.setdefault("things", tuple(meta["things"]))
    model = create_model(meta["model_name"], num_classes=meta["num_classes"], in_channels=meta["in_channels"],
                         **kwargs)
    if meta.get("crf_rnn") is not None:
        from pixelwise.classical import with_crf_rnn

        model = with_crf_rnn(model, num_classes=meta["num_classes"], **meta["crf_rnn"])
    return model


def load_model(checkpoint_path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model a checkpoint describes, load its weights, return ``(model, checkpoint)``.

    Reads what :func:`read_model_checkpoint` reads: pixelwise checkpoints, exported safetensors
    files and torchvision segmentation models' state-dict files.
    """
    checkpoint = read_model_checkpoint(checkpoint_path)
    model = build_model(checkpoint, checkpoint["model_kwargs"])
    load_model_state(model, checkpoint["model"], source=str(checkpoint_path))
    return model.to(device).eval(), checkpoint


def read_model_checkpoint(checkpoint_path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a file that holds a model: a pixelwise checkpoint, a safetensors file
    ``pixelwise export`` wrote, or a torchvision segmentation model's state dict (``fcn_resnet50``,
    ``deeplabv3_*``, ``lraspp_*``; :mod:`pixelwise.models.interop`), whose architecture is recognised
    from its keys and, with 21 classes, given VOC's class names, as torchvision's weights use them.
    """
    from pixelwise.engine.checkpoint import FORMAT, check_format
    from pixelwise.models.interop import (
        is_torchvision_state_dict,
        torchvision_model_meta,
        torchvision_to_pixelwise_keys,
    )

    state = read_torch_file(checkpoint_path, "checkpoint")
    if isinstance(state, dict) and state.get("format") != FORMAT and is_torchvision_state_dict(state):
        meta = torchvision_checkpoint_meta(torchvision_model_meta(state))
        return {**meta, "model": torchvision_to_pixelwise_keys(state)}
    return check_format(state, checkpoint_path)


def torchvision_checkpoint_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """What ``load_model`` returns beside a converted torchvision model, in a checkpoint's keys."""
    from pixelwise.data.datasets.voc import VOC_CLASSES

    classes = list(VOC_CLASSES) if meta["num_classes"] == len(VOC_CLASSES) else \
        [f"class {index}" for index in range(meta["num_classes"])]
    return {**meta, "in_channels": 3, "classes": classes, "palette": None, "ignore_index": 255, "crf_rnn": None,
            "dataset": "voc" if meta["num_classes"] == len(VOC_CLASSES) else None, "config": {}}


def _batches_per_epoch(size: int, batch_size: int, world_size: int) -> int:
    per_rank = (size - size % world_size) // world_size
    if per_rank < batch_size:
        raise ValueError(f"the training split has {size} samples ({per_rank} per process), fewer than "
                         f"batch_size={batch_size}; lower --batch-size or add data")
    return per_rank // batch_size


def _train_loader(dataset: Dataset, sampler: EpochSampler, config: TrainConfig, world_size: int) -> DataLoader:
    _batches_per_epoch(len(dataset), config.batch_size, world_size)
    return DataLoader(
        SeededDataset(dataset, seed=config.seed, on_bad_sample="replace" if config.skip_bad_samples else "raise"),
        batch_size=config.batch_size, sampler=sampler, collate_fn=_collate(config),
        drop_last=True, num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
        # A private generator: creating the iterator must not consume the global RNG, or a
        # resumed run would draw different dropout masks than an uninterrupted one.
        generator=torch.Generator().manual_seed(config.seed), pin_memory=torch.cuda.is_available(),
    )


def _val_loader(dataset: Dataset, config: TrainConfig, rank: int, world_size: int) -> DataLoader:
    # Batch size 1: validation images keep their full, possibly different, sizes.
    sampler = EpochSampler(len(dataset), shuffle=False, rank=rank, world_size=world_size)
    return DataLoader(SeededDataset(dataset, seed=config.seed, on_bad_sample="drop" if config.skip_bad_samples else "raise"),
                      batch_size=1, sampler=sampler, num_workers=config.num_workers, generator=torch.Generator(),
                      collate_fn=_collate(config))


def _collate(config: TrainConfig) -> Any:
    """Batches that leave out unreadable samples under ``skip_bad_samples``; else torch's default, with
    instance targets kept as per-image lists (:func:`pixelwise.data.targets.collate`)."""
    return collate_skipping if config.skip_bad_samples else collate


def _wrap_distributed(model: nn.Module, device: torch.device, world_size: int, sync_bn: bool | None) -> nn.Module:
    """DDP for several processes, with batch-norm statistics over all of them (SyncBatchNorm) when
    ``sync_bn`` asks or, unset, on GPUs. One process is never wrapped nor converted."""
    if world_size == 1:
        return model
    if device.type != "cuda":  # gloo on CPU: PyTorch's SyncBatchNorm is CUDA-only
        if sync_bn:
            raise ValueError("--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only); "
                             "on CPUs each process keeps its own batch-norm statistics: drop --sync-bn")
        return nn.parallel.DistributedDataParallel(model)
    if sync_bn is not False:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
