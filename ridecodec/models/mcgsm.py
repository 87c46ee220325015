"""The factorized mixture of conditional Gaussian scale mixtures (MCGSM), Theis & Bethge 2015.

For whitened inputs x (D,) and a whitened pixel y, with components c, scales s and shared
features b_n (the columns of ``features``):

    gate    p(c, s | x) ~ exp(eta_cs - 1/2 exp(alpha_cs) sum_n beta_cn^2 (b_n . x)^2)
    expert  p(y | x, c, s) = N(y; a_c . x, exp(-alpha_cs))
    p(y | x) = sum_cs p(c, s | x) p(y | x, c, s)

(parameter names follow lucastheis/cmt: ``priors`` eta, ``scales`` alpha, ``weights`` beta,
``features`` b, ``predictors`` a). :class:`ChannelMCGSM` puts conditional whitening in front
and discretizes the mixture into the 256 probabilities of an 8-bit pixel; :class:`MCGSMModel`
is the codec model ``mcgsm`` (one ChannelMCGSM per channel).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch

from .. import exact, exact_cpu
from .base import FLOAT_VERSIONS_NOTE, CausalReach, StepFunction
from .discretize import GaussianMixture, mixture_bin_log_mass, mixture_pmf
from .layouts import PerChannelModel
from .weights import WeightsFiles
from .whitening import ConditionalWhitening


@dataclass(frozen=True)
class MCGSMConfig:
    # The shipped models' neighbourhood (README, "The MCGSM"); the RIDE paper's is 2, 2, 2.
    up: int = 4  # neighbourhood rows above the pixel
    left: int = 4  # neighbourhood columns left of the pixel
    right: int = 2  # neighbourhood columns right of the pixel, in the rows above
    num_components: int = 32
    num_scales: int = 4
    num_features: int = 32
    #: (component, scale) pairs kept exactly in the probability tables; the rest are condensed
    #: into one Gaussian (see ChannelMCGSM). The cost of a table is linear in this.
    table_components: int = 2
    #: Uniform probability mixed into every table (see discretize.py).
    floor: float = 2.0**-12


class MixtureParameters(NamedTuple):
    """The MCGSM's gate and expert parameters as :func:`condense_mixture` reads them."""

    gate_weights: torch.Tensor  # (F, C): beta_cn^2
    half_precisions: torch.Tensor  # (C, S): exp(alpha_cs) / 2
    priors: torch.Tensor  # (C, S): eta_cs
    variances: torch.Tensor  # (C * S,), component-major: the experts' variances in pixel units


class FactorizedMCGSM(torch.nn.Module):
    """The mixture's parameters, as in the module docstring. :class:`ChannelMCGSM` evaluates the
    mixture, with the whitening folded in (``table_parameters``, ``condense_mixture``)."""

    def __init__(self, dim_in: int, num_components: int, num_scales: int, num_features: int):
        super().__init__()
        c, s, f = num_components, num_scales, num_features
        self.priors = torch.nn.Parameter(torch.zeros(c, s))
        self.scales = torch.nn.Parameter(torch.zeros(c, s))
        self.weights = torch.nn.Parameter(torch.zeros(c, f))
        self.features = torch.nn.Parameter(torch.zeros(dim_in, f))
        self.predictors = torch.nn.Parameter(torch.zeros(c, dim_in))

    def initialize(self, generator: torch.Generator) -> None:
        """cmt's initialization for whitened data: random scales around 1, small weights and
        features, predictors near the optimal linear one (zero after conditional whitening)."""
        with torch.no_grad():
            self.priors.zero_()
            self.scales.copy_(torch.randn(self.scales.shape, generator=generator) / 20)
            self.weights.copy_(torch.rand(self.weights.shape, generator=generator) / 100 + 0.01)
            self.features.copy_(torch.randn(self.features.shape, generator=generator) / 100)
            self.predictors.copy_(torch.randn(self.predictors.shape, generator=generator) / 10)

    def mixture_parameters(self, y_scale: torch.Tensor) -> MixtureParameters:
        """The gate's and the experts' parameters, the variances in pixel units for a pixel
        whitened with the residual scale ``y_scale`` (``ConditionalWhitening``)."""
        # bounded so that a table's arithmetic stays finite whatever the weights
        variances = (y_scale.square() * (-self.scales).exp()).flatten().clamp(1e-4, 1e8)
        return MixtureParameters(self.weights.square().T, 0.5 * self.scales.exp(), self.priors, variances)


