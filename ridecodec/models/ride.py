"""RIDE, the recurrent image density estimator of Theis & Bethge 2015, as the model ``ride``.

For pixel (i, j) of one channel:

    x_<ij     the causal neighbourhood (neighbourhood.py), whitened: x_w = W (x - mean)
    h_ij      the top hidden state of a stack of spatial LSTM layers (slstm.py) reading x_w,
              h_(i,j-1) and h_(i-1,j)
    p(y | x_<ij) = MCGSM(y_w | h_ij),  y_w = (y - mean_y - p . x_w) / scale

The MCGSM and the conditional whitening are the MCGSM model's (mcgsm.py, whitening.py): the
MCGSM's input is the hidden state instead of the neighbourhood, while the whitening's linear
prediction from x still sets where the residual y_w is centred. In pixel units, component c of
scale s has the mean ``mean_y + p . x_w + scale * a_c . h`` and the variance
``scale^2 exp(-alpha_cs)``; tables and the training loss come from the same condensed mixture as
the MCGSM's (``mcgsm.condense_mixture``, ``discretize.py``), so the training loss is the coded
size and ``log_prob`` reads the coder's tables.

Colour as for the MCGSM: RGB channel after channel, each channel its own RIDE (its own states)
reading the neighbourhood in all three channels plus the pixel's earlier channels; the alpha of
RGBA uses the gray RIDE on the alpha plane.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, cast

import torch

from .. import exact
from .base import FLOAT_VERSIONS_NOTE, CausalReach
from .discretize import GaussianMixture, mixture_bin_log_mass
from .layouts import PerChannelModel
from .mcgsm import ExactMCGSMHead, FactorizedMCGSM, MixtureParameters, condense_mixture
from .neighbourhood import CausalNeighbourhood
from .slstm import NUM_GATES, ExactSpatialLSTM, ExactSpatialLSTMStepper, SpatialLSTM, SpatialLSTMStack
from .weights import WeightsFiles
from .whitening import ConditionalWhitening


@dataclass(frozen=True)
class RIDEConfig:
    up: int = 4  # neighbourhood rows above the pixel
    left: int = 4  # neighbourhood columns left of the pixel
    right: int = 2  # neighbourhood columns right of the pixel, in the rows above
    num_layers: int = 1  # spatial LSTM layers (the paper: 1 to 3)
    num_hiddens: int = 64  # units per layer (the paper: 64 to 128)
    extended: bool = False  # gates also read the neighbouring memory cells
    #: The MCGSM reads the whitened neighbourhood x_w besides h (not in the paper): a skip
    #: connection, so that a RIDE can start out as a trained MCGSM (``train ride --from-mcgsm``).
    head_reads_neighbourhood: bool = False
    num_components: int = 32
    num_scales: int = 4
    num_features: int = 32
    #: (component, scale) pairs kept exactly in the tables; the rest are condensed (mcgsm.py)
    table_components: int = 2
    #: Uniform probability mixed into every table (see discretize.py).
    floor: float = 2.0**-12


#: The scan of whole images (training's validation) handles bands of rows whose first-layer
#: pre-activations hold at most this many numbers (256 MB), carrying the states of a band's last
#: row into the next band, so multi-megapixel images fit; a 481 x 321 image is one band.
BAND_ELEMENTS = 2**26


def conditioning(
    neighbourhood: CausalNeighbourhood,
    planes: torch.Tensor,
    channel: int,
    first_row: int = 0,
    last_row: int | None = None,
) -> torch.Tensor:
    """``neighbourhood.gather`` for every pixel of rows first_row .. last_row - 1 of a batch of
    images ``planes`` (B, C, H, W) uint8: (B, rows, W, C * size + channel) float32."""
    batch, _, height, width = planes.shape
    last_row = height if last_row is None else last_row
    rows = torch.arange(first_row, last_row, device=planes.device).repeat_interleave(width)
    cols = torch.arange(width, device=planes.device).repeat(last_row - first_row)
    return neighbourhood.gather(planes, rows, cols, channel).view(batch, last_row - first_row, width, -1)


def interior(neighbourhood: CausalNeighbourhood, first_row: int, last_row: int, width: int):
    """Index (rows, columns) of a band of rows first_row .. last_row - 1 selecting the pixels
    whose neighbourhood lies inside the image: rows from ``up`` on, columns from ``left`` to
    ``width - 1 - right``. Training on small patches scores only these: in a 12 x 12 patch two
    thirds of the pixels read the border fill, against a few percent in a whole image, and a
    model fitted to all of them fits the border (measured: L-BFGS on the head of a RIDE started
    from the MCGSM took 12 x 12 patches from 4.59 to 4.43 bits per pixel, and whole held-back
    images from 3.867 to 3.973)."""
    return (
        slice(max(0, neighbourhood.up - first_row), last_row - first_row),
        slice(neighbourhood.left, width - neighbourhood.right),
    )


class FoldedRIDE(NamedTuple):
    """A :class:`ChannelRIDE`'s parameters as coding and training use them (``ChannelRIDE.folded``)."""

    input_matrix: torch.Tensor  # (D, 5 * hidden + 1 [+ D]): raw x -> [pre-activations | prediction [| x_w]]
    input_bias: torch.Tensor  # (5 * hidden + 1 [+ D],)
    head_matrix: torch.Tensor  # (hidden [+ D], F + C): u -> [features b_n . u | scale * a_c . u]
    mixture: MixtureParameters  # the MCGSM head's gate and experts, variances in pixel units


