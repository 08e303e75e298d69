"""DiffusionNAG's noise-aware accuracy predictor f(x_t, sigma) (An et al., ICLR 2024, Sec. 3.2; official
`models/digcn_meta.py::MetaNeuralPredictor`), the guide of `nas.diffusion.sde.Guidance`.

Input: a noisy node-operation matrix x_t (B, N, T) in the centred scale over the space's fixed DAG
(`nas.diffusion.encoding`). Model: `layers` directed GCN layers: each averages a graph convolution over the forward
adjacency and one over the reverse adjacency (both with self-loops, normalised by torch-geometric's `gcn_norm` once,
as dense propagation matrices since the DAG is the same for every sample), then ReLU; mean pooling over nodes, plus
a sinusoidal embedding of sigma through a 2-layer MLP (the official noise embedding), then Linear -> Tanh ->
Linear(1). Training: the inputs are noised by the same VE SDE at t ~ U(eps, 1) in every step (official
`training.noised=True`), MSE to standardised accuracy, Adam lr 1e-3.

Deviations: no dataset encoder (the MetaD2A set encoder of the transferable setting; here one task, the run's own
evaluations); hidden width 64 instead of 144 and one Linear instead of Linear(184 -> 32) after the dataset
concatenation (CPU, a few hundred labels); separate weights for the forward and reverse convolutions (the official
DiGCN shares one transform and averages the normalised adjacencies); targets are z-scores, and the official label
scale ((acc - mean) / std) / 100 is `output_scale` (so the published guidance scales 10000 / 300 keep their meaning);
`ensemble` > 1 averages members that differ by seed (the official BO leftovers hold `num_ensemble=3`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from nas.diffusion.encoding import centre
from nas.diffusion.score_net import sinusoidal
from nas.diffusion.sde import VESDE
from predictors.base import Standardizer


def propagation(adjacency: Tensor) -> Tensor:
    """The dense GCN propagation matrix P (out = P @ h) of a directed adjacency (edge i -> j at [i, j]): self-loops
    and symmetric normalisation by torch-geometric's `gcn_norm`, messages from source to target."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    n = len(adjacency)
    edge_index, weight = gcn_norm(adjacency.nonzero().T, num_nodes=n, add_self_loops=True)
    assert weight is not None
    return torch.zeros(n, n).index_put_((edge_index[1], edge_index[0]), weight, accumulate=True)


class DirectedGCN(nn.Module):
    """Directed GCN over a fixed DAG with a noise-level embedding: (x_t, sigma) -> one value per sample."""

    def __init__(self, n_types: int, adjacency: Tensor, hidden: int = 64, layers: int = 4) -> None:
        super().__init__()
        adjacency = adjacency.float()
        self.register_buffer("prop_fwd", propagation(adjacency))
        self.register_buffer("prop_rev", propagation(adjacency.T))
        dims = [n_types] + [hidden] * layers
        self.convs = nn.ModuleList(nn.Linear(a, 2 * b) for a, b in zip(dims, dims[1:]))  # [forward | reverse]
        self.hidden = hidden
        self.noise = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.SiLU(), nn.Linear(4 * hidden, hidden))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        h = x
        for conv in self.convs:
            fwd, rev = conv(h).chunk(2, -1)
            h = torch.relu(0.5 * (self.prop_fwd @ fwd + self.prop_rev @ rev))
        pooled = h.mean(1) + self.noise(sinusoidal(sigma, self.hidden))
        return self.head(pooled).squeeze(-1)


class NoiseAwarePredictor:
    """Fit on (binary node-operation matrix, accuracy) pairs; call as f(x_t, sigma) on centred noisy matrices.

    `__call__` returns standardised predictions times `output_scale` (the guidance's predictor); `predict_clean`
    ranks clean matrices with the same network at sigma_min (our stand-in for the official separate noise-free
    MetaD2A ranker).
    """

    def __init__(self, n_types: int, adjacency: np.ndarray, sde: VESDE, hidden: int = 64, layers: int = 4,
                 steps: int = 500, batch_size: int = 64, lr: float = 1e-3, ensemble: int = 1,
                 output_scale: float = 0.01, seed: int = 0, device: torch.device | str = "cpu") -> None:
        self.n_types, self.sde = n_types, sde
        self.adjacency = torch.as_tensor(adjacency, dtype=torch.float32)
        self.hidden, self.layers, self.steps, self.batch_size, self.lr = hidden, layers, steps, batch_size, lr
        self.ensemble, self.output_scale, self.seed = ensemble, output_scale, seed
        self.device = torch.device(device)
        self.models: list[DirectedGCN] = []
        self.scale: Standardizer | None = None

    def fit(self, x: np.ndarray, targets: Sequence[float] | np.ndarray) -> NoiseAwarePredictor:
        """Train on binary matrices `x` (B, N, T) and their accuracies."""
        values = [float(v) for v in targets]
        self.scale = Standardizer(values)
        y = torch.as_tensor(self.scale.forward(values), dtype=torch.float32, device=self.device)
        x0 = torch.as_tensor(centre(np.asarray(x, np.float32)), device=self.device)
        self.models = [self._train(member, x0, y) for member in range(self.ensemble)]
        return self

    def _train(self, member: int, x0: Tensor, y: Tensor) -> DirectedGCN:
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 1009 + member)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1009 + member)
            model = DirectedGCN(self.n_types, self.adjacency, self.hidden, self.layers).to(self.device)
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        n, batch = len(x0), min(self.batch_size, len(x0))
        model.train()
        for _ in range(self.steps):
            idx = torch.randperm(n, generator=gen, device=self.device)[:batch]
            t = torch.rand(batch, generator=gen, device=self.device) * (1 - self.sde.eps) + self.sde.eps
            z = torch.randn(x0[idx].shape, generator=gen, device=self.device)
            sigma = self.sde.sigma(t)
            loss = nn.functional.mse_loss(model(x0[idx] + sigma[:, None, None] * z, sigma), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The members' mean standardised prediction times `output_scale`, differentiable in x: (B,)."""
        if not self.models:
            raise RuntimeError("fit the noise-aware predictor before calling it")
        return torch.stack([m(x, sigma) for m in self.models]).mean(0) * self.output_scale

    @torch.no_grad()
    def predict_clean(self, x: np.ndarray) -> np.ndarray:
        """Predicted accuracies of binary matrices (B, N, T), read at sigma_min."""
        if self.scale is None:
            raise RuntimeError("fit the noise-aware predictor before predicting")
        x0 = torch.as_tensor(centre(np.asarray(x, np.float32)), device=self.device)
        sigma = torch.full((len(x0),), self.sde.sigma_min, device=self.device)
        return self.scale.inverse(self(x0, sigma).cpu().numpy() / self.output_scale)
