"""The conformance kit (ridecodec.testing) on every installed model, and proof that its checks
catch what they claim to: models that lie about exactness fail them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ridecodec import registry, testing

#: The models ridecodec itself registers; plug-ins run the kit in their own tests (loco does).
BUILT_IN = [name for name in registry.available_models() if registry.describe_model(name).package == "ridecodec"]


@pytest.mark.parametrize("check", testing.CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_models_conform(name, check):
    check(name)


def test_the_built_in_models_are_registered():
    assert set(BUILT_IN) == {"mcgsm", "ride"}


def test_the_built_in_models_claim_exactness():
    for name in ("ride", "mcgsm", "loco"):
        assert registry.load_model(name).exact_across_devices, name


# --- the checks have teeth ------------------------------------------------------------------------

LIARS = '''
import torch
from ridecodec.models import CausalReach, DensityModel


class Liar(DensityModel):
    """Claims exactness; its tables depend on {what}."""

    name = "{name}"
    version = "0"
    modes = ("L",)
    reach = CausalReach(0, 1, 0)
    exact_across_devices = True

    def __init__(self):
        super().__init__()
        self.register_buffer("sharpness", torch.tensor(0.05))

    def begin(self, canvas):
        def step(rows, cols, channel):
            left = torch.where(cols > 0, canvas[0, rows, (cols - 1).clamp(min=0)].long(), 128)
            distance = (torch.arange(256)[None, :] - left[:, None]).abs().float()
            return torch.exp(-self.sharpness * distance) + {bump}
        return step

    def log_prob(self, images):
        from ridecodec.engine import replayed_log_prob
        return torch.tensor([replayed_log_prob(self, image) for image in images], dtype=torch.float64)
'''


@pytest.fixture
def liars(tmp_path, monkeypatch):
    """Two lying plug-ins, installed through entry points where subprocesses see them too."""
    sources = {
        "liar-batch": ("the batch size", "0.01 * len(rows)"),
        "liar-kernels": ("the CPU kernels", "(0.01 if torch.backends.cpu.get_cpu_capability() == 'DEFAULT' else 0.0)"),
    }
    lines = []
    for name, (what, bump) in sources.items():
        module = name.replace("-", "_")
        (tmp_path / f"{module}.py").write_text(LIARS.format(name=name, what=what, bump=bump))
        lines.append(f"{name} = {module}:Liar")
    info = tmp_path / "liars-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: liars\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ridecodec.models]\n" + "\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    yield
    registry._load_on.cache_clear()


def test_determinism_check_catches_tables_that_change_with_the_split(liars):
    with pytest.raises(AssertionError, match="positions per call"):
        testing.check_determinism("liar-batch")


@pytest.mark.skipif(len(testing.available_kernel_sets()) < 2, reason="one kernel set only")
def test_cross_kernel_check_catches_tables_that_change_with_the_kernels(liars):
    """The liar's tables differ under the default (SSE) kernels only, so the check must find it
    whatever kernels this CPU runs by itself (AVX2 or AVX-512)."""
    testing.check_determinism("liar-kernels")  # in one process it looks exact ...
    with pytest.raises(AssertionError, match="not exact across kernels: default"):
        testing.check_cross_kernel("liar-kernels")  # ... but not under the default kernels


_FLOAT_MATH = r"""
import json, torch
torch.manual_seed(0)
x = torch.randn(37, 256)
y = torch.sigmoid(x) * torch.softmax(x, 1) + torch.addcmul(x, x, torch.tanh(x), value=0.3).exp()
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "bits": y.view(torch.int32).sum().item()}))
"""


@pytest.mark.skipif(len(testing.available_kernel_sets()) < 2, reason="one kernel set only")
def test_the_kernel_sets_really_compute_float_math_differently():
    """Why the cross-kernel check exists: torch's float kernels (sigmoid, softmax, addcmul, exp:
    what the float models of ridecodec 0.1 used) give other bits under each kernel set here."""
    outputs = {}
    for kernels in testing.available_kernel_sets():
        env = {**__import__("os").environ, **testing.KERNEL_SETS[kernels]}
        result = subprocess.run(
            [sys.executable, "-c", _FLOAT_MATH], env=env, capture_output=True, text=True, check=True
        )
        outputs[kernels] = json.loads(result.stdout)
        assert outputs[kernels]["capability"].lower() == kernels
    assert len({output["bits"] for output in outputs.values()}) > 1, outputs
