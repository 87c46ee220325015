"""Outputs are written atomically and never replace a file unless asked."""

from __future__ import annotations

import os

import pytest

from ridecodec import fileio
from ridecodec.errors import OutputExistsError


def test_writes_new_file(tmp_path):
    fileio.write_atomically(tmp_path / "a", b"data")
    assert (tmp_path / "a").read_bytes() == b"data"
    assert os.listdir(tmp_path) == ["a"]


def test_refuses_existing_file_without_force(tmp_path):
    (tmp_path / "a").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        fileio.write_atomically(tmp_path / "a", b"new")
    assert (tmp_path / "a").read_bytes() == b"keep"
    fileio.write_atomically(tmp_path / "a", b"new", force=True)
    assert (tmp_path / "a").read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["a"]


def test_interrupt_leaves_no_partial_file(tmp_path, monkeypatch):
    def interrupted(descriptor):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fileio.write_atomically(tmp_path / "a", b"data")
    assert os.listdir(tmp_path) == []


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        fileio.write_atomically(tmp_path / "no" / "a", b"data")
