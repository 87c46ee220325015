"""The PixelRNN plug-ins' shared training command (``ridecodec.training.pixelrnn.train_main``):
a run longer than a session continues where its checkpoint stopped, on the same schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ridecodec.training.pixelrnn import train_main


class _Tiny(torch.nn.Module):
    """A network the loop can train in milliseconds: one logit table for every pixel."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.channels, self.hidden = channels, hidden
        self.logits = torch.nn.Parameter(torch.zeros(256))

    def nll_bits(self, crops: torch.Tensor) -> torch.Tensor:
        targets = crops.reshape(-1).long()
        return torch.nn.functional.cross_entropy(self.logits.expand(len(targets), 256), targets) / np.log(2)

    def config(self) -> dict:
        return {"channels": self.channels, "hidden": self.hidden}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 64, (20, 24), dtype=np.uint8)).save(folder / f"{k}.png")
    return folder


def test_a_run_continues_where_its_checkpoint_stopped(images, tmp_path):
    out = tmp_path / "run"
    common = [str(images), "--out", str(out), "--crop", "8", "--batch", "2", "--minutes", "0.01"]
    train_main(_Tiny, "tiny", "test", common)
    first = torch.load(out / "checkpoint.pt")
    assert first["iteration"] > 0 and first["elapsed"] >= 0.6
    train_main(_Tiny, "tiny", "test", [*common[:-1], "0.02", "--continue"])
    second = torch.load(out / "checkpoint.pt")
    assert second["iteration"] > first["iteration"] and second["elapsed"] >= 1.2
    log = (out / "train.log").read_text()
    assert f"continuing at iteration {first['iteration']}" in log


def test_continuing_a_checkpoint_without_its_elapsed_time_is_refused(images, tmp_path):
    out = tmp_path / "run"
    common = [str(images), "--out", str(out), "--crop", "8", "--batch", "2", "--minutes", "0.005"]
    train_main(_Tiny, "tiny", "test", common)
    checkpoint = torch.load(out / "checkpoint.pt")
    del checkpoint["elapsed"]  # as the runs before ridecodec 0.10 wrote them
    torch.save(checkpoint, out / "checkpoint.pt")
    with pytest.raises(SystemExit, match="records no elapsed time"):
        train_main(_Tiny, "tiny", "test", [*common, "--continue"])
