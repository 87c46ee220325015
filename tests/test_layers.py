"""The package's imports run one way, down these layers (README, "How it works"): models never
import the engine, the container never imports the image code, nothing imports the CLI. Read from
the source (every import statement, those inside functions included), not from what happens to be
imported at run time."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ridecodec"

#: Layer of each part; an import between parts must go to a strictly lower layer. Modules of one
#: group (the models, the exact arithmetic, training) may import each other.
LAYERS = {
    "errors": 0,
    "modes": 0,
    "models.base": 0,
    "exact": 1,
    "depth": 1,
    "orientation": 1,
    "fileio": 1,
    "devices": 1,
    "lsq": 1.4,  # the least-squares mix: uses exact's tables
    "adaptive": 1.6,  # drives lsq
    "coloursets": 1,
    "repeats": 1,
    "schedule": 2,
    "models": 3,
    "container": 4,
    "imageio": 4,
    "engine": 4,
    "registry": 4,
    "codec": 5,
    "api": 5.5,  # the public face of codec.py
    "evaluation": 6,
    "testing": 6,
    "explain": 6,
    "pillow": 6,
    "training": 6,
    "sampling": 6,
    "evalplot": 6.5,  # draws evaluation's reports (and borrows explain's check for matplotlib): above both
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
    "train": 8,  # train: `python -m ridecodec.train`, the CLI's train group
}
GROUPS = {"exact_cpu": "exact", "inpainting": "sampling"}  # inpainting draws its proposals with the sampler


def _part(module: str) -> str:
    """The layer entry of a dotted module name below the package (e.g. 'models.mcgsm' -> 'models')."""
    if module == "models.base":
        return module
    first = module.split(".", maxsplit=1)[0]
    return GROUPS.get(first, first)


def _imports(path: Path, root: Path = PACKAGE) -> set[str]:
    """Modules of the package at ``root`` that ``path`` imports, as dotted names below it."""
    relative = path.relative_to(root).with_suffix("")
    package = list(relative.parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "ridecodec":
                target = node.module.split(".")[1:]
            else:
                continue
            names = [alias.name for alias in node.names]
            # `from . import engine` imports a module; `from .engine import x` imports from one
            modules = [
                ".".join(target + [name])
                for name in names
                if (root.joinpath(*target, name + ".py")).exists() or (root.joinpath(*target, name)).is_dir()
            ]
            found.update(modules or [".".join(target)])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ridecodec":
                    found.add(".".join(alias.name.split(".")[1:]))
    return {module for module in found if module}


def _upward(root: Path) -> list[str]:
    """Every import in the package at ``root`` that runs upward or sideways."""
    found = []
    for path in sorted(root.rglob("*.py")):
        importer = ".".join(path.relative_to(root).with_suffix("").parts)
        importer_part = _part(importer)
        assert importer_part in LAYERS, f"{importer}: a new module; give it a layer in tests/test_layers.py"
        for imported in _imports(path, root):
            imported_part = _part(imported)
            if imported_part == importer_part:
                continue
            assert imported_part in LAYERS, f"{importer} imports unknown {imported}"
            if LAYERS[imported_part] >= LAYERS[importer_part]:
                found.append(f"{importer} -> {imported}")
    return found


def test_imports_run_down_the_layers():
    upward = _upward(PACKAGE)
    assert not upward, f"imports that run upward or sideways: {upward}"


def test_the_checker_catches_an_import_at_call_time(tmp_path):
    """How layouts.py once reached the engine: an import inside a function counts too."""
    root = tmp_path / "ridecodec"
    (root / "models").mkdir(parents=True)
    (root / "engine.py").write_text("X = 1\n")
    (root / "imageio.py").write_text("Y = 1\n")
    (root / "models" / "layouts.py").write_text("def f():\n    from ..engine import X\n    return X\n")
    (root / "container.py").write_text("from . import imageio\n")
    assert sorted(_upward(root)) == ["container -> imageio", "models.layouts -> engine"]
