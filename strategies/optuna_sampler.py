"""Optuna as a strategy: TPE for one objective, NSGA-II for several, on any space.

The architecture is suggested define-by-run, one `suggest_categorical` per active choice in declaration
order, so dependent choices (a layer that exists only at a given depth) become conditional parameters
(TPE runs with `multivariate=True, group=True` for them). Ordinal choices are suggested as categorical,
their value sets being small and not always evenly spaced.
The study is opened in `setup(context)`: in the Optuna storage `context.storage` (`--storage`; PostgreSQL to
spread one search over machines), by default the run directory's `study.db`, so a resumed or parallel
search continues the same study; its trials carry the run directory as `run_id`. Other workers' results
(`observe`) are added unless their trials are in the study already. Used without `setup`
(benchmark scripts), the study lives in memory. Several asks before their tells are trials running side by
side; TPE runs with `constant_liar=True` so that it does not propose what running trials already try.
Constraints are enforced by the search loop before evaluation: an infeasible proposal is told as a
failed trial, which the samplers leave out of their models.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, cast

from nas.registry import register_strategy
from nas.shared import open_retrying
from nas.space import Architecture, ArchitectureError, NASError
from nas.strategy import Record, Strategy, StrategyContext

MAX_INVALID = 1000

if TYPE_CHECKING:
    import optuna


@register_strategy("optuna")
class OptunaStrategy(Strategy):
    """Optuna TPE (one objective) or NSGA-II (several objectives), or its GP sampler, through an Optuna study."""

    name = "optuna"

    def __init__(self, space, objectives, seed: int = 0, study_name: str = "nas", sampler: str = "auto",
                 n_startup_trials: int = 10) -> None:
        import warnings

        import optuna

        super().__init__(space, objectives, seed)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.kind = sampler if sampler != "auto" else ("nsga2" if len(self.objectives) > 1 else "tpe")
        if self.kind not in ("tpe", "gp", "nsga2", "random"):
            raise ValueError(f"optuna sampler {sampler!r} is not one of 'auto', 'tpe', 'gp', 'nsga2', 'random'")
        self.n_startup_trials = n_startup_trials
        self.sampler = self._sampler(seed)
        self.study_name = study_name
        self.run_id = ""
        self._study: optuna.Study | None = None
        self.pending: dict[Architecture, list] = {}  # asked, not told: the trials (or trial numbers) behind them
        self.orphans: list[tuple[Architecture, int]] = []  # this run's trials a kill left running

    def _sampler(self, seed: int) -> optuna.samplers.BaseSampler:
        import optuna

        if self.kind == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials, multivariate=True,
                                              group=True, constant_liar=True)
        if self.kind == "gp":  # parameters outside the trials' common ones go to its random sampler, unannounced
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.n_startup_trials,
                                             warn_independent_sampling=False)
        if self.kind == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)

    def setup(self, context: StrategyContext) -> None:
        """Open the study in `context.storage`, by default the run directory's study.db."""
        storage = context.storage
        if storage is None and context.run_dir is not None:
            storage = f"sqlite:///{(context.run_dir / 'study.db').resolve()}"
        self.run_id = str(context.run_dir.resolve()) if context.run_dir is not None else ""
        self._study = self._open_study(storage)

    @property
    def study(self) -> optuna.Study:
        """The study `setup` opened; an in-memory one when the strategy is used without `setup`."""
        if self._study is None:
            self._study = self._open_study(None)
        return self._study

    def _open_study(self, storage: str | None) -> optuna.Study:
        """Create or load the study (retried while workers starting together race to create it: `open_retrying`)."""
        import optuna

        # "maximize" or "minimize" (`Objective.parse` admits no other; optuna checks them again)
        directions = cast("list[Literal['minimize', 'maximize']]", [o.direction for o in self.objectives])
        return open_retrying(lambda: optuna.create_study(
            storage=storage, study_name=self.study_name, load_if_exists=True, sampler=self.sampler,
            directions=directions), str(storage))

    def ask(self) -> Architecture:
        """A trial's architecture; one that breaks a rule the choices cannot express (`space.check`, e.g. HyTra
        halving below its lowest level) is told to the study as failed and another trial asked."""
        import optuna

        if self.orphans:  # a trial the kill left running: its architecture was asked and is evaluated now
            arch, number = self.orphans.pop(0)
            self.pending.setdefault(arch, []).append(number)
            return arch
        for _ in range(MAX_INVALID):
            # the sampler's random state follows the trial number, so a resumed study proposes what an
            # uninterrupted one would have
            self.study.sampler = self._sampler(self.seed * 1_000_003 + len(self.study.trials))
            trial = self.study.ask()
            trial.set_user_attr("run_id", self.run_id)
            values: dict = {}
            for choice in self.space.choices():
                if choice.is_active(values):
                    values[choice.name] = trial.suggest_categorical(choice.name, list(choice.values))
            arch = Architecture(values)
            try:
                self.space.check(arch)
            except ArchitectureError:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            self.pending.setdefault(arch, []).append(trial)
            return arch
        raise NASError(f"optuna proposed {MAX_INVALID} invalid architectures of {self.space.name!r} in a row")

    def tell(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        import optuna

        arch = Architecture(arch)
        trials = self.pending.get(arch)
        state = optuna.trial.TrialState.FAIL if metrics is None else optuna.trial.TrialState.COMPLETE
        values = None if metrics is None else [float(metrics[o.metric]) for o in self.objectives]
        if trials:
            self.study.tell(trials.pop(0), values, state=state)
            return
        dists: dict[str, optuna.distributions.BaseDistribution] = {
            c.name: optuna.distributions.CategoricalDistribution(list(c.values))
            for c in self.space.choices() if c.name in arch}
        self.study.add_trial(optuna.trial.create_trial(params=dict(arch), distributions=dists, values=values,
                                                       state=state, user_attrs={"run_id": self.run_id}))

    def observe(self, arch: Architecture, metrics: Mapping[str, float] | None) -> None:
        """Another worker's result: added to the study unless a trial of it is there already (a worker of the
        same shared study)."""
        import optuna

        arch = Architecture(arch)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
        if self.pending.get(arch) or all(Architecture(t.params) != arch
                                       for t in self.study.get_trials(deepcopy=False, states=finished)):
            self.tell(arch, metrics)

    def restore(self, records: Sequence[Record]) -> None:
        """The study already holds the finished trials; this run's trials a kill left running are asked again
        first (their architectures were proposed, not yet evaluated; one with missing choices is failed). With a
        storage that was not kept (a fresh in-memory study), the history is told again."""
        import optuna

        for trial in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if trial.user_attrs.get("run_id") != self.run_id:
                continue
            arch = Architecture(trial.params)
            try:
                self.space.validate(arch)
                self.orphans.append((arch, trial.number))
            except ArchitectureError:
                self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if not self.study.trials:
            for record in records:
                self.tell(record.arch, record.metrics)
