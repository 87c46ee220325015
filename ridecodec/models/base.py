"""The plug-in contract: what a density model must provide to be a ridecodec codec.

A model is a ``torch.nn.Module`` subclass of :class:`DensityModel`. It promises three things and
may offer a fourth:

1. **A causal reach** (:class:`CausalReach`): how far up, left and right (in earlier rows) its
   prediction for a pixel can look, recurrence included. The engine derives the decoding order
   from it: with right-reach ``r`` all pixels with the same ``t = (r + 1) * row + col`` are
   decoded together. ``reach = None`` means "unbounded" and gets plain raster order. A model
   coded in another order altogether (a multi-scale model: a subsampled image first, then the
   rest) returns it from ``coding_order(height, width)`` (:class:`CodingOrder`).

2. **A stepping function**: ``begin(canvas)`` returns a callable
   ``step(rows, cols, channel) -> (N, 256) float32 tensor`` giving, for each listed position, a
   non-negative weight for each 8-bit value of that channel, proportional to its probability (the
   coder normalizes; an exact model returns integer frequencies, see ``ridecodec.exact``). The
   engine guarantees that when it calls ``step``, ``canvas`` (uint8, shape (C, H, W), on the
   model's device) holds every pixel of every earlier call and channels ``< channel`` of these
   positions; everything else is zero. Calls come in a fixed order (wavefront step by step,
   channel by channel within a step, positions in ascending rows) that the encoder and decoder
   both follow, so a model may keep state between calls (a recurrent model keeps its hidden
   states for the live diagonals). For an exact model the engine may hand a step's positions over
   in several consecutive calls, and run on several threads.

3. **A likelihood**: ``log_prob(images)`` for a batch of uint8 images (B, C, H, W) returns the
   natural-log likelihood of each image, shape (B,), float64. Its sum must equal the sum of the
   logs of the stepped probabilities of the actual pixels: that ties the model's rate in bits per
   pixel to the coded file size, and a test checks it for every model.

4. **Sampling** (optional): ``can_sample = True`` lets ``ridecodec sample`` and ``ridecodec
   inpaint`` draw from the model. Nothing else is needed: the generic sampler
   (``ridecodec.sampling``) drives the step function exactly as the decoder does (an empty
   canvas, the same wavefront order, each step's pixels written in before the next call), but
   draws each pixel from its table with seeded integer randomness instead of decoding it. A
   model that keeps the contract above can therefore opt in by setting the attribute; one that
   does not is refused in one line ("model X cannot sample"). With an exact model, a seed gives
   the same image on every machine.

The step function must be deterministic: the same calls on the same device give bit-identical
tables. A model whose tables are also identical across devices, CPU kernel sets, thread counts
and splits of a step (integer arithmetic from ``ridecodec.exact``) sets
``exact_across_devices = True``; ``ridecodec.testing`` (the conformance kit) checks every part
of this contract, that claim included.

Plug-ins register a zero-argument factory (usually the class itself) under the entry-point group
``ridecodec.models``; see the README's "Write your own model".

``name``, ``version``, ``modes``, ``reach``, ``exact_across_devices`` and ``can_sample`` are class
attributes, set in the class body, never in ``__init__``: the registry reads them from the class,
so listing models (``ridecodec models``) and choosing the default model for an image build no
model and load no weights. A model that still sets ``modes`` or ``reach`` per instance works, but is built just to
be listed. Only the weights digest needs a built model (``ridecodec models --digests``); keep
``__init__`` cheap too (build large derived tables at first ``begin``), since decoding builds the
model to check a file's digest before it decodes anything.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

#: Number of values an 8-bit sample can take; every probability table has this many columns.
ALPHABET_SIZE = 256

#: The channel layouts the codec can hand a model, by PIL mode name.
CHANNEL_LAYOUTS = {"L": 1, "RGB": 3, "RGBA": 4}

#: What the built-in models' retired float versions (ride 1 and 2, mcgsm 1) tell the user.
FLOAT_VERSIONS_NOTE = (
    "to read it, install ridecodec 0.1.0 (git commit 8a797f6) and decode on the kind of machine that "
    "wrote it: those versions computed their tables in float arithmetic, which other CPUs and GPUs round differently"
)

StepFunction = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


class CodingOrder(Protocol):
    """The order in which pixels are coded: ``steps()`` yields (t, rows, cols) for t = 0, 1, ...
    (rows and cols: int64 CPU tensors, rows ascending within a step; every pixel exactly once),
    and ``num_steps`` says how many. ``ridecodec.schedule`` has the wavefront and the building
    blocks of other orders (``Scaled``, ``Skipping``, ``Stages``, ``subsampled_first``)."""

    @property
    def num_steps(self) -> int: ...

    def steps(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]: ...


@dataclass(frozen=True)
class CausalReach:
    """How far a model's prediction for pixel (i, j) can look into already-known pixels.

    ``up``: rows above; ``left``: columns to the left (in the same and earlier rows);
    ``right``: columns to the right, in earlier rows only. Only ``right`` changes the schedule;
    ``up`` and ``left`` document the model and let tests check its causality.
    """

    up: float  # an int, or math.inf: unbounded (only ``right`` must be finite: it schedules)
    left: float
    right: int

    def __post_init__(self):
        if min(self.up, self.left, self.right) < 0:
            raise ValueError("a causal reach cannot be negative")


class DensityModel(torch.nn.Module, abc.ABC):
    """Base class of every ridecodec density model (built-in or plug-in).

    The attributes below are class-level metadata, read by the registry without building the
    model: set them in the class body (``modes`` and ``reach`` included), not in ``__init__``.
    """

    #: Registered name, as written in file headers and given to ``--model``.
    name: ClassVar[str]
    #: Version of the model's code; files record it.
    version: ClassVar[str]
    #: Channel layouts (keys of CHANNEL_LAYOUTS) this model can code.
    modes: ClassVar[tuple[str, ...]] = ("L", "RGB", "RGBA")
    #: Causal reach, or None when it cannot be bounded (raster order is then used).
    reach: ClassVar[CausalReach | None]
    #: True when the tables are bit-identical on every device (not only on the encoding one).
    exact_across_devices: ClassVar[bool] = False
    #: True when ``ridecodec sample`` and ``inpaint`` may draw from the model through its step
    #: function (``ridecodec.sampling``); the others are refused in one line.
    can_sample: ClassVar[bool] = False
    #: For a model too slow for large images (one coded in raster order, say): about how many
    #: seconds one pixel takes to code on one CPU thread (measured by its author), one figure or
    #: one per layout (``{"L": ..., "RGB": ...}``: a colour pixel is several codings), and the
    #: largest image, in pixels, the codec codes with it unless the user raises the limit
    #: (``--model-pixel-limit``). The codec says how long a slow coding will take before it starts
    #: and refuses larger images in one line with the estimate. None: no limit, no estimate.
    seconds_per_pixel: ClassVar[float | Mapping[str, float] | None] = None
    pixel_limit: ClassVar[int | None] = None
    #: Earlier versions whose files this code no longer decodes, each with what to do to read
    #: them (one line, e.g. which release to install); the decoder says so instead of "weights differ".
    retired_versions: ClassVar[dict[str, str]] = {}
    #: Earlier versions whose files this code still decodes (their own weights, kept beside the
    #: current ones): the decoder builds the model of a file's version with :meth:`for_version`.
    readable_versions: ClassVar[tuple[str, ...]] = ()
    #: Per layout, earlier versions (among ``readable_versions``) whose tables for that layout
    #: differ from the current ones and suit some images better: the encoder tries each on a probe
    #: of every image of that layout and codes the image with the version that codes it shortest
    #: (files record the version). E.g. ``ride`` 4's RGB weights for lossless photographs, 3's
    #: for decoded JPEGs.
    alternative_versions: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def for_version(cls, version: str) -> DensityModel:
        """The model as it was at ``version`` (one of ``readable_versions``): its tables must be
        exactly those its files were written with. Models that keep earlier versions implement it."""
        raise NotImplementedError(f"model {cls.name!r} keeps no earlier versions")

    @classmethod
    def from_weights_file(cls, path: str) -> DensityModel:
        """The model with weights from ``path`` (e.g. made by ``ridecodec train``) instead of its
        shipped ones: what ``--weights FILE`` builds. Optional for plug-ins; raise ValueError with
        a one-line reason for a file that is not this model's weights."""
        raise NotImplementedError(f"model {cls.name!r} takes no weights files")

    @abc.abstractmethod
    def begin(self, canvas: torch.Tensor) -> StepFunction:
        """Start coding one image held in ``canvas`` (uint8, (C, H, W)); return its step function."""

    @abc.abstractmethod
    def log_prob(self, images: torch.Tensor) -> torch.Tensor:
        """Natural-log likelihood of each uint8 image in (B, C, H, W); returns (B,) float64."""

    def coding_order(self, height: int, width: int) -> CodingOrder | None:
        """The order in which this model codes an H x W image, for a model that is coded neither
        in the wavefront of its reach nor in raster order (a multi-scale model codes a subsampled
        image first). None, the default: the engine derives the order from ``reach``. Encoder,
        decoder, sampler and the conformance kit all follow what this returns."""
        return None

    @classmethod
    def has_own_order(cls) -> bool:
        """Whether the model chooses its own coding order (overrides :meth:`coding_order`)."""
        return cls.coding_order is not DensityModel.coding_order

    @property
    def device(self) -> torch.device:
        tensors = list(self.parameters()) + list(self.buffers())
        return tensors[0].device if tensors else torch.device("cpu")

    def weights_digest(self) -> str:
        """SHA-256 (hex) of the model's identity: name, version and every parameter and buffer.

        Files store it so that a decoder with different weights refuses instead of producing
        garbage. Computed from CPU copies, so the same weights give the same digest anywhere.
        """
        digest = hashlib.sha256()
        digest.update(f"{self.name}\0{self.version}\0".encode())
        for key, tensor in sorted(self.state_dict().items()):
            tensor = tensor.detach().to("cpu").contiguous()
            digest.update(f"{key}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()
