"""Sliding-window inference in bounded memory, and test-time augmentation."""

import numpy as np
import pytest
import torch
from torch import nn

from pixelwise.engine.inference import InferenceOptions, predict_mask, to_model_input
from pixelwise.engine.sliding import SlideOptions, slide_bands, slide_labels
from pixelwise.engine.tta import TestTimeAugmentation
from pixelwise.models import create_model


def pointwise_model(classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, classes, 1)).eval()


def image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def slide_scores(model, pixels, options, classes):
    return torch.cat([band for _, band in slide_bands(model, pixels, options, num_classes=classes, scores=True)], 1)


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.6])
def test_tiles_that_see_what_the_whole_image_sees_give_its_logits(blend, overlap):
    model, pixels = pointwise_model(), image(101, 77)
    options = SlideOptions((32, 48), overlap, tile_batch=3, blend=blend)
    whole = model(to_model_input(pixels))[0]
    torch.testing.assert_close(slide_scores(model, pixels, options, 5), whole, atol=1e-5, rtol=1e-5)
    labels = slide_labels(model, pixels, tile=(32, 48), overlap=overlap, tile_batch=3, blend=blend)
    assert torch.equal(labels.long(), whole.argmax(0))


def test_one_tile_over_the_whole_image_is_whole_image_inference():
    model, pixels = create_model("fcn8s_tiny", num_classes=4).eval(), image(64, 96, seed=1)
    with torch.no_grad():
        whole = model(to_model_input(pixels))[0]
        scores = slide_scores(model, pixels, SlideOptions((64, 96), 0.25), 4)
    torch.testing.assert_close(scores, whole, atol=1e-5, rtol=1e-5)


def test_image_smaller_than_the_tile_and_very_thin_images():
    model = pointwise_model(3)
    for height, width in ((10, 300), (300, 1), (1, 1)):
        pixels = image(height, width)
        labels = slide_labels(model, pixels, tile=(64, 64), overlap=0.5)
        assert labels.shape == (height, width)
        assert torch.equal(labels.long(), model(to_model_input(pixels))[0].argmax(0))


def test_bands_cover_the_image_once_in_order():
    rows = [(row, len(band)) for row, band in
            slide_bands(pointwise_model(), image(130, 40), SlideOptions((50, 40), 0.3), num_classes=5)]
    assert rows[0][0] == 0 and sum(count for _, count in rows) == 130
    assert all(a + n == b for (a, n), (b, _) in zip(rows, rows[1:]))


def test_a_model_returning_the_wrong_shape_is_named():
    model = nn.Conv2d(3, 2, 3, stride=2).eval()
    with pytest.raises(ValueError, match="logits of shape .* expected 1 x 2 x 16 x 16"):
        slide_labels(model, image(16, 16), tile=(16, 16), tile_batch=1)


def test_options_are_checked():
    with pytest.raises(ValueError, match="overlap is a fraction"):
        SlideOptions((8, 8), 1.0)
    with pytest.raises(ValueError, match="blend must be one of gaussian, linear"):
        SlideOptions((8, 8), 0.2, blend="cosine")


def test_predict_mask_slide_mode_agrees_with_whole_for_a_local_model():
    model = create_model("fcn8s_tiny", num_classes=3).eval()
    pixels = image(90, 120, seed=2)
    whole = predict_mask(model, pixels)
    slide = predict_mask(model, pixels, options=InferenceOptions("slide", SlideOptions((64, 64), 0.5)))
    assert slide.shape == whole.shape and slide.dtype == whole.dtype
    assert (slide == whole).mean() > 0.8  # context differs near tile borders only


def test_tta_averages_probabilities_over_scales_and_flips():
    model = nn.Conv2d(3, 3, 3, padding=1).eval()
    x = torch.randn(1, 3, 20, 30)
    tta = TestTimeAugmentation(model, scales=(0.5, 1.0), flip=True)
    expected = 0
    for scale in (0.5, 1.0):
        scaled = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bilinear") if scale != 1 else x
        for mirrored in (False, True):
            out = model(scaled.flip(-1) if mirrored else scaled)
            out = out.flip(-1) if mirrored else out
            out = torch.nn.functional.interpolate(out, size=(20, 30), mode="bilinear") if scale != 1 else out
            expected = expected + out.softmax(1) / 4
    with torch.no_grad():
        torch.testing.assert_close(tta(x).exp(), expected.detach(), atol=1e-6, rtol=1e-5)
    assert tta.passes == 4


def test_tta_of_one_scale_without_flip_keeps_the_labels():
    model, pixels = pointwise_model(), image(33, 47)
    plain = predict_mask(model, pixels)
    same = predict_mask(model, pixels, options=InferenceOptions(tta_scales=(1.0,), tta_flip=False))
    flipped = predict_mask(model, pixels, options=InferenceOptions(tta_flip=True))
    assert np.array_equal(plain, same) and np.array_equal(plain, flipped)  # a pointwise model is flip-equivariant
