"""The golden corpus (tests/golden): files written once per model version must keep decoding to
the same pixels, here and under every CPU kernel set; files of retired versions are refused with
a line that says what to install."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import ridecodec
from ridecodec import adaptive, engine, registry, testing
from ridecodec.errors import WeightsMismatchError

GOLDEN = Path(__file__).resolve().parent / "golden"
MANIFEST = json.loads((GOLDEN / "MANIFEST.json").read_text())
#: Models the corpus guards (tests/golden/make_golden.py)
GUARDED = ("ride", "mcgsm", "loco", "pixelcnn", "rowlstm", "diagbilstm", "multiscale")
#: What an earlier model version's files show under other kernel sets (see the kernel-set test)
PLAIN_CASES = ("gray", "rgb", "rgba")


def _installed(entry) -> bool:
    return entry["model"] in registry.available_models()


@pytest.mark.parametrize("file_name", sorted(MANIFEST))
def test_golden_file_decodes_to_its_pixels(file_name):
    entry = MANIFEST[file_name]
    if not _installed(entry):
        pytest.skip(f"{entry['model']} is not installed")
    data = (GOLDEN / file_name).read_bytes()
    header = ridecodec.read_header(data)
    assert (header.model_name, header.model_version) == (entry["model"], entry["version"])
    assert (header.orientation, header.coder, header.value_sets is not None, header.adaptation) == (
        entry["orientation"],
        entry["coder"],
        entry["value_sets"],
        entry.get("adaptation", 0),
    )
    assert (header.colour_set is not None) == entry.get("colour_set", False)
    assert (header.repeated_lines is not None) == entry.get("repeated_lines", False)
    pixels = ridecodec.decompress(data, device="cpu")
    assert list(pixels.shape) == entry["shape"] and str(pixels.dtype) == entry.get("dtype", "uint8")
    assert hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest() == entry["pixels_sha256"]


@pytest.mark.parametrize("name", GUARDED)
def test_every_current_model_version_has_golden_files(name):
    """A model version without golden files has tables nothing guards: a new version must come
    with its files (python tests/golden/make_golden.py)."""
    if name not in registry.available_models():
        pytest.skip(f"{name} is not installed")
    version = registry.load_model(name).version
    cases = {entry["case"] for entry in MANIFEST.values() if (entry["model"], entry["version"]) == (name, version)}
    colour = "RGB" in registry.load_model(name).modes
    expected = {"gray", "values", "effort", "stored", "gray16", "bilevel-stored", "png", "repeats", "repeats-png"}
    expected |= {"rgb", "rgba", "rgb16", "la-stored", "colours"} if colour else set()
    # a file per adaptation version since the model version came: the one the encoder writes for
    # the model always, and version 1's where the model version is older than adaptation version 2
    # (ridecodec 0.10)
    kinds = ("gray", "rgb") if colour else ("gray",)
    adapted = {f"adaptive{version}-{kind}" for version in adaptive.VERSIONS for kind in kinds}
    written = engine.adaptation_version_for(registry.load_model(name), 24, 32)  # (multi-scale: 3)
    current = {f"adaptive{written}-{kind}" for kind in kinds}
    assert expected | current <= cases <= expected | adapted, f"{name} {version}: golden cases {sorted(cases)}"


@pytest.mark.parametrize("name", GUARDED)
def test_earlier_versions_a_model_still_reads_keep_their_files(name):
    """A version replaced by a newer one stays readable (``readable_versions``): its golden files
    stay in the corpus, and the model built for that version has the weights they record."""
    if name not in registry.available_models():
        pytest.skip(f"{name} is not installed")
    current = registry.load_model(name)
    for version in current.readable_versions:
        files = [file for file, entry in MANIFEST.items() if (entry["model"], entry["version"]) == (name, version)]
        assert files, f"{name} {version} is read but has no golden files"
        earlier = registry.load_model(name, version=version)
        assert earlier.version == version and earlier.weights_digest() != current.weights_digest()
        header = ridecodec.read_header((GOLDEN / min(files)).read_bytes())
        assert header.weights_digest == earlier.weights_digest()


def test_the_corpus_covers_what_it_claims():
    entries = list(MANIFEST.values())
    # the low-byte model of 16-bit images has tables too (lowbyte 1)
    assert any(entry.get("deep") == "HIGH_THEN_LOW" and entry["coder"] == 1 for entry in entries)
    assert any(entry["orientation"] != 0 for entry in entries)
    assert any(entry["value_sets"] for entry in entries)
    assert any(entry["coder"] == 0 for entry in entries)
    assert any(entry["coder"] == 2 for entry in entries)  # PNG
    assert any(entry.get("colour_set") for entry in entries)
    # repeated lines left out of a model's coding and of a PNG payload
    assert {entry["coder"] for entry in entries if entry.get("repeated_lines")} == {1, 2}
    # online adaptation has state learned from the image: version 1 on gray and colour
    assert {entry["shape"][-1] == 3 for entry in entries if entry.get("adaptation") == 1} == {False, True}


@pytest.mark.slow
@pytest.mark.parametrize("kernels", testing.available_kernel_sets())
def test_golden_files_decode_under_every_kernel_set(kernels):
    """Written on one machine, decoded in a process running other CPU kernels. The files take
    turns: in name order, file k is decoded under the k-th kernel set (counting round), so that
    every current model version's files (about twenty each) meet every kernel set, and each file
    one of them; and the ways (1 thread with whole steps, 2 threads with steps split in calls of
    1 and of 3 positions) take turns too. An earlier model version, whose arithmetic is its
    successor's with other weights, sends its plain gray and colour files only (CI's time). Every
    file also decodes in this process (test_golden_file_decodes_to_its_pixels), and each model's
    conformance tests decode their fresh files every way under every kernel set and compare the
    tables of every split in-process."""
    sets = testing.available_kernel_sets()
    current = {(name, registry.load_model(name).version) for name in GUARDED if name in registry.available_models()}
    paths = [
        GOLDEN / name
        for name, entry in sorted(MANIFEST.items())
        if _installed(entry) and ((entry["model"], entry["version"]) in current or entry["case"] in PLAIN_CASES)
    ]
    mine = paths[sets.index(kernels) :: len(sets)]
    failures = testing.decode_under_kernels(mine, kernels, timeout=1800, rotation=sets.index(kernels))
    assert not any(failures.values()), {Path(path).name: problems for path, problems in failures.items() if problems}


@pytest.mark.parametrize("file_name", sorted(path.name for path in (GOLDEN / "retired").glob("*.rdc")))
def test_files_of_retired_float_versions_are_refused_with_what_to_install(file_name):
    data = (GOLDEN / "retired" / file_name).read_bytes()
    header = ridecodec.read_header(data)
    with pytest.raises(WeightsMismatchError) as raised:
        ridecodec.decompress(data, device="cpu")
    message = str(raised.value)
    assert f"{header.model_name} version {header.model_version}" in message
    assert "install ridecodec 0.1.0" in message and "\n" not in message
