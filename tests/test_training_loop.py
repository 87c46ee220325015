"""The training loop's typed state and checkpoints (training/loop.py): the checkpoints behind the
shipped RGB weights, written before the state was typed, still load, and the layout on disk stays
theirs."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ridecodec.training.loop import Checkpoint, TrainingState
from ridecodec.training.ride import CurriculumState

CHECKPOINTS = Path(__file__).resolve().parent.parent / "training" / "checkpoints"


def test_the_committed_ride_checkpoint_loads_into_the_typed_state():
    saved = Checkpoint.load(CHECKPOINTS / "ride-rgb-5.ckpt", CurriculumState)
    state = saved.state
    assert isinstance(state, CurriculumState)
    # the run's one stage ended (patience) after epoch 18: the next would be stage 1, of none
    assert (state.epoch, state.stage, state.stage_epoch, state.tuned_stage) == (18, 1, 0, -1)
    assert state.progress() == {"epoch": 18, "stage": 1}
    assert state.best_epoch == 15 and math.isclose(state.best_bits, 2.524577520380982)
    assert [record["epoch"] for record in state.history] == list(range(1, 19))
    assert state.best_state is not None and set(state.best_state) == set(saved.models)
    assert saved.averaged is not None  # trained with --average-decay
    assert saved.generator.dtype == torch.uint8


def test_the_committed_mcgsm_checkpoint_loads_into_the_typed_state():
    saved = Checkpoint.load(CHECKPOINTS / "mcgsm-rgb-3.ckpt", TrainingState)
    state = saved.state
    assert (state.epoch, state.best_epoch, state.stale) == (30, 30, 0)
    assert len(state.history) == 30 and state.seconds > 0
    assert state.best_state is not None and set(state.best_state) == set(saved.models)
    assert saved.averaged is None and "state" in saved.optimizer


def test_a_checkpoint_keeps_the_layout_on_disk(tmp_path):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters())
    state = CurriculumState(epoch=3, stage=1, best_bits=4.5, history=[{"epoch": 3}])
    generator = torch.Generator().manual_seed(1).get_state()
    Checkpoint(model.state_dict(), optimizer.state_dict(), state, generator).save(str(tmp_path / "ck"))
    on_disk = torch.load(tmp_path / "ck", weights_only=True)
    assert set(on_disk) == {"models", "optimizer", "state", "generator"}
    assert on_disk["state"] == vars(state)  # a plain dict: it loads with weights_only
    assert Checkpoint.load(tmp_path / "ck", CurriculumState).state == state
