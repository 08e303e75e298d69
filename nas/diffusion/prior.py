"""Training, caching and sampling DiffusionNAG's unconditional prior (An et al., ICLR 2024, Sec. 3.1).

`DiffusionPrior(matrix, preset)` trains the score transformer by denoising score matching on a space's encoded
architectures (all 15,625 NB201 cells, or samples of a larger space), keeps an EMA of its weights for sampling, and
`generate(n, guidance)` samples n matrices with the predictor-corrector sampler, decodes the valid ones and reports
validity (valid / sampled), uniqueness (unique / valid) and novelty (unique ones not in the training set / unique),
as the official code counts them.

Presets: `paper` is the published NB201 schedule (250k iterations, batch 256, Adam lr 2e-5, 1000 warm-up steps,
gradient clip 1.0, EMA 0.9999, 12 layers, 1000 sampling steps, snr 0.16; a GPU job); `quick` is ours for a 2-core CPU
(a 4-layer network without dropout whose output is divided by sigma, 4000 iterations at lr 2e-3, EMA 0.999, 200
sampling steps; minutes for NB201). The sigma range
comes from the preset (0.1-5.0, the NB201 training config; use 0.1-1.0 for MobileNetV3 as published).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nas.diffusion.encoding import OperationMatrix, centre, quantize, uncentre
from nas.diffusion.score_net import EMA, ScoreNetConfig, ScoreTransformer
from nas.diffusion.sde import VESDE, Guidance, ScoreFn, dsm_loss, pc_sample
from nas.space import Architecture, NASError, Value


@dataclass(frozen=True)
class PriorPreset:
    """Everything that fixes a trained prior and how it samples."""

    iterations: int
    batch_size: int = 256
    lr: float = 2e-5
    warmup: int = 1000
    grad_clip: float = 1.0
    ema: float = 0.9999
    net: ScoreNetConfig = field(default_factory=ScoreNetConfig)
    sigma_min: float = 0.1
    sigma_max: float = 5.0
    sample_steps: int = 1000
    snr: float = 0.16
    predictor: str = "euler_maruyama"


PRESETS: dict[str, PriorPreset] = {
    "paper": PriorPreset(iterations=250_000),
    "quick": PriorPreset(iterations=4000, lr=2e-3, warmup=200, ema=0.999,
                         net=ScoreNetConfig(n_layers=4, dropout=0.0, scale_by_sigma=True), sample_steps=200),
}


@dataclass(frozen=True)
class GenerationResult:
    """Unique valid architectures in sampling order, and the counts behind the paper's three rates."""

    archs: list[Architecture]
    n_samples: int
    n_valid: int
    n_novel: int

    @property
    def validity(self) -> float:
        return self.n_valid / self.n_samples if self.n_samples else 0.0

    @property
    def uniqueness(self) -> float:
        return len(self.archs) / self.n_valid if self.n_valid else 0.0

    @property
    def novelty(self) -> float:
        return self.n_novel / len(self.archs) if self.archs else 0.0


def resolve_preset(preset: str | PriorPreset) -> PriorPreset:
    if isinstance(preset, PriorPreset):
        return preset
    if preset not in PRESETS:
        raise NASError(f"DiffusionNAG preset {preset!r} is not one of {', '.join(PRESETS)}")
    return PRESETS[preset]


