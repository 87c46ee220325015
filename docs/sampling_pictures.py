"""Makes the README's pictures of sampling, texture synthesis and inpainting (docs/*.png).

    python docs/sampling_pictures.py models                           # docs/sample-models.png
    python docs/sampling_pictures.py textures REGULAR.pt IRREGULAR.pt # docs/texture-sheet.png, docs/inpaint-example.png

The texture weights come from the README's recipe ("Texture synthesis"), run on the textures
this script writes first (``python docs/sampling_pictures.py write-textures``: regular.png and
irregular.png, 192 x 192, ridecodec.testing.synthetic_texture). Every draw is seeded: with the
same weights the pictures come out the same on any machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ridecodec import inpainting, registry, sampling
from ridecodec.testing import synthetic_texture

DOCS = Path(__file__).parent
SCALE = 2  # pixels are drawn as SCALE x SCALE squares, so that 64-pixel samples can be seen
LABEL = 16  # height of the caption strip


def captioned(tiles: list[tuple[str, np.ndarray]], gap: int = 6) -> Image.Image:
    """Gray tiles side by side, each enlarged SCALE times, with its caption above."""
    height = max(tile.shape[0] for _, tile in tiles) * SCALE
    width = sum(tile.shape[1] * SCALE + gap for _, tile in tiles) - gap
    sheet = Image.new("L", (width, height + LABEL), 255)
    draw = ImageDraw.Draw(sheet)
    x = 0
    for caption, tile in tiles:
        image = Image.fromarray(tile).resize((tile.shape[1] * SCALE, tile.shape[0] * SCALE), Image.NEAREST)
        sheet.paste(image, (x, LABEL))
        draw.text((x + 2, 2), caption, fill=0)
        x += image.width + gap
    return sheet


def stacked(sheets: list[Image.Image], gap: int = 6) -> Image.Image:
    result = Image.new("L", (max(s.width for s in sheets), sum(s.height + gap for s in sheets) - gap), 255)
    y = 0
    for sheet in sheets:
        result.paste(sheet, (0, y))
        y += sheet.height + gap
    return result


def models_picture() -> None:
    tiles = []
    for name in ("ride", "mcgsm", "pixelcnn", "loco"):
        model = registry.load_model(name)
        tiles.append((f"{name}, seed 1", sampling.sample(model, "L", 64, 64, seed=1)[0]))
    captioned(tiles).save(DOCS / "sample-models.png", optimize=True)


def write_textures() -> None:
    for kind in ("regular", "irregular"):
        Image.fromarray(synthetic_texture(kind, 192, 192)).save(f"{kind}.png")


def hole_of(size: int, top: int, left: int, side: int) -> np.ndarray:
    missing = np.zeros((size, size), bool)
    missing[top : top + side, left : left + side] = True
    return missing


def textures_picture(regular_weights: str, irregular_weights: str) -> None:
    rows, inpainted = [], []
    for kind, weights in (("regular", regular_weights), ("irregular", irregular_weights)):
        texture = synthetic_texture(kind, 192, 192)
        tuned = registry.load_model("ride", "cpu", weights)
        unprimed = sampling.sample(tuned, "L", 80, 80, seed=1)[0]
        primed = sampling.sample(tuned, "L", 80, 80, seed=1, prime=texture[None])[0]
        rows.append(
            captioned(
                [
                    (f"{kind} texture", texture[:80, :80]),
                    ("tuned ride, unprimed", unprimed),
                    ("tuned ride, --prime", primed),
                ]
            )
        )
        # inpainting: a 24 x 24 hole in a part of the texture (another seed: not the training crop's corner)
        image = synthetic_texture(kind, 64, 64, seed=7)
        missing = hole_of(64, 20, 20, 24)
        shown = image.copy()
        shown[missing] = 255
        result = inpainting.inpaint(tuned, image[None], missing, sweeps=5, seed=1).pixels[0]
        shipped = inpainting.inpaint(registry.load_model("ride"), image[None], missing, sweeps=5, seed=1).pixels[0]
        inpainted.append(
            captioned(
                [(f"{kind}: hole", shown), ("shipped ride", shipped), ("tuned ride", result), ("original", image)]
            )
        )
    stacked(rows).save(DOCS / "texture-sheet.png", optimize=True)
    stacked(inpainted).save(DOCS / "inpaint-example.png", optimize=True)


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "models":
        models_picture()
    elif command == "write-textures":
        write_textures()
    elif command == "textures":
        textures_picture(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
