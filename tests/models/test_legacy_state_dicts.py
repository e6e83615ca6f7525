"""State dicts saved before the zoo moved onto shared backbones and layers still load, with the same outputs.

``tests/models/legacy/NAME.pt`` was written by the models as they were at commit a1ae098 (before
``pixelwise.backbones`` and the shared layers): small variants, their state dict, an input and the
eval-mode output. Loading each into today's model must reproduce that output, so a user's
checkpoint from then keeps working and the move changed no computation.
"""

from pathlib import Path

import pytest
import torch

from pixelwise.models import count_parameters, create_model
from pixelwise.weights import load_model_state

LEGACY = Path(__file__).parent / "legacy"


@pytest.mark.parametrize("path", sorted(LEGACY.glob("*.pt")), ids=lambda p: p.stem)
def test_old_state_dicts_load_and_give_the_same_outputs(path):
    saved = torch.load(path, weights_only=True)
    model = create_model(path.stem, 3, **saved["kwargs"]).eval()
    load_model_state(model, saved["state_dict"], source=str(path))
    with torch.no_grad():
        torch.testing.assert_close(model(saved["input"]), saved["output"], rtol=1e-5, atol=1e-5)
    assert count_parameters(model) == saved["params"]  # as many parameters as before the move


def test_the_fixtures_cover_the_first_zoo():
    assert {p.stem for p in LEGACY.glob("*.pt")} == {
        "fc_densenet103", "fc_densenet56", "fc_densenet67", "fcn16s", "fcn32s", "fcn8s", "fcn8s_tiny", "gridnet",
        "segnet", "ternausnet11", "unet", "unet_original"}
