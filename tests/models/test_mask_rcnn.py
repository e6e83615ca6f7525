"""Mask R-CNN through torchvision (pixelwise.models.mask_rcnn): the instance contract (training losses from the
batch, eval-mode instances in class indices), the counts torchvision reports, and loading detector weights."""

import pytest
import torch

from pixelwise.data import build_dataset
from pixelwise.data.targets import collate
from pixelwise.data.transforms import eval_transforms
from pixelwise.models import count_parameters, create_model
from pixelwise.models.mask_rcnn import _frozen, load_detector_weights

THINGS = (3, 4, 5, 6)


@pytest.fixture(scope="module")
def batch():
    scenes = build_dataset("synthetic", None, "train", eval_transforms(), size=48, num_samples=2, task="instance")
    return collate([scenes[0], scenes[1]])


def small(**kwargs):
    torch.manual_seed(0)
    return create_model("maskrcnn_small", num_classes=7, things=THINGS, width_divisor=8, **kwargs)


def test_training_returns_torchvisions_losses_computed_from_the_batch(batch):
    model = small().train()
    losses = model.losses(model(batch["image"], batch), batch)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.detector.roi_heads.mask_predictor.parameters())
    with pytest.raises(ValueError, match="needs the batch's targets"):
        model(batch["image"])


def test_crowd_instances_are_left_out_and_foreign_labels_refused(batch):
    model = small()
    instances = dict(batch["instances"][0])
    instances["iscrowd"] = torch.ones_like(instances["iscrowd"])
    assert len(model._target(instances, torch.device("cpu"))["labels"]) == 0  # every one crowd: a negative
    instances = {**batch["instances"][0], "labels": torch.zeros_like(batch["instances"][0]["labels"])}
    with pytest.raises(ValueError, match=r"labels \[0\] are not among the model's things \[3, 4, 5, 6\]"):
        model._target(instances, torch.device("cpu"))


def test_eval_mode_gives_instances_in_class_indices_at_the_input_size(batch):
    model = small().eval()
    model.detector.roi_heads.score_thresh = 0.0  # keep every detection of an untrained model
    with torch.no_grad():
        found = model(batch["image"])["instances"]
    assert len(found) == 2
    for image in found:
        assert image["masks"].shape[1:] == (48, 48) and image["masks"].is_floating_point()
        assert set(image["labels"].tolist()) <= set(THINGS) and len(image["labels"]) > 0
    assert model.label_of_class.tolist() == [0, 0, 0, 1, 2, 3, 4]


def test_other_channel_counts_reach_the_pixelwise_backbone():
    model = create_model("maskrcnn_small", num_classes=3, in_channels=1, width_divisor=8).eval()
    with torch.no_grad():
        assert len(model(torch.zeros(1, 1, 48, 48))["instances"]) == 1
    with pytest.raises(ValueError, match="expects N x 1 x H x W images"):
        model(torch.zeros(1, 3, 48, 48))
    with pytest.raises(ValueError, match="reads RGB images"):
        create_model("maskrcnn_resnet50_fpn", num_classes=3, in_channels=1)


def test_counts_follow_torchvision():
    # torchvision's documented counts of its COCO models (90 category ids + background): v1 with frozen batch
    # norm 44,401,393, v2 46,359,409.
    with torch.device("meta"):
        v1 = create_model("maskrcnn_resnet50_fpn", num_classes=90)
        v2 = create_model("maskrcnn_resnet50_fpn_v2", num_classes=90)
        assert count_parameters(v2) == 46_359_409
        _frozen(v1.detector.backbone.body, 3)
        assert count_parameters(v1) == 44_401_393
    assert count_parameters(v1, trainable_only=True) < count_parameters(v1)  # conv1 and layer1 frozen


def test_detector_weights_load_except_the_class_specific_layers(tmp_path):
    source = create_model("maskrcnn_resnet50_fpn", num_classes=3, min_size=64, max_size=64)
    torch.save(source.detector.state_dict(), tmp_path / "coco.pth")
    model = create_model("maskrcnn_resnet50_fpn", num_classes=7, things=THINGS, weights=tmp_path / "coco.pth")
    backbone = "backbone.body.layer4.2.conv3.weight"
    assert torch.equal(model.detector.state_dict()[backbone], source.detector.state_dict()[backbone])
    assert model.detector.roi_heads.box_predictor.cls_score.out_features == 5  # 4 things + background: new
    assert not model.detector.backbone.body.conv1.weight.requires_grad  # frozen, as torchvision does
    torch.save({"model": 1}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision Mask R-CNN state dict"):
        load_detector_weights(model, tmp_path / "other.pth")
