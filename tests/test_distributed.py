"""Distributed training (issue 16, item 6): real runs of 2 CPU processes (gloo) started by
``python -m torch.distributed.run`` (torchrun) on tiny synthetic images."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import ridecodec
from ridecodec.training.distributed import Distributed

from conftest import natural_like

MCGSM = [
    "mcgsm",
    "--up",
    "2",
    "--left",
    "2",
    "--right",
    "1",
    "--components",
    "4",
    "--scales",
    "2",
    "--features",
    "4",
    "--table-components",
    "3",
    "--samples-per-image",
    "250",
    "--batch-size",
    "111",
    "--validation-fraction",
    "0.34",
]  # 1000 training samples: the last batch of each epoch has 1, process 1 none of it
RIDE = [
    "ride",
    "--up",
    "2",
    "--left",
    "2",
    "--layers",
    "1",
    "--hidden",
    "4",
    "--components",
    "3",
    "--scales",
    "2",
    "--features",
    "3",
    "--table-components",
    "2",
    "--patch-sizes",
    "8,12",
    "--epochs",
    "1",
    "--patches-per-image",
    "15",
    "--batch-size",
    "8",
    "--learning-rate",
    "1e-2",
    "--validation-fraction",
    "0.34",
    "--lbfgs-steps",
    "3",
]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for seed in range(6):
        Image.fromarray(natural_like(24, 30, seed=seed)).save(folder / f"{seed}.png")
    return folder


def _train(processes: int, arguments: list[str], cwd) -> subprocess.CompletedProcess:
    """``ridecodec train ...`` under torchrun with ``processes`` processes (standalone: a free
    port on this machine), or in this Python without torchrun for 1."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, *launcher, "-m", "ridecodec.train", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _records(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def _weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_shares_of_a_batch_are_disjoint_and_cover_it():
    batch = torch.arange(11)
    shares = [Distributed(rank, 3).local(batch) for rank in range(3)]
    assert sorted(torch.cat([share for share, _ in shares]).tolist()) == list(range(11))
    assert all(scale == 3 / 11 for _, scale in shares)
    # a process left without items computes on one with weight 0 (it still joins the all-reduce)
    share, scale = Distributed(2, 3).local(torch.arange(2))
    assert len(share) == 1 and scale == 0
    rows = torch.arange(10)
    assert torch.cat([Distributed(rank, 3).part(rows) for rank in range(3)]).tolist() == list(range(10))


@pytest.mark.slow
def test_two_processes_train_like_one_and_their_weights_code_images(image_folder, tmp_path):
    common = [*MCGSM, "--data", str(image_folder), "--epochs", "2"]
    two = _train(2, [*common, "--out", "two.pt", "--log-file", "two.jsonl", "--checkpoint", "two.ck"], tmp_path)
    _train(1, [*common, "--out", "one.pt", "--log-file", "one.jsonl"], tmp_path)
    assert two.stdout.count("wrote two.pt") == 1  # process 0 reports and writes, alone
    records = _records(tmp_path / "two.jsonl")
    [processes] = [r for r in records if r["event"] == "processes"]
    assert processes["processes"] == 2 and processes["identical_weights"]
    assert len(set(processes["weights_sha256"])) == 1  # both ranks hold identical weights
    assert sum(r["event"] == "epoch" for r in records) == 2  # one log, not one per process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.jsonl", "one.pt", "two.ck", "two.jsonl", "two.pt"]

    # the same global batches, split: the same training as one process, up to float sums
    done = {
        name: next(r for r in _records(tmp_path / f"{name}.jsonl") if r["event"] == "done") for name in ("one", "two")
    }
    assert done["two"]["validation_bits_per_pixel"] == pytest.approx(done["one"]["validation_bits_per_pixel"], abs=1e-3)
    initial = next(r for r in records if r["event"] == "initial")["validation_bits_per_pixel"]
    assert done["two"]["validation_bits_per_pixel"] < initial
    assert _weights(tmp_path / "two.pt")["metadata"]["processes"] == 2

    image = natural_like(12, 14)
    data = ridecodec.compress(image, model="mcgsm", weights=tmp_path / "two.pt")
    assert np.array_equal(ridecodec.decompress(data, weights=tmp_path / "two.pt"), image)


@pytest.mark.slow
def test_checkpoints_resume_across_process_counts(image_folder, tmp_path):
    common = [*MCGSM, "--data", str(image_folder), "--checkpoint", "ck.pt", "--resume"]
    # 2 processes, then 1 (and 1, then 2) for an epoch each: a checkpoint carries nothing of
    # the process count
    _train(2, [*common, "--epochs", "1", "--out", "a1.pt"], tmp_path)
    _train(1, [*common, "--epochs", "2", "--out", "a2.pt", "--log", "a.jsonl"], tmp_path)
    (tmp_path / "ck.pt").unlink()
    _train(1, [*common, "--epochs", "1", "--out", "b1.pt"], tmp_path)
    _train(2, [*common, "--epochs", "2", "--out", "b2.pt", "--log-file", "b.jsonl"], tmp_path)
    for name, processes in (("a", 1), ("b", 2)):
        records = _records(tmp_path / f"{name}.jsonl")
        [resumed] = [r for r in records if r["event"] == "resumed"]
        assert resumed["epoch"] == 1 and resumed["processes"] == processes
        assert [r["epoch"] for r in records if r["event"] == "epoch"] == [2]
    checkpoint = torch.load(tmp_path / "ck.pt", map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"models", "optimizer", "state", "generator"}
    # the generator's state and the weights continue the same training whatever the split
    a, b = (_weights(tmp_path / f"{name}2.pt") for name in "ab")
    for key, value in a["state"].items():
        assert torch.allclose(value, b["state"][key], atol=1e-4), key
    image = natural_like(10, 12, seed=3)
    assert np.array_equal(
        ridecodec.decompress(
            ridecodec.compress(image, model="mcgsm", weights=tmp_path / "b2.pt"), weights=tmp_path / "b2.pt"
        ),
        image,
    )


@pytest.mark.slow
def test_ride_trains_on_two_processes(image_folder, tmp_path):
    common = [*RIDE, "--data", str(image_folder)]
    _train(2, [*common, "--out", "two.pt", "--log-file", "two.jsonl", "--checkpoint", "ck.pt"], tmp_path)
    _train(1, [*common, "--out", "one.pt", "--log-file", "one.jsonl"], tmp_path)
    records = _records(tmp_path / "two.jsonl")
    [processes] = [r for r in records if r["event"] == "processes"]
    assert processes["processes"] == 2 and processes["identical_weights"]
    assert len([r for r in records if r["event"] == "head_tuned"]) == 2  # L-BFGS shared too
    done = {
        name: next(r for r in _records(tmp_path / f"{name}.jsonl") if r["event"] == "done") for name in ("one", "two")
    }
    assert done["two"]["validation_bits_per_pixel"] == pytest.approx(done["one"]["validation_bits_per_pixel"], abs=1e-3)
    image = natural_like(12, 14, seed=2)
    data = ridecodec.compress(image, model="ride", weights=tmp_path / "two.pt")
    assert np.array_equal(ridecodec.decompress(data, weights=tmp_path / "two.pt"), image)