def condense_mixture(
    features: torch.Tensor, means: torch.Tensor, parameters: MixtureParameters, table_components: int
) -> GaussianMixture:
    """The condensed mixture (see :class:`ChannelMCGSM`) from the MCGSM's per-pixel quantities:
    ``features`` (N, F), the projections b_n . x; ``means`` (N, C), the component means in pixel
    units; and the gate's and experts' ``parameters``. Each of the mixture's tensors is
    (N, table_components + 1). (RIDE reuses it with its hidden state in the place of x.)"""
    variances = parameters.variances
    num_scales = parameters.priors.shape[1]
    energy = features.square() @ parameters.gate_weights  # (N, C)
    logits = parameters.priors - parameters.half_precisions * energy[:, :, None]  # (N, C, S)
    weights = torch.softmax(logits.flatten(1), dim=1)  # (N, C * S), component-major
    top_weights, top = torch.topk(weights, table_components, dim=1, sorted=False)
    # The rest, condensed into one Gaussian with their total weight, mean and variance.
    rest = weights.scatter(1, top, 0.0)
    rest_per_component = rest.view(len(features), -1, num_scales).sum(2)  # (N, C): scales share a mean
    rest_weight = rest_per_component.sum(1, keepdim=True)
    normalizer = rest_weight.clamp(min=1e-12)
    rest_mean = (rest_per_component * means).sum(1, keepdim=True) / normalizer
    spread = (rest_per_component * (means - rest_mean).square()).sum(1, keepdim=True)
    rest_variance = (torch.addmm(spread, rest, variances[:, None]) / normalizer).clamp_(min=0.01)
    top_means = means.gather(1, torch.div(top, num_scales, rounding_mode="floor"))
    return GaussianMixture(
        weights=torch.cat([top_weights, rest_weight], dim=1),
        means=torch.cat([top_means, rest_mean], dim=1),
        inverse_stds=torch.cat([variances[top], rest_variance], dim=1).rsqrt_(),
    )


class TableParameters(NamedTuple):
    """A :class:`ChannelMCGSM`'s parameters as its tables use them, the whitening folded in."""

    matrix: torch.Tensor  # (D, F + C): raw x -> [features b_n . x_w | component means in pixel units]
    bias: torch.Tensor  # (F + C,)
    mixture: MixtureParameters


