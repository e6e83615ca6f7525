"""Fixtures of the ``pixelwise serve`` tests: a tiny trained checkpoint, its segmenters, the app, a client."""

from __future__ import annotations

import pytest

from tests.serve.helpers import make_client


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A checkpoint of an untrained ``fcn8s_tiny`` (seeded) with the synthetic scenes' 7 classes
    and palette, written as the trainer writes one (:func:`pixelwise.engine.save_checkpoint`)."""
    import torch

    from pixelwise.data.scenes import CLASSES, PALETTE
    from pixelwise.engine import save_checkpoint
    from pixelwise.models import create_model

    torch.manual_seed(0)
    model = create_model("fcn8s_tiny", num_classes=len(CLASSES))
    meta = {"model_name": "fcn8s_tiny", "model_kwargs": {}, "num_classes": len(CLASSES), "in_channels": 3,
            "classes": list(CLASSES), "palette": PALETTE.tolist(), "ignore_index": 255, "crf_rnn": None,
            "dataset": "synthetic", "config": {}}
    return save_checkpoint({**meta, "model": model.state_dict()}, tmp_path_factory.mktemp("serve_run") / "best.pt")


@pytest.fixture(scope="session")
def segmenters(checkpoint):
    from pixelwise.serve import load_segmenters

    return load_segmenters([checkpoint])


@pytest.fixture(scope="session")
def app(segmenters):
    from pixelwise.serve import create_app

    return create_app(segmenters)


@pytest.fixture
def client(app):
    with make_client(app) as client:
        yield client
