"""Models that choose their own coding order (``DensityModel.coding_order``): the order's building
blocks cover every pixel once, in stages, and the engine, the sampler and the conformance kit all
follow the order a model declares, so that a multi-scale model may read a subsampled image's
pixels below and right of the one it predicts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import ridecodec
from ridecodec import engine, registry, sampling, testing
from ridecodec.schedule import Scaled, Skipping, Stages, Wavefront, subsampled_first, wavefront_for


def _step_of(order) -> dict[tuple[int, int], int]:
    step_of = {}
    numbers = []
    for t, rows, cols in order.steps():
        numbers.append(t)
        assert len(rows) > 0 and bool((rows[1:] >= rows[:-1]).all())
        for row, col in zip(rows.tolist(), cols.tolist()):
            assert (row, col) not in step_of, f"({row}, {col}) coded twice"
            step_of[(row, col)] = t
    assert numbers == sorted(set(numbers)) and numbers[-1] < order.num_steps, "steps numbered upwards, below num_steps"
    return step_of


@pytest.mark.parametrize(("height", "width"), [(1, 1), (1, 7), (7, 1), (2, 2), (5, 8), (9, 6)])
@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize(("small_right", "right"), [(None, None), (1, 3), (2, None)])
def test_subsampled_first_codes_every_pixel_once_the_small_image_first(height, width, factor, small_right, right):
    step_of = _step_of(subsampled_first(height, width, factor, small_right, right))
    assert set(step_of) == set(itertools.product(range(height), range(width)))
    small = {(r, c): t for (r, c), t in step_of.items() if r % factor == 0 and c % factor == 0}
    rest = {(r, c): t for (r, c), t in step_of.items() if (r, c) not in small}
    assert not rest or max(small.values()) < min(rest.values())
    # each stage keeps its wavefront's causality: up-left neighbours on its own grid come earlier
    for (r, c), t in rest.items():
        for dr, dc in ((0, -1), (-1, 0), (-1, -1)):
            neighbour = (r + dr, c + dc)
            if neighbour in rest:
                assert rest[neighbour] < t
    for (r, c), t in small.items():
        if (r, c - factor) in small:
            assert small[(r, c - factor)] < t


def test_the_order_blocks_compose():
    scaled = Scaled(Wavefront(2, 3, 1), 2)
    assert [(rows.tolist(), cols.tolist()) for _, rows, cols in scaled.steps()][:2] == [([0], [0]), ([0], [2])]
    skip = np.ones((3, 3), dtype=bool)
    skip[1, 1] = False
    assert [(rows.tolist(), cols.tolist()) for _, rows, cols in Skipping(Wavefront(3, 3, 1), skip).steps()] == [
        ([1], [1])
    ]
    assert Stages((scaled, Skipping(Wavefront(3, 3, 1), skip))).num_steps == scaled.num_steps + 1


TWO_SCALE_SOURCE = '''
import torch
from ridecodec.models import DensityModel
from ridecodec.schedule import replayed_log_prob, subsampled_first


class TwoScale(DensityModel):
    """A two-stage test model: the pixels of even rows and columns first (peaked at their left
    neighbour on that grid), then the others, peaked at the mean of the four even pixels around
    them, those below and right included, which only the subsampled-first order has coded."""

    name = "{name}"
    version = "0.1"
    modes = ("L",)
    reach = None
    exact_across_devices = True
    can_sample = True

    def coding_order(self, height, width):
        return subsampled_first(height, width, 2, 1, {right})

    def begin(self, canvas):
        _, height, width = canvas.shape
        values = torch.arange(256)

        def step(rows, cols, channel):
            plane = canvas[channel].long()
            small = (rows % 2 == 0) & (cols % 2 == 0)
            left = torch.where(cols >= 2, plane[rows, (cols - 2).clamp(min=0)], 128)
            top, first = rows - rows % 2, cols - cols % 2
            bottom = (top + 2).clamp(max=height - 1 - (height - 1) % 2)
            last = (first + 2).clamp(max=width - 1 - (width - 1) % 2)
            corners = plane[top, first] + plane[top, last] + plane[bottom, first] + plane[bottom, last]
            centre = torch.where(small, left, corners // 4)
            {peek}
            weights = 1 + (1 << 24) // (64 + (values[None, :] - centre[:, None]) ** 2)
            return weights.float()

        return step

    def log_prob(self, images):
        return torch.tensor([replayed_log_prob(self, image) for image in images], dtype=torch.float64)
'''


@pytest.fixture
def two_scale(tmp_path, monkeypatch):
    """The two-stage test model, and one that also peeks at the pixel right of the one it
    predicts (not yet coded in stage 2), installed through entry points (subprocesses too)."""
    models = {
        "test-twoscale": {"right": "1", "peek": ""},
        "test-twoscale-peeking": {
            "right": "1",
            "peek": "centre = centre + plane[rows, (cols + 1).clamp(max=width - 1)] // 64",
        },
    }
    lines = []
    for name, fields in models.items():
        module = name.replace("-", "_")
        (tmp_path / f"{module}.py").write_text(TWO_SCALE_SOURCE.format(name=name, **fields))
        lines.append(f"{name} = {module}:TwoScale")
    info = tmp_path / "twoscale-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: twoscale\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ridecodec.models]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    yield "test-twoscale"
    registry._load_on.cache_clear()


@pytest.mark.parametrize("shape", [(9, 12), (1, 5), (6, 1), (7, 7)])
def test_a_model_in_its_own_order_round_trips(two_scale, shape):
    image = testing.synthetic_image(*shape, seed=3)
    data = ridecodec.compress(image, model=two_scale)
    assert np.array_equal(ridecodec.decompress(data), image)
    model = registry.load_model(two_scale)
    assert wavefront_for(model, *shape).num_steps == subsampled_first(*shape, 2, 1, 1).num_steps


@pytest.mark.parametrize(
    "check",
    [testing.check_tables, testing.check_causality, testing.check_log_prob, testing.check_determinism],
    ids=lambda check: check.__name__,
)
def test_the_conformance_kit_follows_the_declared_order(two_scale, check):
    check(two_scale)


def test_the_payload_costs_the_code_length_in_the_declared_order(two_scale):
    """(The kit's file-size check wants a model that beats PNG; this toy one does not.)"""
    model = registry.load_model(two_scale)
    pixels = testing.synthetic_image(23, 30, seed=4)[None]
    (payload,) = engine.encode_variants(model, pixels, [None])
    code_length = engine.code_length_bits(model, pixels)
    assert abs(32 * len(payload) - code_length) <= 0.001 * code_length + 64


def test_the_causality_check_catches_a_peek_past_the_declared_order(two_scale):
    with pytest.raises(AssertionError, match="not yet decoded"):
        testing.check_causality("test-twoscale-peeking")


def test_sampling_follows_the_declared_order(two_scale):
    model = registry.load_model(two_scale)
    drawn = sampling.sample(model, "L", 6, 8, seed=5)
    assert drawn.shape == (1, 6, 8) and np.array_equal(drawn, sampling.sample(model, "L", 6, 8, seed=5))
    # coded in the declared order, the drawing costs its own code length: it is the model's image
    assert np.array_equal(ridecodec.decompress(ridecodec.compress(drawn[0], model=two_scale)), drawn[0])


def test_models_says_a_model_has_its_own_order(two_scale):
    assert registry.describe_model(two_scale).reach == "its own coding order"


def test_inpainting_refuses_a_model_in_its_own_order(two_scale):
    """Its local windows follow wavefront and raster orders only."""
    from ridecodec import inpainting

    image = testing.planes_of(testing.synthetic_image(8, 8, seed=1))
    missing = np.zeros((8, 8), dtype=bool)
    missing[3:5, 3:5] = True
    with pytest.raises(ridecodec.RidecodecError, match="codes in its own order, which inpainting does not follow"):
        inpainting.inpaint(registry.load_model(two_scale), image, missing)
