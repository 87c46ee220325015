"""Write the golden corpus: small .rdc files per model and version that every test run must
decode to the committed pixels (tests/test_golden.py).

    python tests/golden/make_golden.py [MODEL ...]    (default: every model in MODELS)

Writes files only for (model, version) pairs the manifest does not have yet, and never replaces
a file: a model version's tables are fixed for good once its golden files exist. A change that
alters a model's tables must come with a new version, and then this script adds its files.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import ridecodec
from ridecodec import engine, registry
from ridecodec.testing import synthetic_graphic, synthetic_image, synthetic_image16

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "MANIFEST.json"
#: The models the corpus guards: the built-ins and the plug-ins in plugins/.
MODELS = ("ride", "mcgsm", "loco", "pixelcnn", "rowlstm", "diagbilstm", "multiscale")


def pixel_digest(pixels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()


def _few_values(seed: int) -> np.ndarray:
    """A gray image taking 40 of the 256 values: coded with value sets."""
    image = synthetic_image(24, 30, seed=seed)
    return (image // 6 * 6).astype(np.uint8)


def _prefers_another_orientation(name: str) -> tuple[np.ndarray, int]:
    """A gray image that --effort 8 codes in an orientation other than 0."""
    for seed in range(50):
        image = synthetic_image(20, 26, seed=100 + seed)
        image[:, 13:] = image[:, 13:][:, ::-1] // 2 + 60  # a different texture on one side
        header = ridecodec.read_header(ridecodec.compress(image, model=name, device="cpu", effort=8))
        if header.orientation != 0:
            return image, 8
    raise RuntimeError(f"no test image made {name} pick another orientation")


def cases(name: str) -> dict[str, tuple]:
    """(image as numpy, effort[, compress options]) per case."""
    model = registry.load_model(name)
    found = {
        "gray": (synthetic_image(24, 32, seed=1), 1),
        "values": (_few_values(2), 1),
        "effort": _prefers_another_orientation(name),
        "stored": (np.random.default_rng(3).integers(0, 256, (16, 16), dtype=np.uint8), 1),
    }
    if "RGB" in model.modes:
        found["rgb"] = (synthetic_image(20, 28, 3, seed=4), 1)
        found["rgba"] = (synthetic_image(16, 20, 4, seed=5), 1)
    # ridecodec 0.3.0: 16-bit images (high bytes by the model, low bytes by lowbyte 1), and stored
    # payloads that hold the original's samples (LA: two planes; bilevel: packed bits)
    found["gray16"] = (synthetic_image16(18, 22, seed=6), 1)
    if "RGB" in model.modes:
        found["rgb16"] = (synthetic_image16(14, 17, 3, seed=7), 1)
    rng = np.random.default_rng(8)
    if "RGBA" in model.modes:  # LA is coded as RGBA
        found["la-stored"] = (rng.integers(0, 256, (12, 10, 2), dtype=np.uint8), 1)
    else:
        rng.integers(0, 256, (12, 10, 2), dtype=np.uint8)  # the same random stream for what follows
    found["bilevel-stored"] = (rng.random((13, 21)) > 0.5, 1)
    # ridecodec 0.4.0: online adaptation (ridecodec.adaptive; version 1 then, "adaptive1-*": the
    # encoder writes the current version, so a model version new since 0.10 has "adaptive2-*"
    # and no version 1 files) and the PNG fallback
    # (a model that codes in an order of its own gets the newest version that suits it)
    version = engine.adaptation_version_for(model, 24, 32)
    found[f"adaptive{version}-gray"] = (synthetic_graphic(24, 32, seed=9), 1)
    if "RGB" in model.modes:
        found[f"adaptive{version}-rgb"] = (synthetic_graphic(24, 32, 3, seed=10), 1, {"model_only": True})
    if "RGB" in model.modes:  # 12 colours: coded with its colour set (ridecodec.coloursets)
        palette = np.random.default_rng(12).integers(0, 256, (12, 3), dtype=np.uint8)
        blocks = np.random.default_rng(13).integers(0, 12, (6, 8))
        found["colours"] = (palette[np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)], 1, {"model_only": True})
    tile = np.random.default_rng(11).integers(0, 256, (8, 40), dtype=np.uint8)
    found["png"] = (np.tile(tile, (6, 1)), 1)  # noise repeated: deflate finds it, no model does
    # ridecodec 0.9.0: repeated rows and columns (ridecodec.repeats), coded by the model, and kept
    # as a PNG of the image without them
    small = synthetic_image(12, 14, seed=14)
    found["repeats"] = (np.repeat(np.repeat(small, [1, 2, 3] * 4, axis=0), [2, 1] * 7, axis=1), 1, {"model_only": True})
    found["repeats-png"] = (np.repeat(np.repeat(np.tile(tile, (6, 1)), 2, axis=0), 3, axis=1), 1)
    return found


def main(names: list[str]) -> None:
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    added = 0
    for name in names or MODELS:
        if name not in registry.available_models():
            print(f"{name}: not installed, skipped", file=sys.stderr)
            continue
        model_class = type(registry.load_model(name))
        version = model_class.version
        # Every file is of the current version: the encoder's probe among the model's versions
        # (``alternative_versions``) would code some cases, noise say, with an earlier one.
        alternatives, model_class.alternative_versions = model_class.alternative_versions, {}
        for case, (image, effort, *options) in cases(name).items():
            file_name = f"{name}-{version}-{case}.rdc"
            if file_name in manifest or (HERE / file_name).exists():
                continue
            data = ridecodec.compress(image, model=name, device="cpu", effort=effort, **(options[0] if options else {}))
            header = ridecodec.read_header(data)
            assert np.array_equal(ridecodec.decompress(data, device="cpu"), image)
            assert header.model_version == version
            assert case not in ("repeats", "repeats-png") or header.repeated_lines is not None
            assert not case.startswith("adaptive") or case.startswith(f"adaptive{header.adaptation}-")
            (HERE / file_name).write_bytes(data)
            manifest[file_name] = {
                "model": name,
                "version": version,
                "case": case,
                "shape": list(image.shape),
                "pixels_sha256": pixel_digest(image),
                "orientation": header.orientation,
                "coder": header.coder,
                "value_sets": header.value_sets is not None,
                "bit_depth": header.bit_depth,
                "dtype": str(image.dtype),
                "deep": header.deep.coding.name if header.deep else None,
                "adaptation": header.adaptation,
                "colour_set": header.colour_set is not None,
                "repeated_lines": header.repeated_lines is not None,
            }
            added += 1
            print(f"wrote {file_name} ({len(data)} bytes)")
        model_class.alternative_versions = alternatives
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    print(f"{added} files added; the corpus has {len(manifest)}")


if __name__ == "__main__":
    main(sys.argv[1:])
