"""pixelwise/models/gridnet.py: parameter counts by hand, grid wiring, stream shapes, total dropout."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from pixelwise.models import count_parameters, create_model, model_info, parameter_count
from pixelwise.models.gridnet import GridNet, LateralUnit, TotalDropout, total_dropout

NARROW_FIVE_ROWS = (2, 4, 8, 16, 32)  # the paper's 5 rows, 8x narrower


def images(height: int, width: int, batch: int = 2) -> Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))


def reference_forward(model: GridNet, x: Tensor, lateral: Callable[[int, int, Tensor], Tensor]) -> Tensor:
    """The grid written node by node, X[row, column], independently of GridNet's column helpers.

    ``lateral(row, gap, stream)`` is the unit between columns ``gap`` and ``gap + 1`` of ``row``.
    """
    rows, columns, half = model.rows, model.columns, model.columns // 2
    node = {(0, 0): model.stem(model.input_norm(x))}
    for row in range(1, rows):
        node[row, 0] = model.down[row - 1][0](node[row - 1, 0])
    for column in range(1, columns):
        upsampling = column >= half
        order = range(rows - 1, -1, -1) if upsampling else range(rows)
        for row in order:
            total = lateral(row, column - 1, node[row, column - 1])
            if upsampling and row < rows - 1:
                total = total + model.up[row][column - half](node[row + 1, column])
            if not upsampling and row > 0:
                total = total + model.down[row - 1][column](node[row - 1, column])
            node[row, column] = total
    return model.head(node[0, columns - 1])


def the_models_laterals(model: GridNet) -> Callable[[int, int, Tensor], Tensor]:
    return lambda row, gap, stream: model.lateral[row][gap](stream)


def identity_laterals(row: int, gap: int, stream: Tensor) -> Tensor:
    return stream


# ---------------------------------------------------------------- parameter counts


def test_parameter_count_of_a_small_grid_by_hand() -> None:
    # channels (2, 4), 3 input channels, 5 classes; every conv3x3 has 9 * c_in * c_out + c_out
    # parameters, every batch norm 2 * c.
    #   input BN(3)                                   6
    #   stem  conv 3->2 (56), BN (4), conv 2->2 (38), BN (4)           = 102
    #   lateral, per unit: BN c, conv c->c, BN c, conv c->c = 18 c^2 + 6 c
    #         row 0 (c = 2): 84      row 1 (c = 4): 312                = 396 per column gap
    #   down 2->4: BN (4), conv s2 2->4 (76), BN (8), conv 4->4 (148)  = 236 per downsampling column
    #   up 4->2:   BN (8), deconv s2 4->2 (74), BN (4), conv 2->2 (38) = 124 per upsampling column
    #   head  conv 2->5 (95), BN (10), conv 5->5 (230), BN (10)         = 345
    two_columns = 6 + 102 + 1 * 396 + 1 * 236 + 1 * 124 + 345
    four_columns = 6 + 102 + 3 * 396 + 2 * 236 + 2 * 124 + 345
    assert (two_columns, four_columns) == (1_209, 2_361)
    model = GridNet(num_classes=5, channels=(2, 4), columns=2)
    assert count_parameters(model) == 1_209
    assert count_parameters(model.lateral) == 396 and count_parameters(model.down) == 236
    assert count_parameters(model.up) == 124 and count_parameters(model.head) == 345
    assert parameter_count("gridnet", num_classes=5, channels=(2, 4), columns=4) == 2_361


def test_parameter_count_of_the_paper_grid() -> None:
    # 5 rows (16 ... 256), 6 columns, 3 input channels, 19 Cityscapes classes, biases on every conv.
    #   lateral: 5 gaps * sum_r (18 c_r^2 + 6 c_r) = 5 * (18 * 87_296 + 6 * 496)        = 7_871_520
    #   down, per column: 13_984 + 55_616 + 221_824 + 886_016 = 1_177_440; x 3        = 3_532_320
    #   up, per column:   7_040 + 27_904 + 111_104 + 443_392 = 589_440; x 3           = 1_768_320
    #   input BN 6 + stem (448 + 32 + 2_320 + 32)                                     = 2_838
    #   head: conv 16->19 (2_755), BN (38), conv 19->19 (3_268), BN (38)              = 6_099
    assert 7_871_520 + 3_532_320 + 1_768_320 + 2_838 + 6_099 == 13_181_097
    with torch.device("meta"):
        model = GridNet(num_classes=19)
    assert count_parameters(model) == 13_181_097
    assert count_parameters(model.lateral) == 7_871_520
    assert count_parameters(model.down) == 3_532_320
    assert count_parameters(model.up) == 1_768_320
    assert count_parameters(model.input_norm) + count_parameters(model.stem) == 2_838
    # Two more classes widen only the head: (9 * 16 + 1) * 2 + 2 * 2 + (9 * (21^2 - 19^2) + 2) + 2 * 2.
    assert parameter_count("gridnet", num_classes=21) == 13_181_097 + 290 + 4 + 722 + 4


def test_defaults_are_the_papers_grid() -> None:
    info = model_info("gridnet")
    assert info["default_kwargs"] == {"channels": (16, 32, 64, 128, 256), "columns": 6, "total_dropout": 0.1}
    assert info["params"] is None  # the paper's figure is unconfirmed; see the module docstring
    with torch.device("meta"):
        model = GridNet(num_classes=19)
    assert model.size_multiple == 16 and model.rows == 5
    assert [len(units) for units in model.lateral] == [5] * 5
    assert [len(units) for units in model.down] == [3] * 4 and [len(units) for units in model.up] == [3] * 4
    assert sum(isinstance(m, TotalDropout) for m in model.modules()) == 25


# ---------------------------------------------------------------- shapes and wiring


def test_stream_shapes_at_each_row() -> None:
    model = GridNet(num_classes=3, channels=NARROW_FIVE_ROWS).eval()
    with torch.no_grad():
        streams = model.streams(images(32, 48))
    assert [tuple(s.shape) for s in streams] == [
        (2, 2, 32, 48),
        (2, 4, 16, 24),
        (2, 8, 8, 12),
        (2, 16, 4, 6),
        (2, 32, 2, 3),
    ]


def test_every_unit_sees_its_rows_resolution() -> None:
    model = GridNet(num_classes=3, channels=NARROW_FIVE_ROWS).eval()
    seen: dict[tuple[str, int, int], tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(key: tuple[str, int, int]) -> Callable[..., None]:
        return lambda module, inputs, output: seen.__setitem__(key, (inputs[0].shape[1:], output.shape[1:]))

    for kind in ("lateral", "down", "up"):
        for row, units in enumerate(getattr(model, kind)):
            for column, unit in enumerate(units):
                unit.register_forward_hook(record((kind, row, column)))
    with torch.no_grad():
        model(images(32, 48, batch=1))

    def at(row: int) -> tuple[int, int, int]:  # the stream of row ``row`` for a 32 x 48 input
        return (NARROW_FIVE_ROWS[row], 32 >> row, 48 >> row)

    assert len(seen) == 5 * 5 + 4 * 3 + 4 * 3  # every unit ran
    for (kind, row, column), shapes in seen.items():
        source, target = {"lateral": (row, row), "down": (row, row + 1), "up": (row + 1, row)}[kind]
        assert shapes == (at(source), at(target)), (kind, row, column)


@pytest.mark.parametrize("channels, columns", [((2, 4, 8), 4), (NARROW_FIVE_ROWS, 6), ((3,), 2)])
def test_forward_equals_the_grid_written_node_by_node(channels: tuple[int, ...], columns: int) -> None:
    model = GridNet(num_classes=3, channels=channels, columns=columns).eval()
    x = images(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_padded(x), reference_forward(model, x, the_models_laterals(model)))


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (17, 31), (48, 16)])
def test_any_input_size(size: tuple[int, int]) -> None:
    model = GridNet(num_classes=2, channels=NARROW_FIVE_ROWS, columns=2).eval()
    with torch.no_grad():
        assert model(images(*size, batch=1)).shape == (1, 2, *size)


# ---------------------------------------------------------------- total dropout


def test_total_dropout_train_p1_removes_every_lateral_branch() -> None:
    torch.manual_seed(0)
    model = GridNet(num_classes=3, channels=(2, 4, 8), columns=4, total_dropout=1.0).train()
    x = images(32, 32)
    with torch.no_grad():
        out = model.forward_padded(x)
        # Batch norm uses batch statistics in training, so the reference runs in training mode too.
        without_laterals = reference_forward(model, x, identity_laterals)
    assert torch.equal(out, without_laterals)
    # The branches still run (as in the authors' code): their parameters get zero, not missing, gradients.
    model.zero_grad()
    model.forward_padded(x).square().mean().backward()
    branch_grads = [p.grad for unit in model.modules() if isinstance(unit, LateralUnit) for p in unit.parameters()]
    assert branch_grads and all(g is not None and not g.any() for g in branch_grads)
    assert any(p.grad.any() for p in model.down.parameters()) and any(p.grad.any() for p in model.up.parameters())


def test_eval_drops_nothing_and_is_deterministic() -> None:
    torch.manual_seed(0)
    always_drop = GridNet(num_classes=3, channels=(2, 4, 8), columns=4, total_dropout=1.0)
    never_drop = GridNet(num_classes=3, channels=(2, 4, 8), columns=4, total_dropout=0.0)
    never_drop.load_state_dict(always_drop.state_dict())  # p is not state: same weights, same statistics
    always_drop.eval(), never_drop.eval()
    x = images(32, 32)
    with torch.no_grad():
        out = always_drop(x)
        assert torch.equal(out, always_drop(x))
        assert torch.equal(out, never_drop(x))
        # No rescaling at evaluation: the full residual units, as written node by node.
        torch.testing.assert_close(out, reference_forward(always_drop, x, the_models_laterals(always_drop)))
        assert not torch.allclose(out, reference_forward(always_drop, x, identity_laterals))


def dropped_units(model: GridNet, x: Tensor, seed: int) -> list[bool]:
    """Run ``model`` once with ``seed``; for each TotalDropout in execution order, was its input zeroed?"""
    dropped: list[bool] = []
    hooks = [
        module.register_forward_hook(lambda m, inputs, output: dropped.append(not torch.equal(output, inputs[0])))
        for module in model.modules()
        if isinstance(module, TotalDropout)
    ]
    torch.manual_seed(seed)
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return dropped


def test_seed_fixes_the_set_of_dropped_units() -> None:
    model = GridNet(num_classes=3, channels=(2, 4, 8), columns=4, total_dropout=0.5).train()
    x = images(16, 16)
    first = dropped_units(model, x, seed=0)
    assert len(first) == 3 * 3  # rows x (columns - 1) lateral units
    assert any(first) and not all(first)
    assert dropped_units(model, x, seed=0) == first
    assert dropped_units(model, x, seed=1) != first


def test_one_draw_for_the_whole_batch_and_no_rescaling() -> None:
    x = torch.randn(4, 2, 3, 3) + 10  # no zeros in x
    torch.manual_seed(0)
    outputs = [total_dropout(x, 0.3) for _ in range(2_000)]
    assert all(torch.equal(out, x) or not out.any() for out in outputs)  # never part of the batch, never x / 0.7
    dropped_fraction = sum(not out.any() for out in outputs) / len(outputs)
    assert dropped_fraction == pytest.approx(0.3, abs=0.04)  # ~4.5 standard deviations
    assert total_dropout(x, 1.0, training=False) is x


def test_module_follows_train_and_eval_modes() -> None:
    drop = TotalDropout(1.0)
    x = torch.ones(2, 3)
    assert not drop.train()(x).any()
    assert torch.equal(drop.eval()(x), x)


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": ()}, r"channels must be a non-empty sequence of positive ints.*\(\)"),
        ({"channels": (16, 0)}, r"channels.*\(16, 0\)"),
        ({"channels": 16}, r"channels.*got 16"),
        ({"columns": 5}, r"columns must be an even int >= 2.*got 5"),
        ({"columns": 0}, r"columns.*got 0"),
        ({"total_dropout": 1.5}, r"total_dropout must be a probability in \[0, 1\], got 1.5"),
        ({"total_dropout": -0.1}, r"total_dropout.*-0.1"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("gridnet", num_classes=3, **kwargs)


def test_total_dropout_rejects_bad_probabilities() -> None:
    with pytest.raises(ValueError, match="p must be in \\[0, 1\\], got 2"):
        TotalDropout(2)
    with pytest.raises(ValueError, match="got -1"):
        total_dropout(torch.ones(1), -1)
