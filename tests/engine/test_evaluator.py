"""pixelwise/engine/evaluator.py: evaluators passed to the loop, the composite, and the semantic scores."""

import torch
from torch import nn

from pixelwise.engine import Evaluators, SemanticEvaluator, evaluate, inference_on_dataset


class Recorder:
    """An evaluator that records what the loop hands it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.batches: list[tuple[dict, torch.Tensor]] = []

    def reset(self) -> None:
        self.calls.append("reset")

    def process(self, inputs, outputs) -> None:
        self.calls.append("process")
        self.batches.append((inputs, outputs))

    def evaluate(self) -> dict:
        self.calls.append("evaluate")
        return {"batches": len(self.batches)}


def loader():
    images = torch.randn(3, 2, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    masks = torch.randint(0, 2, (3, 2, 4, 4), generator=torch.Generator().manual_seed(1))
    return [{"image": image, "mask": mask, "name": [f"a{i}", f"b{i}"]} for i, (image, mask) in enumerate(zip(images, masks))]


def test_the_loop_resets_processes_each_batch_and_evaluates_once():
    recorder, model = Recorder(), nn.Conv2d(3, 2, 1).train()
    batches = loader()
    assert inference_on_dataset(model, batches, recorder, progress=False) == {"batches": 3}
    assert recorder.calls == ["reset", "process", "process", "process", "evaluate"]
    inputs, outputs = recorder.batches[1]
    assert inputs["name"] == ["a1", "b1"] and torch.equal(inputs["mask"], batches[1]["mask"])
    with torch.no_grad():
        torch.testing.assert_close(outputs, model(batches[1]["image"]))
    assert model.training  # restored


def test_skipped_samples_are_counted_and_image_less_batches_passed_over():
    recorder = Recorder()
    batches = [*loader(), {"skipped": ["bad.png", "worse.png"]}]
    metrics = inference_on_dataset(nn.Conv2d(3, 2, 1), batches, recorder, progress=False)
    assert metrics == {"batches": 3, "skipped_samples": 2}


def test_a_composite_feeds_every_evaluator_and_merges_their_keys():
    first, second = Recorder(), SemanticEvaluator(2)
    metrics = inference_on_dataset(nn.Conv2d(3, 2, 1), loader(), Evaluators({"recorder": first, "semantic": second}),
                                   progress=False)
    assert metrics["batches"] == 3 and "miou" in metrics and first.calls[0] == "reset"


def test_evaluate_is_the_semantic_evaluator_in_the_loop():
    model = nn.Conv2d(3, 2, 1)
    by_hand = SemanticEvaluator(2)
    with torch.no_grad():
        for batch in loader():
            by_hand.process(batch, model(batch["image"]))
    assert evaluate(model, loader(), num_classes=2, progress=False) == by_hand.evaluate()


def test_postprocess_replaces_the_argmax():
    always_one = SemanticEvaluator(2, postprocess=lambda logits, batch: torch.ones_like(batch["mask"]))
    always_one.process({"mask": torch.tensor([[[1, 1, 0, 1]]])}, torch.zeros(1, 2, 1, 4))
    assert always_one.evaluate()["pixel_accuracy"] == 0.75


def test_amp_outputs_come_back_in_float32():
    recorder = Recorder()
    inference_on_dataset(nn.Conv2d(3, 2, 1), loader()[:1], recorder, amp=True, progress=False)
    assert recorder.batches[0][1].dtype == torch.float32