class DiffusionPrior:
    """The unconditional score model p(X) of one space's node-operation matrices."""

    def __init__(self, matrix: OperationMatrix, preset: str | PriorPreset = "quick",
                 device: torch.device | str | None = None, seed: int = 0, train_mask: str | None = None,
                 sample_mask: str | None = None) -> None:
        self.matrix = matrix
        self.preset = resolve_preset(preset)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.seed = seed
        self.sde = VESDE(self.preset.sigma_min, self.preset.sigma_max, self.preset.sample_steps)
        self.masks = {kind: torch.as_tensor(matrix.mask(m or default), device=self.device)
                      for kind, m, default in (("train", train_mask, matrix.train_mask),
                                               ("sample", sample_mask, matrix.sample_mask))}
        torch.manual_seed(seed)
        self.model = ScoreTransformer(matrix.n_types, torch.as_tensor(matrix.positions), self.preset.net)
        self.model.to(self.device)
        self.ema = EMA(self.model, self.preset.ema)
        self.training_set: set[Architecture] = set()
        self.losses: list[float] = []

    # -- training -----------------------------------------------------------------------------------------------
    def cache_key(self, data: np.ndarray) -> str:
        """Digest of the layout, preset, masks, seed and training data: equal keys mean an equal prior."""
        desc = {"matrix": self.matrix.describe(), "preset": asdict(self.preset), "seed": self.seed,
                "masks": {k: m.cpu().numpy().tobytes().hex() for k, m in self.masks.items()},
                "data": hashlib.sha256(np.ascontiguousarray(data, np.float32).tobytes()).hexdigest()}
        return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:20]

    def fit(self, archs: Sequence[Mapping[str, Value]], cache_dir: str | Path | None = None,
            progress: bool = False) -> DiffusionPrior:
        """Train on `archs` (or load the cached prior trained on the same data, preset and layout)."""
        data = self.matrix.encode_many(archs)
        self.training_set = {Architecture(a) for a in archs}
        path = Path(cache_dir) / f"diffusionnag-{self.matrix.name}-{self.cache_key(data)}.pt" if cache_dir else None
        if path is not None and path.exists():
            self.load(path)
            return self
        self.train(torch.as_tensor(centre(data), device=self.device), progress)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.save(path)
        return self

    def train(self, x: Tensor, progress: bool = False) -> None:
        """Denoising score matching on centred matrices `x` (B, N, T): Adam with linear warm-up, gradient clipping,
        EMA, epochs of shuffled batches (the last, partial batch of an epoch dropped)."""
        p = self.preset
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        opt = torch.optim.Adam(self.model.parameters(), lr=p.lr, betas=(0.9, 0.999), eps=1e-8)
        batch = min(p.batch_size, len(x))
        order = torch.randperm(len(x), generator=gen)
        pos = 0
        self.model.train()
        steps = range(p.iterations)
        if progress:
            from tqdm import tqdm
            steps = tqdm(steps, desc="DiffusionNAG prior", unit="it")
        for step in steps:
            if pos + batch > len(x):
                order, pos = torch.randperm(len(x), generator=gen), 0
            xb = x[order[pos:pos + batch].to(self.device)]
            pos += batch
            for group in opt.param_groups:
                group["lr"] = p.lr * min(1.0, (step + 1) / p.warmup) if p.warmup > 0 else p.lr
            loss = dsm_loss(self.score_fn("train"), xb, self.sde)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
            opt.step()
            self.ema.update(self.model)
            self.losses.append(float(loss.detach()))
        self.ema.copy_to(self.model)
        self.model.eval()

    def score_fn(self, kind: str = "sample") -> ScoreFn:
        """s_theta(x, sigma) with the training or sampling attention mask bound."""
        mask = self.masks[kind]
        return lambda x, sigma: self.model(x, sigma, mask)

    # -- sampling -----------------------------------------------------------------------------------------------
    def sample(self, n: int, guidance: Guidance | None = None, batch_size: int = 256, seed: int | None = None,
               progress: bool = False) -> np.ndarray:
        """n binary matrices (n, N, T): predictor-corrector samples mapped to [0, 1] and thresholded at 0.5."""
        gen = torch.Generator(device=self.device).manual_seed(self.seed if seed is None else seed)
        self.model.eval()
        out = []
        for start in range(0, n, batch_size):
            shape = (min(batch_size, n - start), self.matrix.n_nodes, self.matrix.n_types)
            x = pc_sample(self.score_fn("sample"), self.sde, shape, predictor=self.preset.predictor,
                          snr=self.preset.snr, guidance=guidance, device=self.device, generator=gen,
                          progress=_bar(f"sampling {start}/{n}") if progress else None)
            out.append(quantize(uncentre(x)))
        return np.concatenate(out) if out else np.zeros((0, self.matrix.n_nodes, self.matrix.n_types), np.float32)

    def generate(self, n: int, guidance: Guidance | None = None, batch_size: int = 256, seed: int | None = None,
                 progress: bool = False) -> GenerationResult:
        """Sample n matrices, keep the valid ones, and count validity, uniqueness and novelty."""
        decoded = [a for a in self.matrix.decode_many(self.sample(n, guidance, batch_size, seed, progress))
                   if a is not None]
        unique = list(dict.fromkeys(decoded))
        novel = sum(a not in self.training_set for a in unique)
        return GenerationResult(unique, n, len(decoded), novel)

    # -- persistence --------------------------------------------------------------------------------------------
    def state(self) -> dict[str, object]:
        return {"model": {k: v.cpu() for k, v in self.model.state_dict().items()}, "ema": self.ema.state_dict(),
                "losses": self.losses, "preset": asdict(self.preset), "matrix": self.matrix.describe()}

    def save(self, path: str | Path) -> None:
        torch.save(self.state(), path)

    def load(self, path: str | Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["matrix"] != self.matrix.describe():
            raise NASError(f"cached prior {path} was trained on another matrix layout")
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"], self.device)
        self.losses = list(state["losses"])
        self.model.eval()


def _bar(desc: str) -> Callable[[range], Iterable[int]]:
    """A tqdm progress bar over a range."""
    from tqdm import tqdm

    return lambda r: tqdm(r, desc=desc, leave=False)


def with_overrides(preset: str | PriorPreset, **changes: object) -> PriorPreset:
    """A preset with some fields replaced (e.g. `with_overrides("quick", iterations=500)`)."""
    return replace(resolve_preset(preset), **changes)  # type: ignore[arg-type]
