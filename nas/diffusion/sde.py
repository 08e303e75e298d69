"""The VE SDE, denoising score matching and the predictor-corrector sampler of DiffusionNAG (An et al., ICLR 2024),
which follows score-based generative modelling through SDEs (Song et al., ICLR 2021).

Forward process dx = sqrt(d sigma^2(t) / dt) dw with sigma(t) = sigma_min (sigma_max / sigma_min)^t on t in [0, 1],
so x_t = x_0 + sigma(t) z. Published values: sigma 0.1-5.0 for the NB201 score network (`tr_scorenet.py`; the
shipped NB201 sampling config `transfer_nag_config.pt` holds sigma_max 20.0, unresolved which the released checkpoint
used) and 0.1-1.0 for MobileNetV3 (`tr_scorenet_ofa.py`). N = 1000 steps, t from 1 down to eps = 1e-5.

A score function here is `score(x, sigma) -> tensor like x`: the network is conditioned on sigma(t), not on t.

Guidance (`Guidance`) adds w(t) * grad_x sum_b f(x_t, sigma)_b to the score in both the corrector and the predictor,
f a (noise-aware) predictor: classifier guidance for a regressor, maximising (or minimising) its prediction. The
paper's scale handling: NB201 starts at w = 10000 and lowers it by 300 after every round of 256 samples until enough
unique valid architectures exist (at most 20 rounds); MobileNetV3 uses 100000, lowered by 500. `Guidance.next_round`
gives the lowered guidance; the round loop is the strategy's. The official code's optional extras are
`schedule="exp"` (w * 0.1^t) and `t_spot` (guide only for t <= t_spot); its `weight_ratio` rescaling is not
implemented.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch
from torch import Tensor

ScoreFn = Callable[[Tensor, Tensor], Tensor]
#: predictor of the guided quantity: (x_t, sigma) -> one value per sample, shape (B,)
PredictorFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class VESDE:
    """Variance-exploding SDE on t in [0, 1] (NB201 score network defaults)."""

    sigma_min: float = 0.1
    sigma_max: float = 5.0
    n_steps: int = 1000
    eps: float = 1e-5

    def sigma(self, t: Tensor) -> Tensor:
        """sigma(t) = sigma_min (sigma_max / sigma_min)^t."""
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def marginal(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of x_t given x_0: (x_0, sigma(t)), std of shape (B,)."""
        return x0, self.sigma(t)

    def perturb(self, x0: Tensor, t: Tensor, z: Tensor | None = None) -> Tensor:
        """x_t = x_0 + sigma(t) z."""
        z = torch.randn_like(x0) if z is None else z
        return x0 + _bcast(self.sigma(t), x0) * z

    def diffusion(self, t: Tensor) -> Tensor:
        """g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min)); the drift is 0."""
        return self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))

    def discrete_sigmas(self, device: torch.device | None = None) -> Tensor:
        """The N geometrically spaced noise levels of the reverse-diffusion (SMLD) discretisation."""
        return torch.exp(torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), self.n_steps,
                                        device=device))

    def prior_sample(self, shape: tuple[int, ...], device: torch.device | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
        """x_1 ~ N(0, sigma_max^2 I)."""
        return torch.randn(shape, device=device, generator=generator) * self.sigma_max

    def sample_t(self, n: int, device: torch.device | None = None) -> Tensor:
        """t ~ U(eps, 1), as in training."""
        return torch.rand(n, device=device) * (1 - self.eps) + self.eps


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    """A per-sample (B,) tensor shaped to broadcast against `like` (B, ...)."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def dsm_loss(score_fn: ScoreFn, x0: Tensor, sde: VESDE, t: Tensor | None = None, z: Tensor | None = None) -> Tensor:
    """Denoising score matching with the score-SDE weighting lambda(t) = sigma(t)^2:
    mean over entries and batch of (s(x_t, sigma) sigma + z)^2 = sigma^2 |s - grad log p(x_t | x_0)|^2
    (official `reduce_mean=True`, no likelihood weighting)."""
    t = sde.sample_t(len(x0), x0.device) if t is None else t
    z = torch.randn_like(x0) if z is None else z
    sigma = sde.sigma(t)
    score = score_fn(x0 + _bcast(sigma, x0) * z, sigma)
    return torch.square(score * _bcast(sigma, x0) + z).reshape(len(x0), -1).mean(-1).mean()


@dataclass(frozen=True)
class Guidance:
    """Predictor guidance: score + w(t) * grad_x sum f(x_t, sigma) (negated when `maximize` is False).

    `scale` is w; `schedule` "constant" (the paper's runs) or "exp" (w * 0.1^t, official `weight_scheduling`);
    guidance acts only for t <= `t_spot` (1.0: always); `scale_step` is what `next_round` subtracts (NB201: 300).
    """

    predictor: PredictorFn
    scale: float = 10000.0
    scale_step: float = 300.0
    schedule: str = "constant"
    t_spot: float = 1.0
    maximize: bool = True

    def weight(self, t: Tensor) -> Tensor:
        w = torch.full_like(t, self.scale)
        if self.schedule == "exp":
            w = w * 0.1 ** t
        elif self.schedule != "constant":
            raise ValueError(f"guidance schedule {self.schedule!r} is not one of 'constant', 'exp'")
        return torch.where(t <= self.t_spot, w, torch.zeros_like(w))

    def gradient(self, x: Tensor, sigma: Tensor) -> Tensor:
        """grad_x of the summed prediction (its sign set by `maximize`)."""
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            total = self.predictor(x_in, sigma).sum()
            grad, = torch.autograd.grad(total if self.maximize else -total, x_in)
        return grad

    def next_round(self) -> Guidance:
        """The guidance of the next sampling round: scale lowered by `scale_step` (not below 0)."""
        return replace(self, scale=max(0.0, self.scale - self.scale_step))


def guided_score(score_fn: ScoreFn, guidance: Guidance | None, t_of: Callable[[Tensor], Tensor]) -> ScoreFn:
    """`score_fn` plus the guidance term; `t_of(sigma)` recovers t for the guidance weight."""
    if guidance is None:
        return score_fn

    def total(x: Tensor, sigma: Tensor) -> Tensor:
        w = _bcast(guidance.weight(t_of(sigma)), x)
        return score_fn(x, sigma) + w * guidance.gradient(x, sigma)
    return total


@torch.no_grad()
def pc_sample(score_fn: ScoreFn, sde: VESDE, shape: tuple[int, ...], *, predictor: str = "euler_maruyama",
              snr: float = 0.16, corrector_steps: int = 1, guidance: Guidance | None = None, denoise: bool = True,
              device: torch.device | None = None, generator: torch.Generator | None = None,
              progress: Callable[[range], Iterable[int]] | None = None) -> Tensor:
    """Predictor-corrector sampling from x_1 ~ N(0, sigma_max^2) down to t = eps, in the centred space.

    Each of the N steps runs `corrector_steps` Langevin corrector steps, then one predictor step, both on the
    (guided) score, as the official sampler. `predictor`: "euler_maruyama" (the official NB201 config) or
    "reverse_diffusion" (the SMLD discretisation of score SDE); "none" runs the corrector only. The Langevin step
    is 2 (snr |z| / |s|)^2 with both norms averaged over the batch (official, so a batch's samples share it).
    Returns the noise-free mean of the last step when `denoise` (official `noise_removal=True`).
    """
    n = sde.n_steps
    score = guided_score(score_fn, guidance,
                         lambda s: torch.log(s / sde.sigma_min) / math.log(sde.sigma_max / sde.sigma_min))
    sigmas = sde.discrete_sigmas(device)
    x = sde.prior_sample(shape, device, generator)
    x_mean = x
    ts = torch.linspace(1.0, sde.eps, n, device=device)
    for i in (progress or (lambda r: r))(range(n)):
        t = ts[i].expand(shape[0])
        sigma = sde.sigma(t)
        for _ in range(corrector_steps):
            grad = score(x, sigma)
            noise = torch.randn(x.shape, device=device, generator=generator)
            grad_norm = grad.reshape(len(x), -1).norm(dim=-1).mean()
            noise_norm = noise.reshape(len(x), -1).norm(dim=-1).mean()
            step = 2 * (snr * noise_norm / grad_norm) ** 2
            x_mean = x + step * grad
            x = x_mean + torch.sqrt(2 * step) * noise
        if predictor == "none":
            continue
        noise = torch.randn(x.shape, device=device, generator=generator)
        if predictor == "euler_maruyama":
            g = _bcast(sde.diffusion(t), x)
            x_mean = x + g ** 2 * score(x, sigma) / n
            x = x_mean + g * math.sqrt(1.0 / n) * noise
        elif predictor == "reverse_diffusion":
            k = (t * (n - 1)).long()
            prev = torch.where(k == 0, torch.zeros_like(t), sigmas[(k - 1).clamp(min=0)])
            var = _bcast(sigmas[k] ** 2 - prev ** 2, x)
            x_mean = x + var * score(x, sigma)
            x = x_mean + var.sqrt() * noise
        else:
            raise ValueError(f"predictor {predictor!r} is not one of 'euler_maruyama', 'reverse_diffusion', 'none'")
    return x_mean if denoise else x
