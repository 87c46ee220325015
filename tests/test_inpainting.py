"""Inpainting: `ridecodec inpaint` and ridecodec.inpainting (ancestral drafts, then
Metropolis-within-Gibbs sweeps over blocks scored on local windows)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ridecodec import inpainting, registry, sampling
from ridecodec.cli import main
from ridecodec.errors import InputError, ModelNotFoundError
from ridecodec.models import CausalReach, DensityModel
from ridecodec.testing import synthetic_image


class Pairs(DensityModel):
    """Values 0 and 1 only: the first pixel of a row is 0 or 1 evenly, each next one equals its
    left neighbour with probability 9/10. The joint of two pixels is symmetric, so in both
    orientations the posterior of the first given the second = 1 is P(1) = 9/10."""

    name = "pairs"
    version = "1"
    modes = ("L",)
    reach = CausalReach(up=0, left=1, right=0)
    exact_across_devices = True
    can_sample = True

    def _tables(self, canvas, rows, cols):
        tables = torch.zeros(len(rows), 256)
        left = canvas[0, rows, (cols - 1).clamp(min=0)].long()
        first = cols == 0
        tables[first, :2] = 1
        follow = torch.nonzero(~first).flatten()
        tables[follow, left[follow]] = 9
        tables[follow, 1 - left[follow]] = 1
        return tables

    def begin(self, canvas):
        return lambda rows, cols, channel: self._tables(canvas, rows, cols)

    def log_prob(self, images):
        raise NotImplementedError


@pytest.fixture(scope="module")
def mcgsm():
    return registry.load_model("mcgsm")


def hole(height, width, top, bottom, left, right):
    missing = np.zeros((height, width), bool)
    missing[top:bottom, left:right] = True
    return missing


def test_only_the_missing_pixels_change_and_their_old_values_do_not_matter(mcgsm):
    image = synthetic_image(20, 22)[None]
    missing = hole(20, 22, 6, 13, 5, 15)
    result = inpainting.inpaint(mcgsm, image, missing, sweeps=1, seed=3, candidates=2)
    assert np.array_equal(result.pixels[:, ~missing], image[:, ~missing])
    assert not np.array_equal(result.pixels[:, missing], image[:, missing])
    blanked = image.copy()
    blanked[:, missing] = 0
    again = inpainting.inpaint(mcgsm, blanked, missing, sweeps=1, seed=3, candidates=2)
    assert np.array_equal(again.pixels, result.pixels)


def test_a_seed_reproduces_the_inpainting(mcgsm):
    image = synthetic_image(16, 16, channels=3, seed=2).transpose(2, 0, 1).copy()
    missing = hole(16, 16, 5, 10, 4, 12)
    first = inpainting.inpaint(mcgsm, image, missing, sweeps=1, seed=9, candidates=2)
    assert np.array_equal(
        first.pixels, inpainting.inpaint(mcgsm, image, missing, sweeps=1, seed=9, candidates=2).pixels
    )
    assert not np.array_equal(
        first.pixels, inpainting.inpaint(mcgsm, image, missing, sweeps=1, seed=10, candidates=2).pixels
    )
    assert first.proposals == len(inpainting.blocks(missing))


def test_the_fill_follows_the_surroundings(mcgsm):
    # a smooth ramp: what the model draws in the hole lies near what was there, where a
    # uniform draw would be off by 85 on average
    ramp = np.add.outer(np.arange(24) * 4, np.arange(24) * 3).astype(np.uint8)[None] + 20
    missing = hole(24, 24, 9, 15, 9, 15)
    result = inpainting.inpaint(mcgsm, ramp, missing, sweeps=2, seed=0)
    error = np.abs(result.pixels.astype(int) - ramp)[:, missing].mean()
    assert error < 12


def test_the_local_window_scores_as_the_whole_image_does(mcgsm):
    """What the sweeps rely on: within the window of a block, the tables of every pixel the block
    can influence are the whole image's, and outside it no table depends on the block."""
    image = synthetic_image(30, 34)[None]
    reach = inpainting.margins(mcgsm)
    top, bottom, left, right = 12, 17, 14, 19
    rows, cols = inpainting.window(top, bottom, left, right, (30, 34), reach)
    changed = image.copy()
    changed[0, top:bottom, left:right] = 255 - changed[0, top:bottom, left:right]
    whole = [sampling.fill(mcgsm, x, np.zeros((30, 34), bool), None).log2_probability for x in (image, changed)]
    outside = np.ones((30, 34), bool)
    outside[rows, cols] = False
    assert np.array_equal(whole[0][:, outside], whole[1][:, outside])
    up, reach_left, reach_right = reach
    influenced = (slice(top, bottom + up), slice(left - reach_right, right + reach_left))
    for x, full in zip((image, changed), whole):
        local = sampling.fill(
            mcgsm, x[:, rows, cols], np.zeros((rows.stop - rows.start, cols.stop - cols.start), bool), None
        ).log2_probability
        in_crop = (
            slice(influenced[0].start - rows.start, influenced[0].stop - rows.start),
            slice(influenced[1].start - cols.start, influenced[1].stop - cols.start),
        )
        assert np.array_equal(local[:, in_crop[0], in_crop[1]], full[:, influenced[0], influenced[1]])