class FirstLayerInputs(NamedTuple):
    """What a RIDE computes from the conditioning vectors x (N, D) in one product."""

    pre_activations: torch.Tensor  # (N, 5 * hidden): the first spatial LSTM layer's, from x
    direct: torch.Tensor  # (N, 1 [+ D]): what the head takes from x: the linear prediction [and x_w]


class Band(NamedTuple):
    """A band of rows of a scan (``ChannelRIDE.bands``)."""

    first_row: int
    last_row: int  # exclusive
    h: torch.Tensor  # (B, rows * W, hidden): the top layer's hidden states
    direct: torch.Tensor  # (B, rows * W, 1 [+ D]): as ``FirstLayerInputs.direct``


class ChannelRIDE(torch.nn.Module):
    """p(pixel | everything before it) for one channel: whitening, spatial LSTMs, MCGSM."""

    def __init__(self, dim_in: int, config: RIDEConfig):
        super().__init__()
        self.config = config
        self.whitening = ConditionalWhitening(dim_in)
        self.slstm = SpatialLSTMStack(dim_in, config.num_hiddens, config.num_layers, config.extended)
        head_inputs = config.num_hiddens + (dim_in if config.head_reads_neighbourhood else 0)
        self.mcgsm = FactorizedMCGSM(head_inputs, config.num_components, config.num_scales, config.num_features)

    def initialize(self, generator: torch.Generator) -> None:
        """Random spatial LSTMs; the MCGSM as cmt initializes it, but with the scales of each
        component spread over a range of precisions (log precision -1 to 1 around cmt's), so
        that the head starts as a scale mixture: residuals of natural images are heavy-tailed,
        and from near-identical scales gradient training takes long to break the symmetry."""
        self.slstm.initialize(generator)
        self.mcgsm.initialize(generator)
        if self.config.num_scales > 1:
            with torch.no_grad():
                self.mcgsm.scales.add_(torch.linspace(-1, 1, self.config.num_scales))

    def folded(self) -> FoldedRIDE:
        """The parameters as coding and training use them, the whitening folded in: the input
        matrix and bias map raw x to [the first layer's input pre-activations T_x x_w + bias |
        the linear prediction mean_y + p . x_w [| x_w, if the head reads it]]; the head matrix
        maps the head's input u = h [or (h, x_w)] to the MCGSM's features and component means.

        Coding computes them once per image; training recomputes them per batch (they are
        differentiable)."""
        w, mcgsm, first = self.whitening, self.mcgsm, cast(SpatialLSTM, self.slstm.layers[0])
        columns, biases = [first.input_weights, w.y_predictor[:, None]], [first.bias, w.y_mean[None]]
        if self.config.head_reads_neighbourhood:
            columns.append(torch.eye(len(w.x_mean), device=w.x_mean.device))
            biases.append(torch.zeros_like(w.x_mean))
        input_matrix, input_bias = w.fold(torch.cat(columns, dim=1), torch.cat(biases))
        head_matrix = torch.cat([mcgsm.features, w.y_scale * mcgsm.predictors.T], dim=1)
        return FoldedRIDE(input_matrix, input_bias, head_matrix, mcgsm.mixture_parameters(w.y_scale))

    def first_layer_inputs(self, x: torch.Tensor, folded: FoldedRIDE) -> FirstLayerInputs:
        """What x (N, D) gives in one product; both tensors are views of it."""
        projected = torch.addmm(folded.input_bias, x, folded.input_matrix)
        gates = NUM_GATES * self.config.num_hiddens
        return FirstLayerInputs(projected[:, :gates], projected[:, gates:])

    def mixture(self, h: torch.Tensor, direct: torch.Tensor, folded: FoldedRIDE) -> GaussianMixture:
        """The condensed mixture for top hidden states h (N, hidden) and what the head takes
        from x directly (N, 1 [+ D], ``FirstLayerInputs.direct``): each tensor (N, K + 1)."""
        head_input = torch.cat([h, direct[:, 1:]], dim=1) if self.config.head_reads_neighbourhood else h
        projected = head_input @ folded.head_matrix
        features = projected[:, : self.config.num_features]
        means = projected[:, self.config.num_features :] + direct[:, :1]  # (N, C)
        return condense_mixture(features, means, folded.mixture, self.config.table_components)

    def bands(
        self, neighbourhood: CausalNeighbourhood, planes: torch.Tensor, channel: int, folded: FoldedRIDE
    ) -> Iterator[Band]:
        """Scan a batch of images (B, C, H, W) band of rows by band of rows. Differentiable."""
        batch, _, height, width = planes.shape
        rows_per_band = max(1, BAND_ELEMENTS // max(1, batch * width * NUM_GATES * self.config.num_hiddens))
        tops = None
        for first in range(0, height, rows_per_band):
            last = min(height, first + rows_per_band)
            x = conditioning(neighbourhood, planes, channel, first, last)
            inputs = self.first_layer_inputs(x.flatten(0, 2), folded)
            h, tops = self.slstm.scan(inputs.pre_activations.view(batch, last - first, width, -1), tops)
            direct = inputs.direct.view(batch, -1, inputs.direct.shape[-1])
            yield Band(first, last, h.view(batch, -1, h.shape[-1]), direct)

    def log_likelihood(
        self,
        neighbourhood: CausalNeighbourhood,
        planes: torch.Tensor,
        channel: int,
        values: torch.Tensor,
        interior_only: bool = False,
    ) -> torch.Tensor:
        """Natural-log likelihood (B,) float64 of ``values`` (B, H, W) uint8, the pixels of this
        channel, given the images ``planes`` (B, C, H, W) the channel reads: the bins' masses of
        the condensed mixture, differentiable (training's objective and its validation score; the
        coder's tables give the same numbers up to float rounding, see ``RIDEModel.log_prob``).
        ``interior_only``: of the pixels whose neighbourhood lies inside the image only
        (``interior``)."""
        folded = self.folded()
        total = torch.zeros(len(planes), dtype=torch.float64, device=planes.device)
        for band in self.bands(neighbourhood, planes, channel, folded):
            y = values[:, band.first_row : band.last_row].reshape(-1).long()
            mixture = self.mixture(band.h.flatten(0, 1), band.direct.flatten(0, 1), folded)
            log_p = mixture_bin_log_mass(y, mixture.weights, mixture.means, mixture.inverse_stds, self.config.floor)
            log_p = log_p.view(len(planes), band.last_row - band.first_row, -1)
            if interior_only:
                rows, cols = interior(neighbourhood, band.first_row, band.last_row, log_p.shape[2])
                log_p = log_p[:, rows, cols]
            total = total + log_p.double().sum((1, 2))
        return total


class ExactProducts(NamedTuple):
    """An :class:`ExactChannelRIDE`'s two exact matrix products."""

    inputs: exact.ExactLinear  # raw x -> [the first layer's input pre-activations | the head's direct inputs]
    head: exact.ExactLinear  # the top layer's h -> the head's projections, less the direct inputs


class ExactChannelRIDE(torch.nn.Module):
    """A RIDE channel in exact arithmetic (exact.py), quantized from a trained :class:`ChannelRIDE`.

    One integer matrix maps the raw neighbourhood (pixel values) to the first layer's input
    pre-activations and to the head's direct inputs: the whitening, the linear prediction and
    (``head_reads_neighbourhood``) the head's weights on x_w folded in. The spatial LSTM layers
    are :class:`ExactSpatialLSTM`; the head reads the top h through ``head_weight`` (hidden,
    F + C) at 2**-(PRE_BITS - ACT_BITS), adds the direct inputs and ends in the exact MCGSM head
    (``mcgsm.ExactMCGSMHead``)."""

    input_weight: torch.Tensor
    input_bias: torch.Tensor
    head_weight: torch.Tensor
    _linear: dict[Any, ExactProducts]  # per (device, weights' versions)

    def __init__(self, dim_in: int, config: RIDEConfig):
        super().__init__()
        hidden, heads = config.num_hiddens, config.num_features + config.num_components
        self.config = config
        self.register_buffer("input_weight", torch.zeros(dim_in, NUM_GATES * hidden + heads, dtype=torch.int64))
        self.register_buffer("input_bias", torch.zeros(NUM_GATES * hidden + heads, dtype=torch.int64))
        self.layers = torch.nn.ModuleList(
            ExactSpatialLSTM(hidden, config.extended, stacked=l > 0) for l in range(config.num_layers)
        )
        self.register_buffer("head_weight", torch.zeros(hidden, heads, dtype=torch.int64))
        self.head = ExactMCGSMHead(
            config.num_features, config.num_components, config.num_scales, config.table_components
        )
        self._linear = {}

    @classmethod
    def quantize(cls, model: ChannelRIDE) -> ExactChannelRIDE:
        config = model.config
        hidden, gates = config.num_hiddens, NUM_GATES * config.num_hiddens
        exact_model = cls(len(model.whitening.x_mean), config)
        with torch.no_grad():
            folded = copy.deepcopy(model).double().folded()
            input_matrix, input_bias, head_matrix = folded.input_matrix, folded.input_bias, folded.head_matrix
            prediction, prediction_bias = input_matrix[:, gates], input_bias[gates]
            if config.head_reads_neighbourhood:  # x_w = (x - mean) W, then the head's rows for x_w
                direct = input_matrix[:, gates + 1 :] @ head_matrix[hidden:]
                direct_bias = input_bias[gates + 1 :] @ head_matrix[hidden:]
            else:
                direct = input_matrix.new_zeros(len(input_matrix), head_matrix.shape[1])
                direct_bias = input_bias.new_zeros(head_matrix.shape[1])
            # the components' means all add the linear prediction
            direct[:, config.num_features :] += prediction[:, None]
            direct_bias[config.num_features :] += prediction_bias
            exact_model.input_weight.copy_(
                exact.to_fixed(torch.cat([input_matrix[:, :gates], direct], 1), exact.PRE_BITS)
            )
            exact_model.input_bias.copy_(exact.to_fixed(torch.cat([input_bias[:gates], direct_bias]), exact.PRE_BITS))
            exact_model.head_weight.copy_(exact.to_fixed(head_matrix[:hidden], exact.PRE_BITS - exact.ACT_BITS))
            exact_model.layers = torch.nn.ModuleList(
                ExactSpatialLSTM.quantize(cast(SpatialLSTM, layer), stacked=l > 0)
                for l, layer in enumerate(model.slstm.layers)
            )
            exact_model.head = ExactMCGSMHead.quantize(model.mcgsm, model.whitening.y_scale, config.table_components)
        return exact_model

    def linears(self) -> ExactProducts:
        """The exact products, built once per device and weights."""
        key = (self.input_weight.device, self.input_weight._version, self.head_weight._version)
        if key not in self._linear:
            self._linear = {
                key: ExactProducts(
                    inputs=exact.ExactLinear(self.input_weight, self.input_bias, 255),
                    head=exact.ExactLinear(self.head_weight, None, 1 << exact.ACT_BITS),
                )
            }
        return self._linear[key]


class ExactRIDESteps:
    """The step function of one image (what ``RIDEModel.begin`` returns): for each channel of
    the canvas, its exact RIDE and its spatial LSTM states. What a step reads of the model (its
    products, its head, where its neighbourhood lies in the canvas) is prepared once here: a
    coding pass makes thousands of steps with the same weights."""

    def __init__(self, model: RIDEModel, canvas: torch.Tensor):
        width = canvas.shape[2]
        self.plans = model._plan(canvas.shape[0])
        self.states = [ExactSpatialLSTMStepper(plan.network.layers, width, canvas.device) for plan in self.plans]
        self.gather = [
            plan.neighbourhood.gatherer(canvas[plan.planes], plan.channel, dtype=states.dtype)
            for plan, states in zip(self.plans, self.states)
        ]
        self.products = [plan.network.linears() for plan in self.plans]
        self.heads = [plan.network.head.prepared() for plan in self.plans]
        #: the input product's first columns: the first layer's pre-activations, then the head's
        self.gates = [NUM_GATES * plan.network.config.num_hiddens for plan in self.plans]

    def __call__(self, rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
        states, products, head = self.states[channel], self.products[channel], self.heads[channel]
        gates = self.gates[channel]
        x = self.gather[channel](rows, cols)
        if states.dtype == torch.float64:  # the CPU kernels' path: exact integers in float64
            projected = products.inputs.float_result(x)
            h = states.step(projected[:, :gates], cols)
            return head(projected[:, gates:] + products.head.float_result(h))
        projected = products.inputs(x)
        h = states.step(projected[:, :gates], cols)
        return head(projected[:, gates:] + products.head(h))

    def state_elements(self) -> int:
        """Numbers of recurrent state held for the image, all channels and layers."""
        return sum(states.state_elements() for states in self.states)


#: The model's weights files, float and exact; training and the tests use the functions by these names.
WEIGHTS_FILES = WeightsFiles("ridecodec-ride-1", "ridecodec-ride-exact-1", RIDEConfig, ChannelRIDE, ExactChannelRIDE)
build_channel_models, save_weights, load_weights = WEIGHTS_FILES.build, WEIGHTS_FILES.save, WEIGHTS_FILES.load
load_exact_weights = WEIGHTS_FILES.load_exact


#: Shipped weights, inside the package: gray for L (and alpha), colour for RGB. The float files
#: are the trained weights (for training on from them); the exact files are their quantization,
#: which coding uses (``python -m ridecodec.models.export``).
SHIPPED_WEIGHTS = {"L": "ride-gray.pt", "RGB": "ride-rgb-5.pt"}
SHIPPED_EXACT_WEIGHTS = {"L": "ride-gray-exact.pt", "RGB": "ride-rgb-5-exact.pt"}
#: Version 4's exact weights (the RGB network of 5, trained for less long), kept to decode its files.
VERSION_4_EXACT_WEIGHTS = {"L": "ride-gray-exact.pt", "RGB": "ride-rgb-4-exact.pt"}
#: Version 3's exact weights (its RGB weights trained on decoded JPEGs), kept to decode its files.
VERSION_3_EXACT_WEIGHTS = {"L": "ride-gray-exact.pt", "RGB": "ride-rgb-exact.pt"}


class RIDEModel(PerChannelModel):
    """The built-in model ``ride``: a RIDE per channel (layouts.py), each with its own states.

    ``weights`` maps "L" (required) and "RGB" (optional) to weights files written by
    :func:`save_weights`; by default the shipped ones.
    """

    name = "ride"
    #: 5: version 4's RGB training run resumed (MODEL_CARD.md), gray as in 3; 4: RGB weights
    #: trained further on lossless-like colour photographs, gray as in 3; 3: exact integer
    #: arithmetic, the version 2 weights quantized; 2: gray weights trained further, float
    #: tables. Files of 1 and 2 need ridecodec 0.1 (errors.py).
    version = "5"
    exact_across_devices = True
    can_sample = True  # ridecodec.sampling draws from the step function
    SHIPPED_WEIGHTS = SHIPPED_EXACT_WEIGHTS
    EARLIER_SHIPPED_WEIGHTS: ClassVar[dict[str, dict[str, str]]] = {
        "3": VERSION_3_EXACT_WEIGHTS,
        "4": VERSION_4_EXACT_WEIGHTS,
    }
    # 3's RGB weights, trained on decoded JPEGs (4:2:0 chroma), code such images 10% shorter;
    # 5's (as 4's) code lossless-origin photographs 10% shorter: the encoder tries both on each
    # image (not 4: the same network trained for less long)
    alternative_versions: ClassVar[dict[str, tuple[str, ...]]] = {"RGB": ("3",), "RGBA": ("3",)}
    retired_versions: ClassVar[dict[str, str]] = {"1": FLOAT_VERSIONS_NOTE, "2": FLOAT_VERSIONS_NOTE}
    read_weights = staticmethod(load_exact_weights)

    def __init__(self, weights: Mapping[str, str | Path] | None = None):
        super().__init__(weights)
        # The reach. Through h_(i,j-1) and h_(i-1,j) the state at (i, j) depends on every state
        # up and to the left of it, so the reach up and left is unbounded. To the right it is the
        # neighbourhood's: the recurrence only ever steps left or up, and every state (k, l) with
        # k <= i, l <= j reads pixels at most `right` columns right of l, in rows above k; so the
        # prediction of (i, j) reads at most column j + right, in earlier rows. That is what the
        # engine's wavefront t = (right + 1) * i + j needs: (i, j - 1) is in step t - 1, (i - 1, j)
        # in step t - right - 1, and a pixel (i - a, j + b) with a >= 1, b <= right in step
        # t - (right + 1) * a + b <= t - 1. (math.inf: base.CausalReach has no other way to say
        # "unbounded" for up and left, which only document the model; only `right` schedules.)
        right = max(n.right for n in self.neighbourhoods.values())
        self.reach = CausalReach(up=math.inf, left=math.inf, right=right)  # type: ignore[misc]  # from the weights

    def begin(self, canvas: torch.Tensor) -> ExactRIDESteps:
        return ExactRIDESteps(self, canvas)
