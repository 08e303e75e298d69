"""SPOS: Single Path One-Shot NAS with uniform sampling (Guo et al., ECCV 2020), on any space's supernet.

The one-shot supernet (`nas.supernet.Supernet`, the space's own sharing: separate weights per candidate for
NB201 and HyTra, Once-for-All's elastic weights for MBConv) is trained with one architecture per step drawn
uniformly (`space.sample`: each choice uniformly, HyTra uniformly over its fabric), cross-entropy with label
smoothing 0.1, SGD with momentum; then architectures are rated with the inherited weights after BatchNorm
statistics are recalibrated on training images along their path (`nas.inherited`), and searched by SPOS's
evolutionary algorithm (`strategies.genetic`: top-10, 25 mutations, 25 crossovers, population 50, 20
generations) through the ordinary search loop, constraints checked before rating; the best-rated
architecture is then trained stand-alone.

Budget presets (`SPOSConfig`): `paper` is the paper's ImageNet schedule (120 epochs, batch 1024, lr 0.5,
weight decay 4e-5, BN recalibrated on 20,000 training images, 1,000 ratings). `standard` and `quick` scale
it to a GPU hour and to minutes on a CPU (fewer epochs and images, lr 0.1 at batch 64, a smaller genetic
search). Options override any field (`--option epochs=8`); `search` names another registered ask/tell
strategy for the rating phase and `search_options` its options.

Deviations: a cosine learning-rate schedule (the official code decays linearly); the supernet's BatchNorm is
the stand-alone networks' affine BN (one definition of every layer); rating uses the run's validation split
(the paper holds out 50,000 ImageNet training images).
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas import registry
from nas.space import NASError
from nas.strategy import SupernetContext, SupernetPlan, SupernetStrategy, budget_config, rating_objectives

STATE_FILE = "spos_state.pt"
SUPERNET_FILE = "supernet.pt"


@dataclass(frozen=True)
class SPOSConfig:
    """Hyperparameters of one budget; the defaults are the paper's ImageNet schedule."""

    epochs: float = 120.0
    batch_size: int = 1024
    lr: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.0
    train_images: int = 0  # 0: the whole training split
    bn_images: int = 20000
    val_images: int = 0  # 0: the whole validation split
    sharing: str = ""  # "": the space's own (separate / elastic)
    search: str = "genetic"
    search_budget: int = 1000
    search_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size < 2 or self.search_budget < 1:
            raise NASError("SPOS needs epochs > 0, batch_size >= 2 and search_budget >= 1")


PAPER = SPOSConfig()
PRESETS: dict[str, SPOSConfig] = {
    "paper": PAPER,
    # a GPU hour: 30 epochs at batch 128, BN on 2,048 images, a genetic search of 10 generations of 50
    "standard": dataclasses.replace(PAPER, epochs=30.0, batch_size=128, lr=0.1, bn_images=2048, search_budget=500),
    # minutes on a 2-core CPU: 6 epochs at batch 64, BN on 128 images, 4 generations of 8 (top 4)
    "quick": dataclasses.replace(PAPER, epochs=6.0, batch_size=64, lr=0.1, bn_images=128, search_budget=32,
                                 search_options={"population": 8, "top_k": 4, "mutations": 4, "crossovers": 4}),
}


def make_config(budget: str, **overrides: Any) -> SPOSConfig:
    return budget_config("SPOS", PRESETS, budget, overrides)


@registry.register_strategy("spos")
class SPOS(SupernetStrategy):
    """SPOS (Guo et al. 2020): uniform single-path supernet training, then evolutionary search on inherited weights."""

    name = "spos"

    def prepare(self, context: SupernetContext) -> SupernetPlan:
        import torch

        from nas.inherited import InheritedEvaluator, load_supernet, save_supernet
        from nas.supernet import Supernet
        from nas.train import resolve_device

        cfg = make_config(context.budget or "quick", **{**self.options, **context.options})
        folder, data = self.folder_and_data(context, cfg.train_images)
        device = resolve_device(cfg.device)
        if (folder / SUPERNET_FILE).exists():  # trained before the run was killed
            supernet = load_supernet(folder / SUPERNET_FILE, context.space, device)
        else:
            torch.manual_seed(self.seed)
            supernet = Supernet(context.space, data.sample_shape, data.num_classes, cfg.sharing or None).to(device)
            self._train(supernet, data, cfg, folder, context.progress)
            save_supernet(folder / SUPERNET_FILE, supernet)
            (folder / STATE_FILE).unlink(missing_ok=True)  # the epoch checkpoint is no longer needed
        evaluator = InheritedEvaluator(supernet, context.data, cfg.bn_images, cfg.val_images,
                                       batch_size=max(cfg.batch_size, 64), seed=self.seed)
        search = registry.get("strategies", cfg.search)(context.space, rating_objectives(context.objectives),
                                                        seed=self.seed, **cfg.search_options)
        plots = [str(folder / "spos_training.png")] if (folder / "spos_training.png").exists() else []
        return SupernetPlan(evaluator, search, cfg.search_budget, plots)

    def _train(self, supernet: Any, data: Any, cfg: SPOSConfig, folder: Path, progress: bool) -> None:
        """Uniform single-path training, resumable at epoch ends from `folder/spos_state.pt`."""
        import torch

        from nas.train import (
            CrossEntropy,
            EpochCheckpoint,
            TrainConfig,
            Trainer,
            TrainProgress,
            resize_inputs,
            supervised_step,
        )

        config = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                             weight_decay=cfg.weight_decay, warmup_epochs=cfg.warmup_epochs,
                             label_smoothing=cfg.label_smoothing, seed=self.seed, device=cfg.device)
        trainer = Trainer(config, progress=progress, desc="spos supernet")
        device = trainer.runtime.device
        space = supernet.space
        shapes = {supernet.arch_input_shape(space.sample(random.Random(s))) for s in range(16)}
        x = data.x_train if len(shapes) > 1 else resize_inputs(data.x_train, shapes.pop())
        x, y = x.to(device), data.y_train.to(device)
        rngs: dict[int, random.Random] = {}

        def forward(batch: Any) -> torch.Tensor:
            rng = rngs.setdefault(batch.epoch, random.Random(f"{self.seed}-spos-{batch.epoch}"))
            arch = space.sample(rng)
            return supernet(resize_inputs(batch.x, supernet.arch_input_shape(arch)), arch)

        checkpoint = EpochCheckpoint(folder / STATE_FILE, supernet)
        state, optimizer_state = checkpoint.load(device)

        def on_epoch_end(progress: TrainProgress, optimizer: torch.optim.Optimizer, last: bool) -> None:
            checkpoint.save(progress, optimizer)
            if last:
                plot_losses(progress.epoch_losses, folder / "spos_training.png")

        trainer.fit(supervised_step(forward, CrossEntropy(cfg.label_smoothing)), [supernet], x, y,
                    augment=config.augment_mode(data.name), state=state, optimizer_state=optimizer_state,
                    on_epoch_end=on_epoch_end)


def plot_losses(losses: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("supernet training loss (uniform single path)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
