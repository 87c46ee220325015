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

from dataclasses import dataclass
from pathlib import Path

import torch

from .base import CausalReach, StepFunction
from .layouts import PerChannelModel
from .discretize import mixture_bin_log_mass, mixture_pmf
from .neighbourhood import CausalNeighbourhood
from .weights import conditioning_size, shipped as shipped_weights
from .weights import load as load_weights_file, save as save_weights_file
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


def condense_mixture(
    features: torch.Tensor,
    means: torch.Tensor,
    gate_weights: torch.Tensor,
    half_precisions: torch.Tensor,
    priors: torch.Tensor,
    variances: torch.Tensor,
    table_components: int,
):
    """The condensed mixture (see :class:`ChannelMCGSM`) from the MCGSM's per-pixel quantities:
    ``features`` (N, F), the projections b_n . x; ``means`` (N, C), the component means in pixel
    units; and the table parameters of :meth:`ChannelMCGSM.table_parameters`. Returns weights,
    means and inverse standard deviations (pixel units), each (N, table_components + 1). (RIDE
    reuses it with its hidden state in the place of x.)"""
    num_scales = priors.shape[1]
    energy = features.square() @ gate_weights  # (N, C)
    logits = priors - half_precisions * energy[:, :, None]  # (N, C, S)
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
    return (
        torch.cat([top_weights, rest_weight], dim=1),
        torch.cat([top_means, rest_mean], dim=1),
        torch.cat([variances[top], rest_variance], dim=1).rsqrt_(),
    )


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

    def table_parameters(self) -> tuple[torch.Tensor, ...]:
        """The parameters as the tables use them, whitening folded into one affine map
        x -> [features b_n . x_w | component means in pixel units], so a table costs one matrix
        product instead of four. Coding computes them once per image (``MCGSMModel.begin``)."""
        w, mcgsm = self.whitening, self.mcgsm
        mean_maps = w.y_predictor[:, None] + w.y_scale * mcgsm.predictors.T  # (D, C)
        matrix = w.x_whitening @ torch.cat([mcgsm.features, mean_maps], dim=1)  # (D, F + C)
        bias = -w.x_mean @ matrix + torch.cat([torch.zeros_like(mcgsm.features[0]), w.y_mean.expand(len(mean_maps[0]))])
        gate_weights = mcgsm.weights.square().T  # (F, C)
        half_precisions = 0.5 * mcgsm.scales.exp()  # (C, S)
        # pixel units; bounded so that a table's arithmetic stays finite whatever the weights
        variances = (w.y_scale.square() * (-mcgsm.scales).exp()).flatten().clamp(1e-4, 1e8)  # (C * S,)
        return matrix, bias, gate_weights, half_precisions, mcgsm.priors, variances

    def condensed_mixture(self, x: torch.Tensor, parameters: tuple[torch.Tensor, ...] | None = None):
        """The mixture the tables are made of, for conditioning vectors x (N, D): weights, means
        and inverse standard deviations (pixel units), each (N, table_components + 1)."""
        matrix, bias, gate_weights, half_precisions, priors, variances = parameters or self.table_parameters()
        num_features = self.config.num_features
        projected = torch.addmm(bias, x, matrix)
        features, means = projected[:, :num_features], projected[:, num_features:]  # means: (N, C)
        return condense_mixture(
            features, means, gate_weights, half_precisions, priors, variances, self.config.table_components
        )

    def pmf(self, x: torch.Tensor, parameters: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Probability tables (N, 256) float32 of the pixel given conditioning vectors x (N, D).
        Coding and ``log_prob`` both come here, so their probabilities are the same numbers."""
        return mixture_pmf(*self.condensed_mixture(x, parameters), self.config.floor)

    def bin_log_prob(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log P(y | x) of 8-bit values y (N,), differentiably: the training loss."""
        return mixture_bin_log_mass(y, *self.condensed_mixture(x), self.config.floor)


def build_channel_models(config: MCGSMConfig, num_channels: int) -> torch.nn.ModuleList:
    neighbourhood = CausalNeighbourhood(config.up, config.left, config.right)
    return torch.nn.ModuleList(
        ChannelMCGSM(conditioning_size(neighbourhood, num_channels, c), config) for c in range(num_channels)
    )


WEIGHTS_FORMAT = "ridecodec-mcgsm-1"


def save_weights(path: str | Path, config: MCGSMConfig, models: torch.nn.ModuleList, metadata: dict) -> None:
    save_weights_file(path, WEIGHTS_FORMAT, config, models, metadata)


def load_weights(path) -> tuple[MCGSMConfig, torch.nn.ModuleList, dict]:
    """Read weights written by :func:`save_weights`; never executes code from the file."""
    return load_weights_file(path, WEIGHTS_FORMAT, MCGSMConfig, build_channel_models)


#: Shipped weights, inside the package: gray for L (and alpha), colour for RGB.
SHIPPED_WEIGHTS = {"L": "mcgsm-gray.pt", "RGB": "mcgsm-rgb.pt"}


class MCGSMModel(PerChannelModel):
    """The built-in model ``mcgsm``: an MCGSM per channel (layouts.py).

    ``weights`` maps "L" (required) and "RGB" (optional) to weights files written by
    :func:`save_weights`; by default the shipped ones.
    """

    name = "mcgsm"
    version = "1"
    exact_across_devices = False

    def __init__(self, weights: dict[str, str | Path] | None = None):
        super().__init__(weights or shipped_weights(SHIPPED_WEIGHTS), load_weights)
        up = max(n.up for n in self.neighbourhoods.values())
        left = max(n.left for n in self.neighbourhoods.values())
        right = max(n.right for n in self.neighbourhoods.values())
        self.reach = CausalReach(up=up, left=left, right=right)

    def begin(self, canvas: torch.Tensor) -> StepFunction:
        plan = [(model, model.table_parameters(), neighbourhood, canvas[planes], index)
                for model, neighbourhood, planes, index in self._plan(canvas.shape[0])]

        def step(rows: torch.Tensor, cols: torch.Tensor, channel: int) -> torch.Tensor:
            model, parameters, neighbourhood, planes, index = plan[channel]
            return model.pmf(neighbourhood.gather(planes, rows, cols, index), parameters)

        return step
