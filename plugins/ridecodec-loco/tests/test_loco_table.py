"""loco's probability table: built fast and late, and bit for bit the table of loco 1.0."""

import numpy as np
import torch

from ridecodec_loco.model import (
    ALPHABET_SIZE,
    CONTEXTS,
    EIGHTHS,
    MAX_PREDICTION,
    UNIFORM_FLOOR,
    LocoModel,
    load_shipped_tails,
    probability_table,
)

#: The weights digest of loco 1.0 with the shipped tails: files record it, so it must not change.
LOCO_1_0_DIGEST = "fdd573a55bc251098f179c8dd988746f20b89b224efd679a673ba6f99612ab9f"


def reference_mass(tails, prediction, context, values):
    """loco 1.0's own construction (torch, entry by entry), kept as the reference."""
    low = EIGHTHS * values - EIGHTHS // 2 - prediction
    high = low + EIGHTHS
    row_start = context * tails.shape[1]
    flat = tails.reshape(-1)
    beyond_low = torch.where(values == 0, 0.0, flat[row_start + low.abs()])
    beyond_high = torch.where(values == ALPHABET_SIZE - 1, 0.0, flat[row_start + high.abs()])
    mass = torch.where(
        high <= 0,
        beyond_high - beyond_low,
        torch.where(low >= 0, beyond_low - beyond_high, (1.0 - beyond_low) - beyond_high),
    )
    mass = mass * (1.0 - UNIFORM_FLOOR) + UNIFORM_FLOOR / ALPHABET_SIZE
    return mass.to(torch.float32)


def test_table_is_bit_identical_to_loco_1_0():
    tails = load_shipped_tails()
    table = probability_table(tails.numpy()).reshape(CONTEXTS, MAX_PREDICTION + 1, ALPHABET_SIZE)
    predictions = torch.arange(MAX_PREDICTION + 1, dtype=torch.int32)[:, None]
    values = torch.arange(ALPHABET_SIZE, dtype=torch.int32)[None, :]
    for context in range(CONTEXTS):
        expected = reference_mass(tails, predictions, torch.tensor(context), values).numpy()
        assert np.array_equal(table[context].view(np.uint32), expected.view(np.uint32)), context


def test_table_is_built_at_first_use_and_digest_unchanged():
    model = LocoModel()
    assert model.table is None  # building the model (to list it, to check a digest) is cheap
    assert model.weights_digest() == LOCO_1_0_DIGEST
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (1, 1, 5, 7), dtype=np.uint8))
    log_prob = model.log_prob(image)
    assert model.table is not None and model.table.dtype == torch.float32
    assert model.weights_digest() == LOCO_1_0_DIGEST  # the table is derived data, not weights
    assert torch.equal(LocoModel().log_prob(image), log_prob)
    step = LocoModel().begin(image[0])
    assert step(torch.tensor([0]), torch.tensor([0]), 0).shape == (1, ALPHABET_SIZE)