class ChannelMCGSM(torch.nn.Module):
    """p(pixel | conditioning vector) for one channel: whitening, MCGSM, discretization.

    The probabilities it codes with are those of a *condensed* mixture: the ``table_components``
    (component, scale) pairs with the largest gate weights, exactly, plus one Gaussian that
    carries the remaining weight with the remaining components' mean and variance (moment
    matching). The cost of a table is linear in its number of components; measured on BSDS
    images, dropping the small components outright cost 3% (6 kept), while the condensed mixture
    keeping 2 to 4 is within 0.2-0.4% of the full one. Training optimizes this same condensed
    mixture, so the training loss is the coded size.
    """

    def __init__(self, dim_in: int, config: MCGSMConfig):
        super().__init__()
        self.config = config
        self.whitening = ConditionalWhitening(dim_in)
        self.mcgsm = FactorizedMCGSM(dim_in, config.num_components, config.num_scales, config.num_features)

    def table_parameters(self) -> TableParameters:
        """The parameters as the tables use them, whitening folded into one affine map
        x -> [features b_n . x_w | component means in pixel units], so a table costs one matrix
        product instead of four. Coding computes them once per image (``MCGSMModel.begin``)."""
        w, mcgsm = self.whitening, self.mcgsm
        mean_maps = w.y_predictor[:, None] + w.y_scale * mcgsm.predictors.T  # (D, C)
        matrix, bias = w.fold(
            torch.cat([mcgsm.features, mean_maps], dim=1),  # (D, F + C)
            torch.cat([torch.zeros_like(mcgsm.features[0]), w.y_mean.expand(len(mean_maps[0]))]),
        )
        return TableParameters(matrix, bias, mcgsm.mixture_parameters(w.y_scale))

    def condensed_mixture(self, x: torch.Tensor, parameters: TableParameters | None = None) -> GaussianMixture:
        """The mixture the tables are made of, for conditioning vectors x (N, D)."""
        parameters = parameters or self.table_parameters()
        num_features = self.config.num_features
        projected = torch.addmm(parameters.bias, x, parameters.matrix)
        features, means = projected[:, :num_features], projected[:, num_features:]  # means: (N, C)
        return condense_mixture(features, means, parameters.mixture, self.config.table_components)

    def pmf(self, x: torch.Tensor, parameters: TableParameters | None = None) -> torch.Tensor:
        """Probability tables (N, 256) float32 of the pixel given conditioning vectors x (N, D).
        Coding and ``log_prob`` both come here, so their probabilities are the same numbers."""
        mixture = self.condensed_mixture(x, parameters)
        return mixture_pmf(mixture.weights, mixture.means, mixture.inverse_stds, self.config.floor)

    def bin_log_prob(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log P(y | x) of 8-bit values y (N,), differentiably: the training loss."""
        mixture = self.condensed_mixture(x)
        return mixture_bin_log_mass(y, mixture.weights, mixture.means, mixture.inverse_stds, self.config.floor)


#: Fixed-point formats of the exact head (exact.py has the common ones). The gate's logit of pair
#: (c, s) is eta_cs - h_cs E_c, with the energy E_c = sum_n beta_cn^2 f_n^2 of the features f_n and
#: the half precision h_cs = exp(alpha_cs) / 2. Pairs that matter have small penalties h_cs E_c,
#: and a penalty's absolute error is what moves the mixture weights, so the formats keep it below
#: about 1e-3 nats: features at 2**-FEATURE_BITS, clamped to +-FEATURE_LIMIT, squared at
#: 2**-(2 FEATURE_BITS); beta^2 at 2**-GATE_BITS; energies exact, then floored to 2**-ENERGY_BITS
#: (a product of two limbs keeps them exact without overflow); h at 2**-PRECISION_BITS; each
#: penalty capped at PENALTY_LIMIT nats (where exp(-penalty) is 0 at the tables' resolution); logits
#: and priors at 2**-LOGIT_BITS; variances at 2**-(2 * exact.MEAN_BITS) pixel units squared, within
#: VARIANCE_RANGE (standard deviations 0.01 to 256 pixel units).
FEATURE_LIMIT = 32
FEATURE_BITS = 16
GATE_BITS = 20
ENERGY_BITS = 32
PRECISION_BITS = 16
PENALTY_LIMIT = 64
LOGIT_BITS = 16
VARIANCE_RANGE = (7, 2**32)
_LIMB_BITS = 21  # the squared features' low limb
#: The moment matching of the rest weighs its pairs at most 2**RESIDUAL_WEIGHT_BITS in all, and
#: their means' distances from the rest's mean count up to SPREAD_LIMIT pixel units.
RESIDUAL_WEIGHT_BITS = 17
SPREAD_LIMIT = 2048


class ExactGate(NamedTuple):
    """What :class:`ExactMCGSMHead`'s gate needs besides its buffers, made once per weights."""

    energies: exact.ExactLinear  # squared features -> per component, sum_n beta_cn^2 f_n^2
    energy_caps: torch.Tensor  # (C * S,): per pair, the energy (at 2**-ENERGY_BITS) whose penalty is PENALTY_LIMIT


class ExactMCGSMHead(torch.nn.Module):
    """The condensed MCGSM mixture and its tables in integer arithmetic (exact.py): the same
    definition as :class:`ChannelMCGSM`'s (gate softmax over the (component, scale) pairs, the
    ``table_components`` heaviest pairs exactly and the rest moment-matched into one Gaussian, a
    2**-12 uniform floor), every step exact on every device.

    Input: the projections (N, F + C) at 2**-PRE_BITS: the features b_n . x, then the components'
    means in pixel units. Buffers (int64): ``gate`` (F, C), ``half_precisions``, ``priors`` and
    ``variances`` (C * S,), component-major."""

    gate: torch.Tensor
    half_precisions: torch.Tensor
    priors: torch.Tensor
    variances: torch.Tensor
    _gate_cache: dict[Any, ExactGate]  # per (device, weights' versions)

    def __init__(self, num_features: int, num_components: int, num_scales: int, table_components: int):
        super().__init__()
        self.shape = (num_features, num_components, num_scales)
        self.table_components = table_components
        pairs = num_components * num_scales
        self.register_buffer("gate", torch.zeros(num_features, num_components, dtype=torch.int64))
        self.register_buffer("half_precisions", torch.ones(pairs, dtype=torch.int64))
        self.register_buffer("priors", torch.zeros(pairs, dtype=torch.int64))
        self.register_buffer("variances", torch.ones(pairs, dtype=torch.int64))
        self._gate_cache = {}

    @classmethod
    def quantize(cls, mcgsm: FactorizedMCGSM, y_scale: torch.Tensor, table_components: int) -> ExactMCGSMHead:
        """From trained float parameters (``y_scale``: the whitening's residual scale)."""
        mcgsm = copy.deepcopy(mcgsm).double().requires_grad_(False)
        c, s = mcgsm.scales.shape
        head = cls(mcgsm.weights.shape[1], c, s, table_components)
        parameters = mcgsm.mixture_parameters(y_scale.double())
        head.gate.copy_(exact.to_fixed(parameters.gate_weights, GATE_BITS))
        head.half_precisions.copy_(exact.to_fixed(parameters.half_precisions.flatten(), PRECISION_BITS).clamp(min=1))
        head.priors.copy_(exact.to_fixed(parameters.priors.flatten(), LOGIT_BITS))
        # the float variances' bounds lie outside VARIANCE_RANGE: only VARIANCE_RANGE bounds these
        head.variances.copy_(exact.to_fixed(parameters.variances, 2 * exact.MEAN_BITS).clamp(*VARIANCE_RANGE))
        return head

    #: The formats above, as the compiled kernel (exact_cpu) takes them.
    KERNEL_FORMATS = (
        exact.PRE_BITS - FEATURE_BITS,
        FEATURE_LIMIT << FEATURE_BITS,
        _LIMB_BITS,
        2 * FEATURE_BITS + GATE_BITS - ENERGY_BITS,
        ENERGY_BITS + PRECISION_BITS - LOGIT_BITS,
        LOGIT_BITS,
        *VARIANCE_RANGE,
        RESIDUAL_WEIGHT_BITS,
        SPREAD_LIMIT << exact.MEAN_BITS,
    )

    def _gate(self) -> ExactGate:
        """The gate's exact product (its bound proven) and energy caps; made once per device and
        weights, not per step."""
        key = (self.gate.device, self.gate._version, self.half_precisions._version)  # anew if reloaded
        if key not in self._gate_cache:
            energies = exact.ExactLinear(self.gate, None, 1 << _LIMB_BITS)
            if energies.limbs != 1 or energies.result_bound >= 2**53:
                raise ValueError("gate weights too large for the exact head")
            limit = PENALTY_LIMIT << (ENERGY_BITS + PRECISION_BITS)
            caps = -((-limit) // self.half_precisions)  # ceil: penalties up to the limit are exact
            self._gate_cache = {key: ExactGate(energies, caps)}
        return self._gate_cache[key]

    def prepared(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`frequencies` for a coding pass, which does not change the weights: on the CPU
        the compiled kernel with the head's constants prepared once (``exact_cpu.PreparedHead``)."""
        if not exact_cpu.usable(self.priors):
            return self.frequencies
        gate = self._gate()
        return exact_cpu.PreparedHead(
            gate.energies.weight,
            self.half_precisions,
            gate.energy_caps,
            self.priors,
            self.variances,
            self.shape[2],
            self.table_components,
            self.KERNEL_FORMATS,
        )

    def frequencies(self, projected: torch.Tensor) -> torch.Tensor:
        """Integer frequency tables (N, 256) as float32 (exact.mixture_frequencies). On the CPU
        a compiled kernel computes the same integers (exact_cpu.py)."""
        if exact_cpu.usable(projected):
            return self.prepared()(projected.to(torch.float64))
        gate = self._gate()
        num_features, num_components, num_scales = self.shape
        n = len(projected)
        limit = FEATURE_LIMIT << FEATURE_BITS
        features = exact.shift_round(projected[:, :num_features], exact.PRE_BITS - FEATURE_BITS).clamp_(-limit, limit)
        means = exact.shift_round(projected[:, num_features:], exact.PRE_BITS - exact.MEAN_BITS)  # (N, C)
        means = means.clamp_(exact.MEAN_RANGE[0] << exact.MEAN_BITS, exact.MEAN_RANGE[1] << exact.MEAN_BITS)
        # gate: logits = priors - exp(alpha_cs) / 2 * sum_n beta_cn^2 f_n^2, at 2**-LOGIT_BITS; the
        # energy from the squares' two limbs, floored to 2**-ENERGY_BITS without ever overflowing
        squares = features * features  # at 2**-(2 * FEATURE_BITS)
        high = gate.energies(squares >> _LIMB_BITS)  # (N, C) at 2**-(2 * FEATURE_BITS + GATE_BITS - _LIMB_BITS)
        low = gate.energies(squares & ((1 << _LIMB_BITS) - 1))
        drop = 2 * FEATURE_BITS + GATE_BITS - ENERGY_BITS
        energy = (high << (_LIMB_BITS - drop)) + (low >> drop)  # (N, C) at 2**-ENERGY_BITS
        energy = torch.minimum(energy.repeat_interleave(num_scales, dim=1), gate.energy_caps)  # (N, C * S)
        penalty = exact.shift_round(energy * self.half_precisions, ENERGY_BITS + PRECISION_BITS - LOGIT_BITS)
        logits = self.priors - penalty
        weights = exact.exp_neg(logits.max(1, keepdim=True).values - logits, LOGIT_BITS)  # (N, C * S), max 2**24
        # the heaviest pairs; ties go to the lower index (unique keys, so any device picks the same)
        pairs = weights.shape[1]
        index_bits = max(1, (pairs - 1).bit_length())
        keys = (weights << index_bits) + (pairs - 1 - torch.arange(pairs, device=weights.device))
        top = (pairs - 1) - (keys.topk(self.table_components, dim=1).values & ((1 << index_bits) - 1))
        top_weights = weights.gather(1, top)
        # the rest, moment-matched into one Gaussian
        rest = weights.scatter(1, top, 0)
        rest_per_component = rest.view(n, num_components, num_scales).sum(2)  # (N, C), at most 2**26
        rest_total = rest_per_component.sum(1, keepdim=True)
        rest_mean = (rest_per_component * means).sum(1, keepdim=True) // rest_total.clamp(min=1)
        # its variance: the spread of its means plus its mean variance, at 2**-16 pixel units
        # squared, with the rest's weights shifted down to at most 2**17 in all (RESIDUAL_WEIGHT_BITS),
        # so that the sums stay in int64 however large the spread, and precise however small the rest
        shift = (torch.frexp(rest_total.to(torch.float64)).exponent.to(torch.int64) - RESIDUAL_WEIGHT_BITS).clamp_(
            min=0
        )
        coarse = rest >> shift
        coarse_per_component = coarse.view(n, num_components, num_scales).sum(2)
        limit = SPREAD_LIMIT << exact.MEAN_BITS
        spread = (means - rest_mean).clamp_(-limit, limit).square()
        second_moment = (coarse_per_component * spread).sum(1, keepdim=True) + (coarse * self.variances).sum(
            1, keepdim=True
        )
        coarse_total = coarse_per_component.sum(1, keepdim=True)
        rest_variance = torch.where(coarse_total > 0, second_moment // coarse_total.clamp(min=1), 1 << 16)
        rest_variance = rest_variance.clamp_(*VARIANCE_RANGE)
        mixture_weights = torch.cat([top_weights, rest_total], dim=1)
        mixture_means = torch.cat([means.gather(1, top // num_scales), rest_mean], dim=1)
        mixture_variances = torch.cat([self.variances[top], rest_variance], dim=1)
        return exact.mixture_frequencies(mixture_weights, mixture_means, exact.inverse_scales(mixture_variances))


class ExactChannelMCGSM(torch.nn.Module):
    """An MCGSM channel in exact arithmetic: the whitening and the MCGSM's linear maps folded into
    one integer matrix from the raw neighbourhood (pixel values) to the head's projections."""

    input_weight: torch.Tensor
    input_bias: torch.Tensor
    _linear: dict[Any, Any]  # the exact product, per (device, weights' versions)

    def __init__(self, dim_in: int, config: MCGSMConfig):
        super().__init__()
        outputs = config.num_features + config.num_components
        self.register_buffer("input_weight", torch.zeros(dim_in, outputs, dtype=torch.int64))
        self.register_buffer("input_bias", torch.zeros(outputs, dtype=torch.int64))
        self.head = ExactMCGSMHead(
            config.num_features, config.num_components, config.num_scales, config.table_components
        )
        self._linear = {}

    @classmethod
    def quantize(cls, model: ChannelMCGSM) -> ExactChannelMCGSM:
        config = model.config
        exact_model = cls(len(model.whitening.x_mean), config)
        with torch.no_grad():
            parameters = copy.deepcopy(model).double().table_parameters()
            exact_model.input_weight.copy_(exact.to_fixed(parameters.matrix, exact.PRE_BITS))
            exact_model.input_bias.copy_(exact.to_fixed(parameters.bias, exact.PRE_BITS))
            exact_model.head = ExactMCGSMHead.quantize(model.mcgsm, model.whitening.y_scale, config.table_components)
        return exact_model

    def input_linear(self) -> exact.ExactLinear:
        key = (self.input_weight.device, self.input_weight._version, self.input_bias._version)
        if key not in self._linear:
            self._linear = {key: exact.ExactLinear(self.input_weight, self.input_bias, 255)}
        return self._linear[key]

    def frequencies(self, x: torch.Tensor) -> torch.Tensor:
        """Tables (N, 256) for conditioning vectors x (N, D) of pixel values: int64, or float64
        on the CPU, where the product stays in float64 (exact) for the compiled head."""
        return self.prepared()(x)

    def prepared(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`frequencies` for a coding pass, which does not change the weights: the product
        and the head prepared once."""
        linear, head = self.input_linear(), self.head.prepared()

        def frequencies(x: torch.Tensor) -> torch.Tensor:
            return head(linear.float_result(x) if x.dtype == torch.float64 else linear(x))

        return frequencies


#: The model's weights files, float and exact; training and the tests use the functions by these names.
WEIGHTS_FILES = WeightsFiles(
    "ridecodec-mcgsm-1", "ridecodec-mcgsm-exact-1", MCGSMConfig, ChannelMCGSM, ExactChannelMCGSM
)
build_channel_models, save_weights, load_weights = WEIGHTS_FILES.build, WEIGHTS_FILES.save, WEIGHTS_FILES.load
load_exact_weights = WEIGHTS_FILES.load_exact


#: Shipped weights, inside the package: gray for L (and alpha), colour for RGB. The float files
#: are the trained weights (training starts from them); the exact files are their quantization,
#: which coding uses (``python -m ridecodec.models.export``).
SHIPPED_WEIGHTS = {"L": "mcgsm-gray.pt", "RGB": "mcgsm-rgb-3.pt"}
SHIPPED_EXACT_WEIGHTS = {"L": "mcgsm-gray-exact.pt", "RGB": "mcgsm-rgb-3-exact.pt"}
#: Version 2's exact weights (its RGB weights trained on decoded JPEGs), kept to decode its files.
VERSION_2_EXACT_WEIGHTS = {"L": "mcgsm-gray-exact.pt", "RGB": "mcgsm-rgb-exact.pt"}


class MCGSMModel(PerChannelModel):
    """The built-in model ``mcgsm``: an MCGSM per channel (layouts.py).

    ``weights`` maps "L" (required) and "RGB" (optional) to weights files written by
    :func:`save_weights`; by default the shipped ones.
    """

    name = "mcgsm"
    #: 3: RGB weights trained further on lossless-like colour photographs (MODEL_CARD.md), gray
    #: as in 2; 2: exact integer arithmetic, the version 1 weights quantized; 1: float tables
    #: (files of 1 need ridecodec 0.1, errors.py).
    version = "3"
    exact_across_devices = True
    can_sample = True  # ridecodec.sampling draws from the step function
    SHIPPED_WEIGHTS = SHIPPED_EXACT_WEIGHTS
    EARLIER_SHIPPED_WEIGHTS: ClassVar[dict[str, dict[str, str]]] = {"2": VERSION_2_EXACT_WEIGHTS}
    # 2's RGB weights, trained on decoded JPEGs (4:2:0 chroma), code such images 10% shorter;
    # 3's code lossless-origin photographs 9% shorter: the encoder tries both on each image
    alternative_versions: ClassVar[dict[str, tuple[str, ...]]] = {"RGB": ("2",), "RGBA": ("2",)}
    retired_versions: ClassVar[dict[str, str]] = {"1": FLOAT_VERSIONS_NOTE}
    read_weights = staticmethod(load_exact_weights)

    def __init__(self, weights: Mapping[str, str | Path] | None = None):
        super().__init__(weights)
        up = max(n.up for n in self.neighbourhoods.values())
        left = max(n.left for n in self.neighbourhoods.values())
        right = max(n.right for n in self.neighbourhoods.values())
        self.reach = CausalReach(up=up, left=left, right=right)  # type: ignore[misc]  # from the weights

    def begin(self, canvas: torch.Tensor) -> StepFunction:
        plans = self._plan(canvas.shape[0])
        dtype = torch.float64 if exact_cpu.usable(canvas) else torch.int64
        # prepared once: a coding pass makes thousands of steps with the same weights
        gather = [plan.neighbourhood.gatherer(canvas[plan.planes], plan.channel, dtype=dtype) for plan in plans]
        frequencies = [plan.network.prepared() for plan in plans]

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            return frequencies[channel](gather[channel](rows, cols))

        return step