def test_the_sweeps_draw_from_the_posterior():
    """Two pixels, the second known to be 1: the posterior of the first is 1 with probability
    9/10, while ancestral sampling alone (the first pixel drawn before the second is seen) gives
    1/2. Over many seeds, the sweeps' final states follow the posterior."""
    model = Pairs()
    image = np.array([[[0, 1]]], dtype=np.uint8)
    missing = np.array([[True, False]])
    drafts = [
        inpainting.inpaint(model, image, missing, sweeps=0, seed=seed, candidates=1).pixels[0, 0, 0]
        for seed in range(300)
    ]
    # 5 sweeps: the last one in the image's own orientation, where the proposal is the prior (1/2),
    # so the final states follow the posterior only if the acceptance corrects the proposals
    finals = [
        inpainting.inpaint(model, image, missing, sweeps=5, seed=seed, candidates=1).pixels[0, 0, 0]
        for seed in range(300)
    ]
    assert abs(np.mean(drafts) - 0.5) < 0.12
    assert abs(np.mean(finals) - 0.9) < 0.07  # 4 standard deviations of 300 draws
    assert set(finals) <= {0, 1}


def test_the_best_draft_is_the_most_probable():
    # candidates are judged by the whole window's probability: with many candidates the draft
    # is almost surely the posterior's mode (first pixel = 1)
    model = Pairs()
    image = np.array([[[0, 1]]], dtype=np.uint8)
    missing = np.array([[True, False]])
    for seed in range(10):
        assert inpainting.inpaint(model, image, missing, sweeps=0, seed=seed, candidates=12).pixels[0, 0, 0] == 1


def test_progress_counts_drafts_and_blocks(mcgsm):
    seen = []
    missing = hole(12, 12, 4, 8, 4, 8)
    inpainting.inpaint(
        mcgsm,
        synthetic_image(12, 12)[None],
        missing,
        sweeps=2,
        seed=0,
        candidates=3,
        progress=lambda done, total: seen.append((done, total)),
    )
    total = 3 + 2 * len(inpainting.blocks(missing))
    assert seen == [(done, total) for done in range(1, total + 1)]


def test_bad_masks_are_refused(mcgsm):
    image = synthetic_image(8, 8)[None]
    with pytest.raises(InputError, match="no pixel as missing"):
        inpainting.inpaint(mcgsm, image, np.zeros((8, 8), bool))
    with pytest.raises(InputError, match="same size"):
        inpainting.inpaint(mcgsm, image, np.ones((8, 9), bool))


# --- the command ---------------------------------------------------------------------------------


def run(*arguments):
    return CliRunner().invoke(main, list(arguments))


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("ridecodec: error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def files(tmp_path):
    image = synthetic_image(18, 20, channels=3, seed=4)
    Image.fromarray(image).save(tmp_path / "image.png")
    mask = np.zeros((18, 20), np.uint8)
    mask[6:11, 7:14] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path, image, mask != 0


def test_inpaint_writes_the_image_with_only_the_masked_pixels_changed(files):
    folder, image, missing = files
    out = folder / "out.png"
    result = run(
        "inpaint",
        str(folder / "image.png"),
        "--mask",
        str(folder / "mask.png"),
        "-o",
        str(out),
        "--model",
        "mcgsm",
        "--sweeps",
        "1",
        "--candidates",
        "2",
        "--seed",
        "5",
    )
    assert result.exit_code == 0, result.output
    assert "seed 5" in result.output and "block proposals accepted" in result.output
    written = Image.open(out)
    assert (written.mode, written.size) == ("RGB", (20, 18))
    pixels = np.asarray(written)
    assert np.array_equal(pixels[~missing], image[~missing])
    assert not np.array_equal(pixels[missing], image[missing])


@pytest.mark.parametrize(("mask_shape", "message"), [((18, 21), "same size"), (None, "no pixel as missing")])
def test_inpaint_refuses_a_bad_mask_in_one_line(files, mask_shape, message):
    folder, _, _ = files
    bad = folder / "bad.png"
    Image.fromarray(np.zeros(mask_shape or (18, 20), np.uint8)).save(bad)
    result = run(
        "inpaint", str(folder / "image.png"), "--mask", str(bad), "-o", str(folder / "out.png"), "--model", "mcgsm"
    )
    assert result.exit_code == InputError.exit_code
    assert message in one_error_line(result)
    assert not (folder / "out.png").exists()


def test_inpaint_refuses_a_model_that_cannot_sample(files, monkeypatch):
    folder, _, _ = files
    monkeypatch.setattr(type(registry.load_model("loco")), "can_sample", False)
    result = run(
        "inpaint",
        str(folder / "image.png"),
        "--mask",
        str(folder / "mask.png"),
        "-o",
        str(folder / "out.png"),
        "--model",
        "loco",
    )
    assert result.exit_code == ModelNotFoundError.exit_code
    assert "model 'loco' cannot sample" in one_error_line(result)


def test_inpaint_never_replaces_its_input_nor_an_existing_output(files):
    folder, _, _ = files
    before = (folder / "image.png").read_bytes()
    result = run(
        "inpaint",
        str(folder / "image.png"),
        "--mask",
        str(folder / "mask.png"),
        "-o",
        str(folder / "image.png"),
        "--force",
    )
    assert result.exit_code == 11 and "is an input" in one_error_line(result)
    (folder / "out.png").write_bytes(b"keep")
    result = run(
        "inpaint", str(folder / "image.png"), "--mask", str(folder / "mask.png"), "-o", str(folder / "out.png")
    )
    assert result.exit_code == 8 and "exists" in one_error_line(result)
    assert (folder / "image.png").read_bytes() == before and (folder / "out.png").read_bytes() == b"keep"


def test_inpaint_refuses_an_image_it_cannot_draw(files):
    folder, _, _ = files
    deep = folder / "deep.png"
    Image.fromarray(np.full((18, 20), 40000, np.uint16)).save(deep)
    result = run(
        "inpaint", str(deep), "--mask", str(folder / "mask.png"), "-o", str(folder / "out.png"), "--model", "mcgsm"
    )
    assert result.exit_code == 4
    assert "8-bit L, RGB and RGBA" in one_error_line(result)
