"""CRF-as-RNN (pixelwise/classical/crf_rnn.py): equality with dense_crf at Potts init, finite-difference
gradients, gradients into the unary network, the output convention and the errors."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from pixelwise.classical import CRFRNN, CRFRNNModel, dense_crf, with_crf_rnn
from pixelwise.data.scenes import generate_scene
from pixelwise.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from pixelwise.models import create_model

DENSE_PARAMS = {"pos_xy_std": 3.0, "pos_w": 3.0, "bi_xy_std": 80.0, "bi_rgb_std": 13.0, "bi_w": 10.0}




def scene_batch(size: tuple[int, int] = (24, 32), seeds: tuple[int, ...] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy logits ``N x 7 x H x W`` and uint8 images ``N x 3 x H x W`` from generated scenes."""
    generator = torch.Generator().manual_seed(0)
    logits, images = [], []
    for seed in seeds:
        scene = generate_scene(seed, size=size)
        onehot = torch.nn.functional.one_hot(torch.from_numpy(scene.semantic).long(), 7).permute(2, 0, 1).float()
        logits.append(2 * onehot + 1.5 * torch.randn(onehot.shape, generator=generator))
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1))
    return torch.stack(logits), torch.stack(images)


def test_potts_init_equals_dense_crf() -> None:
    logits, images = scene_batch()
    crf = CRFRNN(7, iterations=5, **DENSE_PARAMS)
    refined = torch.softmax(crf(logits, images), 1)
    for item, image, out in zip(logits, images, refined):
        expected = dense_crf(torch.softmax(item, 0), image.permute(1, 2, 0), clip=1e-30, **DENSE_PARAMS)
        assert torch.allclose(out, expected, atol=2e-5)


def test_defaults_are_the_released_model() -> None:
    crf = CRFRNN(21)
    assert crf.kernel_options == {"pos_xy_std": 3.0, "bi_xy_std": 160.0, "bi_rgb_std": 3.0}
    assert torch.equal(crf.kernel_weights, torch.tensor([[3.0] * 21, [5.0] * 21]))
    assert torch.equal(crf.compatibility, 1 - torch.eye(21)) and crf.iterations == 5
    assert sum(p.numel() for p in crf.parameters()) == 21 * 21 + 2 * 21


