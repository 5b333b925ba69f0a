"""The `aegmm` and `vaegmm` detectors: an autoencoder (or VAE) plus a Gaussian mixture energy.

DAGMM-style (Zong et al., ICLR 2018): the compression network encodes a row to a code and
reconstructs it; the row's features for the mixture are the code plus two reconstruction
features, the relative Euclidean distance |x - x'| / |x| and the cosine similarity of x and x'.
An estimation network assigns them soft memberships to `components` Gaussians, whose weights,
means and covariances are computed from the memberships. The loss is the reconstruction error
plus `lambda_energy` x the mean sample energy plus `lambda_cov` x the inverse covariance
diagonals (which keeps the mixture from collapsing). After training the mixture is fitted on
all training rows; a row's score is its energy, -log of the mixture density of its features.
`vaegmm` uses a VAE as the compression network (a sampled code, a KL term in the loss).

Both reconstruction features are measured from a reference point, `recon_origin`. On
standardised features the plain origin is the training mean, where typical rows lie: for them
|x| is near 0, so the relative distance and the cosine are noise, the mixture spreads over that
noise, and a row whose reconstruction is far off (relative distance 1, cosine 0) lands inside
it. Measured from the training rows' minimum per feature (`recon_origin: min`, the default),
every training row lies in the positive orthant as after min-max scaling, |x - min| is bounded
away from 0, and both features mean what DAGMM meant (docs/benchmarks.md, KDD Cup 99).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from .tabular import TabularDetector, TabularParams, mlp

if TYPE_CHECKING:
    import numpy as np
    import torch


class AeGmmDetector(TabularDetector):
    variational = False

    class Params(TabularParams):
        components: int = Field(4, ge=1, description="Gaussians in the mixture")
        estimation_hidden: int = Field(10, ge=2, description="hidden units of the estimation network")
        dropout: float = Field(0.5, ge=0, lt=1, description="dropout in the estimation network")
        lambda_energy: float = Field(0.1, ge=0)
        lambda_cov: float = Field(0.005, ge=0)
        beta: float = Field(1.0, ge=0, description="weight of the KL term (vaegmm)")
        recon_origin: Literal["min", "mean"] = Field(
            "min", description="the point the relative distance and cosine similarity are measured from: the training "
                               "rows' minimum per feature, or their mean (the origin of standardised features)")

    def build_model(self, n_features: int) -> "torch.nn.Module":
        p = self.params
        return _Dagmm(n_features, p.hidden, p.latent, p.components, p.estimation_hidden, p.dropout, self.variational)

    def loss(self, model: "_Dagmm", batch: "torch.Tensor", labels: "torch.Tensor") -> "torch.Tensor":
        p = self.params
        code, recon, features, kl = model.compress(batch, sample=self.variational)
        gamma = model.estimate(features)
        weights, means, covs = _mixture(gamma, features)
        energy = _energy(features, weights, means, covs)
        inverse_diag = (1.0 / covs.diagonal(dim1=1, dim2=2)).sum()
        loss = ((batch - recon) ** 2).sum(dim=1).mean() + p.lambda_energy * energy.mean() + p.lambda_cov * inverse_diag
        if self.variational:
            loss = loss + p.beta * kl.mean()
        return loss

    def before_training(self, model: "_Dagmm", rows: "torch.Tensor", rng: "np.random.Generator") -> None:
        if self.params.recon_origin == "min":
            model.origin.copy_(rows.min(dim=0).values)

    def after_training(self, model: "_Dagmm", rows: "torch.Tensor") -> None:
        _, _, features, _ = model.compress(rows, sample=False)
        weights, means, covs = _mixture(model.estimate(features), features)
        model.weights.copy_(weights)
        model.means.copy_(means)
        model.covs.copy_(covs)

    def score_rows(self, model: "_Dagmm", rows: "torch.Tensor") -> "torch.Tensor":
        _, _, features, _ = model.compress(rows, sample=False)
        return _energy(features, model.weights, model.means, model.covs)

    def feature_scores(self, model: "_Dagmm", rows: "torch.Tensor") -> "torch.Tensor":
        _, recon, _, _ = model.compress(rows, sample=False)
        return (rows - recon) ** 2

    def added_buffers(self, n_features: int) -> dict[str, "torch.Tensor"]:
        import torch

        # Files saved before recon_origin measured from the mean: the origin of scaled rows.
        return {"origin": torch.zeros(n_features)}


class VaeGmmDetector(AeGmmDetector):
    variational = True


def _mixture(gamma: "torch.Tensor", z: "torch.Tensor"):
    """Mixture weights, means and covariances from soft memberships `gamma` of rows `z`."""
    import torch

    mass = gamma.sum(dim=0) + 1e-9
    weights = mass / len(z)
    means = gamma.T @ z / mass[:, None]
    centred = z[None, :, :] - means[:, None, :]
    covs = torch.einsum("nk,kni,knj->kij", gamma, centred, centred) / mass[:, None, None]
    return weights, means, covs + 1e-6 * torch.eye(z.shape[1])


def _energy(z: "torch.Tensor", weights: "torch.Tensor", means: "torch.Tensor", covs: "torch.Tensor") -> "torch.Tensor":
    """-log sum_k weight_k N(z; mean_k, cov_k), per row (log-sum-exp for stability)."""
    import torch

    cholesky = torch.linalg.cholesky(covs + 1e-4 * torch.eye(z.shape[1]))
    centred = (z[None, :, :] - means[:, None, :]).transpose(1, 2)  # k, d, n
    solved = torch.linalg.solve_triangular(cholesky, centred, upper=False)
    mahalanobis = (solved ** 2).sum(dim=1)  # k, n
    log_det = 2 * torch.log(cholesky.diagonal(dim1=1, dim2=2)).sum(dim=1)  # k
    log_density = -0.5 * (mahalanobis + log_det[:, None] + z.shape[1] * math.log(2 * math.pi))
    return -torch.logsumexp(torch.log(weights + 1e-9)[:, None] + log_density, dim=0)


def _Dagmm(n_features: int, hidden: list[int], latent: int, components: int, estimation_hidden: int,
           dropout: float, variational: bool) -> "torch.nn.Module":
    import torch

    class Dagmm(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = mlp([n_features, *hidden], last_activation=True)
            self.code = torch.nn.Linear(hidden[-1], latent)
            self.code_log_var = torch.nn.Linear(hidden[-1], latent) if variational else None
            self.decoder = mlp([latent, *reversed(hidden), n_features])
            self.estimation = torch.nn.Sequential(
                torch.nn.Linear(latent + 2, estimation_hidden), torch.nn.Tanh(), torch.nn.Dropout(dropout),
                torch.nn.Linear(estimation_hidden, components), torch.nn.Softmax(dim=1))
            self.register_buffer("weights", torch.full((components,), 1.0 / components))
            self.register_buffer("means", torch.zeros(components, latent + 2))
            self.register_buffer("covs", torch.eye(latent + 2).repeat(components, 1, 1))
            self.register_buffer("origin", torch.zeros(n_features))  # see recon_origin

        def compress(self, rows: torch.Tensor, sample: bool):
            h = self.encoder(rows)
            code = self.code(h)
            kl = torch.zeros(len(rows))
            if self.code_log_var is not None:
                log_var = self.code_log_var(h).clamp(-8, 8)
                kl = -0.5 * (1 + log_var - code ** 2 - log_var.exp()).sum(dim=1)
                if sample:
                    code = code + (0.5 * log_var).exp() * torch.randn_like(code)
            recon = self.decoder(code)
            row, rebuilt = rows - self.origin, recon - self.origin
            distance = (row - rebuilt).norm(dim=1) / (row.norm(dim=1) + 1e-9)
            cosine = torch.nn.functional.cosine_similarity(row, rebuilt, dim=1)
            return code, recon, torch.cat([code, distance[:, None], cosine[:, None]], dim=1), kl

        def estimate(self, features: torch.Tensor) -> torch.Tensor:
            return self.estimation(features)

    return Dagmm()
