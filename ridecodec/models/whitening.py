"""Conditional whitening of (neighbourhood x, pixel y) pairs, as in Theis & Bethge 2015.

The inputs are whitened, ``x_w = W (x - mean_x)`` (symmetric/ZCA whitening), and the pixel is
replaced by its standardized residual after the best linear prediction from ``x_w``:

    y_w = (y - mean_y - p . x_w) / scale

The MCGSM then models ``p(y_w | x_w)``. The map y -> y_w is affine with slope 1/scale, so a
density over y_w is a density over y times 1/scale: the log-Jacobian ``-log(scale)`` per pixel
is part of every continuous likelihood. (The discrete pmf needs no Jacobian: it integrates the
density over each pixel value's bin, whose edges are mapped through the same affine map.)
"""

from __future__ import annotations

import math

import torch


class ConditionalWhitening(torch.nn.Module):
    # buffers (register_buffer), typed for mypy
    x_mean: torch.Tensor
    x_whitening: torch.Tensor
    y_mean: torch.Tensor
    y_predictor: torch.Tensor
    y_scale: torch.Tensor

    def __init__(self, dim_in: int):
        super().__init__()
        self.register_buffer("x_mean", torch.zeros(dim_in))
        self.register_buffer("x_whitening", torch.eye(dim_in))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_predictor", torch.zeros(dim_in))
        self.register_buffer("y_scale", torch.ones(()))

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> ConditionalWhitening:
        """Fit on samples x (N, D) and y (N,); statistics in float64."""
        x, y = x.double(), y.double()
        whitening = cls(x.shape[1])
        x_mean, y_mean = x.mean(0), y.mean()
        xc, yc = x - x_mean, y - y_mean
        covariance = xc.T @ xc / len(x)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        # ridge: neighbourhoods with (nearly) linearly dependent entries stay well conditioned
        inverse_sqrt = eigenvectors @ torch.diag((eigenvalues + ridge).rsqrt()) @ eigenvectors.T
        xw = xc @ inverse_sqrt
        predictor = torch.linalg.lstsq(xw, yc[:, None]).solution[:, 0]
        residual = yc - xw @ predictor
        whitening.x_mean.copy_(x_mean)
        whitening.x_whitening.copy_(inverse_sqrt)
        whitening.y_mean.fill_(float(y_mean))
        whitening.y_predictor.copy_(predictor)
        whitening.y_scale.fill_(float(residual.std()))
        return whitening

    def whiten_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_mean) @ self.x_whitening

    def fold(self, matrix: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The affine map ``x_w @ matrix + bias`` of whitened inputs as (matrix, bias) of the same
        map of raw inputs x, so that a model applies it in one product without whitening first."""
        folded = self.x_whitening @ matrix
        return folded, bias - self.x_mean @ folded

    def linear_prediction(self, x_w: torch.Tensor) -> torch.Tensor:
        """The best linear prediction of y (pixel units) from whitened inputs, (N,)."""
        return self.y_mean + x_w @ self.y_predictor

    def whiten_outputs(self, y: torch.Tensor, x_w: torch.Tensor) -> torch.Tensor:
        return (y - self.linear_prediction(x_w)) / self.y_scale

    def log_jacobian(self) -> float:
        """log |d y_w / d y|, per pixel."""
        return -math.log(float(self.y_scale))
