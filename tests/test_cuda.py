"""The CUDA path: every GPU-capable piece gives on the GPU what it gives on the CPU.

Skipped without a GPU (CI has none); run on a GPU machine with ``python -m pytest tests/test_cuda.py``.
TF32 is switched off so that float32 convolutions and matrix products are compared at float32
precision; the remaining differences are summation order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pixelwise.classical import CRFRNN, dense_crf, grid_crf, kmeans_xyrgb
from pixelwise.classical.permutohedral import PermutohedralLattice
from pixelwise.data.scenes import generate_scene
from pixelwise.losses import build_loss
from pixelwise.metrics import ConfusionMatrix
from pixelwise.models import create_model, list_models, model_info

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_float32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def noisy_scene(seed: int = 0, size: tuple[int, int] = (96, 128), classes: int = 7):
    scene = generate_scene(seed, size=size)
    generator = torch.Generator().manual_seed(seed)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(scene.semantic).long(), classes).permute(2, 0, 1).float()
    probs = torch.softmax(2 * onehot + 1.5 * torch.randn(onehot.shape, generator=generator), 0)
    return probs, torch.from_numpy(scene.image), scene


def test_lattice_filter_on_the_gpu():
    features = torch.rand(5000, 5, generator=torch.Generator().manual_seed(0)) * 6
    values = torch.rand(5000, 4, generator=torch.Generator().manual_seed(1))
    cpu = PermutohedralLattice(features, normalization="symmetric").filter(values)
    gpu = PermutohedralLattice(features.to(CUDA), normalization="symmetric").filter(values.to(CUDA))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-6)


def test_dense_and_grid_crf_on_the_gpu():
    probs, image, _ = noisy_scene()
    for crf in (dense_crf, grid_crf):
        cpu = crf(probs, image)
        gpu = crf(probs.to(CUDA), image.to(CUDA))
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)
        assert (gpu.argmax(0).cpu() == cpu.argmax(0)).float().mean() > 0.999


def test_crf_rnn_forward_and_backward_on_the_gpu():
    probs, image, _ = noisy_scene(size=(40, 56))
    logits = probs.log()[None].repeat(2, 1, 1, 1)
    images = image.permute(2, 0, 1)[None].repeat(2, 1, 1, 1)
    results = []
    for device in ("cpu", CUDA):
        crf = CRFRNN(7, iterations=3).to(device)
        x = logits.to(device).detach().requires_grad_()
        out = crf(x, images.to(device))
        out.square().mean().backward()
        results.append([out.detach().cpu(), x.grad.cpu(), crf.compatibility.grad.cpu(), crf.kernel_weights.grad.cpu()])
    for cpu, gpu in zip(*results):
        torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-5)


def test_kmeans_on_the_gpu_is_a_kmeans_solution():
    image = torch.from_numpy(generate_scene(3, size=(64, 80)).image).permute(2, 0, 1)
    labels = kmeans_xyrgb(image.to(CUDA), 6, seed=0)
    assert labels.shape == (64, 80) and len(torch.unique(labels)) == 6
    # The same seed on the same device gives the same result.
    assert torch.equal(torch.as_tensor(labels), torch.as_tensor(kmeans_xyrgb(image.to(CUDA), 6, seed=0)))


def test_metrics_and_losses_on_the_gpu():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 33, 47, generator=generator)
    target = torch.randint(0, 5, (2, 33, 47), generator=generator)
    target[:, :3] = 255
    for spec in ("ce", "dice", "focal", "0.5*ce+dice"):
        loss = build_loss(spec)
        torch.testing.assert_close(loss(logits.to(CUDA), target.to(CUDA)).cpu(), loss(logits, target), rtol=1e-5, atol=1e-6)
    matrices = []
    for device in ("cpu", CUDA):
        matrix = ConfusionMatrix(5)
        matrix.update(logits.argmax(1).to(device), target.to(device))
        matrices.append(matrix.compute())
    assert matrices[0]["miou"] == pytest.approx(matrices[1]["miou"], abs=1e-12)


@pytest.mark.parametrize("name", sorted(name for name in list_models() if model_info(name)["task"] == "semantic"))
def test_models_on_the_gpu_match_the_cpu(name):
    kwargs = model_info(name)["test_kwargs"]
    torch.manual_seed(0)
    model = create_model(name, 3, **kwargs).eval()
    x = torch.randn(1, 3, 45, 61, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to(CUDA)(x.to(CUDA))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-4)


def test_training_with_amp_on_the_gpu(tmp_path):
    from pixelwise.engine import TrainConfig, evaluate, load_model, train
    from pixelwise.engine.builders import build_datasets

    config = TrainConfig(model="unet", model_kwargs={"base_width": 8}, dataset="synthetic",
                         dataset_kwargs={"size": 64, "num_samples": 64}, epochs=8, batch_size=8, crop=64,
                         lr=3e-3, amp=True, device="cuda", out=str(tmp_path / "run"), seed=0)
    summary = train(config, progress=False)
    assert np.isfinite(summary["best_miou"]) and summary["best_miou"] > 0.2
    # The checkpoint reloads on either device and scores the same there.
    _, val_set = build_datasets(config)
    scores = {}
    for device, amp in (("cpu", False), ("cuda", False), ("cuda", True)):
        model, _ = load_model(tmp_path / "run" / "last.pt", device=device)
        loader = torch.utils.data.DataLoader(val_set, batch_size=1)
        scores[device, amp] = evaluate(model, loader, num_classes=7, device=device, amp=amp, progress=False)["miou"]
    assert scores["cpu", False] == pytest.approx(scores["cuda", False], abs=1e-3)
    assert scores["cuda", True] == pytest.approx(summary["last"]["miou"], abs=1e-3)


def test_crf_rnn_training_on_the_gpu(tmp_path):
    from pixelwise.engine import TrainConfig, train

    config = TrainConfig(model="fcn8s_tiny", dataset="synthetic", dataset_kwargs={"size": 48, "num_samples": 16},
                         epochs=1, batch_size=8, crop=48, device="cuda", crf_rnn=True,
                         crf_rnn_kwargs={"iterations": 2}, out=str(tmp_path / "run"))
    assert np.isfinite(train(config, progress=False)["last"]["miou"])