def test_gradcheck_through_the_lattice() -> None:
    # Float64 finite differences on a tiny input: 2 classes, 5 x 6 image, all three inputs.
    generator = torch.Generator().manual_seed(0)
    crf = CRFRNN(2, iterations=2, bi_xy_std=4.0, bi_rgb_std=30.0).double()
    image = torch.randint(0, 256, (1, 3, 5, 6), dtype=torch.uint8, generator=generator)
    logits = torch.randn(1, 2, 5, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    compatibility = crf.compatibility.detach().clone().requires_grad_()
    weights = crf.kernel_weights.detach().clone().requires_grad_()

    def run(logits: torch.Tensor, compatibility: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        parameters = {"compatibility": compatibility, "kernel_weights": weights}
        return torch.func.functional_call(crf, parameters, (logits, image))

    assert torch.autograd.gradcheck(run, (logits, compatibility, weights))


def test_gradients_reach_the_network_and_the_crf() -> None:
    model = with_crf_rnn(create_model("fcn8s_tiny", num_classes=3), iterations=2)
    x = torch.randn(2, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 3, (2, 20, 24), generator=torch.Generator().manual_seed(1))
    loss = nn.functional.cross_entropy(model.train()(x), target)
    loss.backward()
    assert model.crf.compatibility.grad.abs().sum() > 0 and model.crf.kernel_weights.grad.abs().sum() > 0
    network_grads = [p.grad for p in model.model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in network_grads)
    assert sum(g.abs().sum() for g in network_grads) > 0


def test_training_the_crf_lowers_the_loss() -> None:
    logits, images = scene_batch(size=(20, 24), seeds=(2,))
    target = generate_scene(2, size=(20, 24)).semantic
    target = torch.from_numpy(target).long()[None]
    crf = CRFRNN(7, iterations=2, bi_xy_std=20.0, bi_rgb_std=10.0, pos_w=0.5, bi_w=0.5)
    optimizer = torch.optim.Adam(crf.parameters(), lr=0.1)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(crf(logits, images), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_model_wrapper_keeps_the_output_convention() -> None:
    base = create_model("fcn8s_tiny", num_classes=3).eval()
    model = with_crf_rnn(base, iterations=0).eval()  # 0 iterations: the CRF is the identity
    x = torch.randn(1, 3, 19, 23, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(model(x), base(x))
    assert model(x).shape == (1, 3, 19, 23)


def test_model_wrapper_reconstructs_the_image() -> None:
    # The image handed to the CRF is denormalize(x) * 255: feed a known image through.
    seen = {}

    class Spy(CRFRNN):
        def forward(self, logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
            seen["image"] = image
            return logits

    image = torch.randint(0, 256, (1, 3, 4, 5), generator=torch.Generator().manual_seed(0)).float()
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    model = CRFRNNModel(nn.Conv2d(3, 2, 1), Spy(2))
    model((image / 255 - mean) / std)
    assert torch.allclose(seen["image"], image, atol=1e-3)


def test_model_wrapper_refines_out_and_keeps_aux() -> None:
    class WithAux(nn.Module):
        num_classes = 2

        def forward(self, x: torch.Tensor) -> dict[str, object]:
            return {"out": x[:, :2], "aux": [x[:, 1:]]}

    model = with_crf_rnn(WithAux(), iterations=1)
    x = torch.randn(1, 3, 6, 7)
    out = model(x)
    assert set(out) == {"out", "aux"} and torch.equal(out["aux"][0], x[:, 1:])
    assert out["out"].shape == (1, 2, 6, 7) and not torch.allclose(out["out"], x[:, :2])


def test_bad_input() -> None:
    crf = CRFRNN(3)
    image = torch.zeros(1, 3, 4, 5, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"N x 3 x H x W, got shape \(1, 2, 4, 5\)"):
        crf(torch.zeros(1, 2, 4, 5), image)
    with pytest.raises(ValueError, match=r"RGB.*\(1, 4, 4, 5\)"):
        crf(torch.zeros(1, 3, 4, 5), torch.zeros(1, 4, 4, 5))
    with pytest.raises(ValueError, match="differ in N, H or W"):
        crf(torch.zeros(1, 3, 4, 6), image)
    with pytest.raises(TypeError, match="int64"):
        crf(torch.zeros(1, 3, 4, 5), torch.zeros(1, 3, 4, 5, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"RGB input.*\(1, 1, 4, 5\)"):
        with_crf_rnn(create_model("fcn8s_tiny", num_classes=3, in_channels=1))(torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="num_classes"):
        with_crf_rnn(nn.Identity())
    with pytest.raises(TypeError, match="unexpected argument.*bi_sdt.*accepts bi_rgb_std, bi_w, bi_xy_std, iterations"):
        with_crf_rnn(create_model("fcn8s_tiny", num_classes=3), bi_sdt=3.0)


def test_training_with_the_layer_does_not_lower_miou(tmp_path):
    # The paper's recipe (Zheng et al. 2015, Sec. 6): train the network, then train it further with
    # the CRF-RNN layer appended, end to end. Against the same further training without the layer,
    # on synthetic scenes, the layer must not lower validation mIoU (benchmarks/crf_rnn.py measures
    # larger runs and several seeds).
    from pixelwise.engine import TrainConfig, train

    def config(name, **changes):
        values = dict(model="fcn8s_tiny", dataset="synthetic", dataset_kwargs={"size": 48, "num_samples": 32},
                      batch_size=8, crop=48, scale=(1.0, 1.0), lr=3e-3, device="cpu", seed=0, log_every=100,
                      out=str(tmp_path / name))
        values.update(changes)
        return TrainConfig(**values, eval_every=values["epochs"])

    train(config("pre", epochs=6), progress=False)
    stage = {"epochs": 3, "lr": 5e-4, "init_from": str(tmp_path / "pre" / "last.pt")}
    plain = train(config("plain", **stage), progress=False)["last"]["miou"]
    crf = train(config("crf", **stage, crf_rnn=True, crf_rnn_kwargs=DENSE_PARAMS), progress=False)["last"]["miou"]
    assert crf >= plain, (crf, plain)


def test_training_from_scratch_with_the_layer_does_not_lower_miou(tmp_path):
    # From the first step, with weak initial kernel weights (strong ones over-smooth an untrained
    # network's logits; benchmarks/crf_rnn.py --scratch measures both).
    from pixelwise.engine import TrainConfig, train

    scores = {}
    for crf in (False, True):
        config = TrainConfig(model="fcn8s_tiny", dataset="synthetic", dataset_kwargs={"size": 48, "num_samples": 32},
                             batch_size=8, crop=48, scale=(1.0, 1.0), lr=3e-3, device="cpu", seed=0, log_every=100,
                             epochs=6, eval_every=6, crf_rnn=crf, out=str(tmp_path / str(crf)),
                             crf_rnn_kwargs={**DENSE_PARAMS, "pos_w": 1.0, "bi_w": 2.0} if crf else {})
        scores[crf] = train(config, progress=False)["last"]["miou"]
    assert scores[True] >= scores[False], scores
