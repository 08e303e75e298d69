"""One search shared by several worker processes through an Optuna storage (`--storage`): claims and results.

Workers given the same `--storage` and the same search settings (all but the seed, strategy, its options, the
budget and the run directory: `study_name`) open one Optuna study of claims in it. Before a worker evaluates
an architecture it claims it: a trial in state RUNNING whose user attrs hold the architecture's canonical key
(`SearchSpace.canonical`, so isomorphic architectures are one), the architecture and the worker's run directory.
The claim is written, then read back with all others (write-then-read: of two workers claiming the same key at
once, at least one sees the other): the worker keeps it only when no other live claim or result holds the key
and the results plus the other live claims leave room in the budget; otherwise it withdraws the claim (state
FAIL, user attr "withdrawn") and looks again after a random pause. So no key is evaluated twice and the study
never holds more than the budget's results. A finished evaluation completes the trial (the objectives as its
values, every metric in user attr "metrics"); one that broke a constraint fails it with user attr "infeasible";
one that raised releases it (FAIL), for another worker to retry.

While a worker holds claims a thread records their heartbeats (Optuna's, in the database's clock); a claim
whose heartbeat is older than `GRACE_S` (its worker was killed) is failed by the next worker that looks
(`optuna.storages.fail_stale_trials`), and its architecture can be claimed again. A resumed worker releases its
own claims at once, and completes the claims of evaluations its history holds that a kill left unfinished.
"""
from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm.auto import tqdm

from nas.objectives import Objective
from nas.space import Architecture, NASError, SearchSpace
from nas.strategy import Record, Strategy, StrategyContext

if TYPE_CHECKING:
    import optuna

HEARTBEAT_S = 5  # seconds between the heartbeats of a worker's claims
GRACE_S = 30  # a claim without a heartbeat for this long belongs to a dead worker and is failed
POLL_S = 0.5  # seconds between looks while other workers' claims fill the budget
MAX_SKIPPED = 1000  # proposals in a row that other workers hold before the search gives up
#: settings that do not change what an evaluation gives, so workers that differ in them share one study
PRIVATE_SETTINGS = ("seed", "strategy", "options", "budget", "budget_preset", "storage", "retrain", "export")
PRIVATE_TRAIN = ("device", "num_threads")
T = TypeVar("T")


def open_retrying(make: Callable[[], T], url: str, attempts: int = 8) -> T:
    """`make()` (open an Optuna storage or study), retried while workers starting together race to create the
    storage's tables and the study; a one-line `NASError` when the database cannot be reached."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts):
        try:
            return make()
        except (IntegrityError, OperationalError, optuna.exceptions.DuplicatedStudyError) as err:
            if attempt == attempts - 1 and isinstance(err, OperationalError):  # e.g. no database server there
                reason = (str(err.orig or err).strip().splitlines() or [""])[0][:200]
                raise NASError(f"storage {url[:200]!r} cannot be opened: {reason}") from None
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def study_name(settings: Mapping[str, Any]) -> str:
    """The claims study of a search: the space and a digest of the settings that decide the evaluations."""
    shared = {k: v for k, v in settings.items() if k not in PRIVATE_SETTINGS}
    shared["train"] = {k: v for k, v in (settings.get("train") or {}).items() if k not in PRIVATE_TRAIN}
    digest = hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"nas-claims-{settings.get('space')}-{digest}"


@dataclass
class Claim:
    """One trial of the claims study: an architecture claimed (`state` "running") or evaluated ("done" with
    `metrics`, "infeasible")."""

    trial_id: int
    key: str
    arch: Architecture
    state: str
    metrics: dict[str, float] | None
    run_id: str


@dataclass
class Outcome:
    """What `SharedClaims.claim` found: "claimed" (evaluate it, then `finish(trial_id, ...)`), "done" or
    "infeasible" (another claim's result, `found`), "running" (another worker evaluates it now), "full" (the
    results and live claims fill the budget)."""

    kind: str
    trial_id: int = -1
    found: Claim | None = None


class SharedClaims:
    """The claims study of one search in a shared Optuna storage; see the module's docstring."""

    def __init__(self, storage: str, name: str, space: SearchSpace, objectives: Sequence[Objective], budget: int,
                 run_id: str) -> None:
        import optuna

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space, self.objectives, self.budget, self.run_id, self.name = space, list(objectives), budget, run_id, name
        self.storage, self.study = self._open(optuna, storage)
        self.held: set[int] = set()
        self.claims: list[Claim] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeats, name="nas-claims-heartbeat", daemon=True)
        self._beat.start()

    def _open(self, optuna: Any, url: str) -> tuple[optuna.storages.RDBStorage, optuna.Study]:
        """Open the storage (heartbeats on) and create or load the study."""
        def make() -> tuple[optuna.storages.RDBStorage, optuna.Study]:
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
            return storage, optuna.create_study(storage=storage, study_name=self.name, load_if_exists=True,
                                                directions=[o.direction for o in self.objectives])

        return open_retrying(make, url)

    # -- reading -----------------------------------------------------------------------------------------------
    def sync(self) -> list[Claim]:
        """Fail the claims of dead workers, then read every claim and result (also kept in `claims`)."""
        import optuna

        optuna.storages.fail_stale_trials(self.study)
        claims = []
        # from the database itself, not the study's cache: that one reads only trials numbered above the last
        # finished one it saw, and misses a claim inserted before it but committed after (PostgreSQL)
        for trial in self.storage.get_all_trials(self.study._study_id, deepcopy=False):
            attrs = trial.user_attrs
            if "key" not in attrs:
                continue
            if trial.state == optuna.trial.TrialState.RUNNING:
                state = "running"
            elif trial.state == optuna.trial.TrialState.COMPLETE and isinstance(attrs.get("metrics"), dict):
                state = "done"
            elif trial.state == optuna.trial.TrialState.FAIL and attrs.get("infeasible"):
                state = "infeasible"
            else:  # withdrawn, released or failed as stale: no claim
                continue
            claims.append(Claim(trial._trial_id, attrs["key"], Architecture.from_json(attrs["arch"]),
                                state, attrs.get("metrics"), attrs.get("run_id", "")))
        self.claims = claims
        return claims

    def results(self) -> int:
        """Evaluations finished in the study (as of the last `sync`): what the budget counts."""
        return sum(1 for c in self.claims if c.state == "done")

    def room(self) -> int:
        """Evaluations the budget still allows beside the results and the live claims (as of the last `sync`)."""
        return self.budget - sum(1 for c in self.claims if c.state in ("done", "running"))

    def finished(self) -> list[Claim]:
        """Results (done or infeasible) as of the last `sync`."""
        return [c for c in self.claims if c.state != "running"]

    # -- claiming ----------------------------------------------------------------------------------------------
    def claim(self, arch: Architecture) -> Outcome:
        """Claim `arch` for this worker, unless another claim or result holds its key or the budget is full (as
        of the last `sync` first: `SharedSearch.more` has just read them)."""
        key = self.space.canonical(arch)
        claims = self.claims
        while True:
            found = self._holder(claims, key, -1)
            if found is not None:
                return Outcome(found.state, found=found)
            if self.room() <= 0:
                return Outcome("full")
            trial_id = self._create(arch, key)
            claims = self.sync()
            if self._holder(claims, key, trial_id) is None and self.room() >= 0:
                return Outcome("claimed", trial_id)
            self._end(trial_id, None, {"withdrawn": True})
            time.sleep(random.uniform(0.02, 0.3))  # both withdrew: look again, at different moments
            claims = self.sync()

    @staticmethod
    def _holder(claims: Sequence[Claim], key: str, mine: int) -> Claim | None:
        """The first claim or result of `key` other than trial `mine`."""
        return next((c for c in claims if c.key == key and c.trial_id != mine), None)

    def _create(self, arch: Architecture, key: str) -> int:
        import optuna

        trial = optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING,
                                          user_attrs={"key": key, "arch": arch.to_json(), "run_id": self.run_id})
        trial_id = self.storage.create_new_trial(self.study._study_id, template_trial=trial)
        with self._lock:
            self.held.add(trial_id)
        self.storage.record_heartbeat(trial_id)
        return trial_id

    def finish(self, trial_id: int, record: Record) -> None:
        """Complete the claim with `record`'s metrics, or fail it as infeasible."""
        if record.metrics is None:
            self._end(trial_id, None, {"infeasible": True})
        else:
            self._end(trial_id, record.metrics, {"metrics": record.metrics})

    def release(self, trial_id: int) -> None:
        """Give up a claim without a result (the evaluation raised): another worker may claim it again."""
        self._end(trial_id, None, {"released": True})

    def _end(self, trial_id: int, metrics: Mapping[str, float] | None, attrs: Mapping[str, Any]) -> None:
        import optuna
        from optuna.trial import TrialState

        with self._lock:
            self.held.discard(trial_id)
        for k, v in attrs.items():
            self.storage.set_trial_user_attr(trial_id, k, v)
        values = None if metrics is None else [float(metrics[o.metric]) for o in self.objectives]
        try:
            state = TrialState.FAIL if values is None else TrialState.COMPLETE
            self.storage.set_trial_state_values(trial_id, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:  # failed as stale meanwhile: record the result anew
            if values is not None:
                old = self.storage.get_trial(trial_id)
                self.storage.create_new_trial(self.study._study_id, template_trial=optuna.trial.create_trial(
                    state=TrialState.COMPLETE, values=values, user_attrs=dict(old.user_attrs)))

    # -- resuming ----------------------------------------------------------------------------------------------
    def reconcile(self, records: Sequence[Record]) -> None:
        """On (re)start: release this run's own claims (a kill left them), and complete the claims of
        evaluations `records` (this run's history) holds that no result in the study has."""
        import optuna

        claims = self.sync()
        for c in claims:
            if c.state == "running" and c.run_id == self.run_id:
                self.release(c.trial_id)
        known = {c.key for c in claims if c.state != "running"}
        for r in records:
            key = self.space.canonical(r.arch)
            if r.feasible and not r.info.get("cached") and key not in known:
                known.add(key)
                self.storage.create_new_trial(self.study._study_id, template_trial=optuna.trial.create_trial(
                    state=optuna.trial.TrialState.COMPLETE,
                    values=[float(r.feasible_metrics[o.metric]) for o in self.objectives],
                    user_attrs={"key": key, "arch": r.arch.to_json(), "run_id": self.run_id,
                                "metrics": r.metrics}))

    def _heartbeats(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with self._lock:
                held = list(self.held)
            for trial_id in held:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a missed beat (a busy database) is retried at the next one
                    continue

    def close(self) -> None:
        """Stop the heartbeats and release what is still claimed."""
        self._stop.set()
        self._beat.join()
        with self._lock:
            held = list(self.held)
        for trial_id in held:
            self.release(trial_id)


class SharedSearch:
    """The search loop's side of a shared search (`nas.search.run_search` with `context.storage`): it claims
    what the strategy asks before it is evaluated, tells the strategy the results of other workers
    (`Strategy.observe`; the known result when it asked an architecture already evaluated), keeps the asks that
    another worker evaluates now until their result arrives (or asks them again when that worker died), and
    ends the search when the study holds `budget` results. `observed` are the claims (trial ids) whose results the
    strategy was told before (saved with its state)."""

    def __init__(self, context: StrategyContext, strategy: Strategy, records: Sequence[Record], budget: int,
                 observed: Iterable[int] = ()) -> None:
        assert context.storage is not None
        run_id = str(context.run_dir.resolve()) if context.run_dir is not None else ""
        self.claims = SharedClaims(context.storage, context.study or f"nas-claims-{context.space.name}",
                                   context.space, context.objectives, budget, run_id)
        self.claims.reconcile(records)
        tqdm.write(f"sharing the search with every worker of study {self.claims.name!r} in --storage")
        self.strategy, self.space = strategy, context.space
        self.observed = set(observed)
        self.waiting: dict[str, Architecture] = {}  # asked, held by another worker's claim: key -> architecture
        self.trial = -1  # the claim being evaluated
        self.skipped = 0

    def more(self) -> bool:
        """Tell the strategy the results it has not seen; wait while live claims fill the budget; False once the
        study holds the budget's results."""
        while True:
            self.claims.sync()
            self._observe()
            if self.claims.results() >= self.claims.budget:
                return False
            if self.claims.room() > 0:
                return True
            time.sleep(POLL_S)

    def ask(self) -> Architecture:
        """An earlier ask whose holder gave it up (a dead worker, a full budget), else the strategy's next."""
        held = {c.key for c in self.claims.claims}
        orphan = next((k for k in self.waiting if k not in held), None)
        return self.waiting.pop(orphan) if orphan is not None else self.strategy.ask()

    def evaluate(self, arch: Architecture, evaluate: Callable[[], Record]) -> Record | None:
        """`evaluate()` once `arch` is claimed (the claim is released if it raises); None when another worker holds
        it: its result was told to the strategy, or will be when it arrives."""
        outcome = self.claims.claim(arch)
        if outcome.kind != "claimed":
            self.skipped += 1
            if self.skipped > MAX_SKIPPED:
                raise NASError(f"{MAX_SKIPPED} proposals in a row were evaluated or claimed by other workers of "
                               f"study {self.claims.name!r}: the space looks exhausted")
            if outcome.found is not None and outcome.found.state != "running":
                self.strategy.tell(arch, outcome.found.metrics)
                self.observed.add(outcome.found.trial_id)
            else:
                self.waiting[self.space.canonical(arch)] = arch
            return None
        self.skipped, self.trial = 0, outcome.trial_id
        try:
            return evaluate()
        except BaseException:
            self.claims.release(self.trial)
            raise

    def finish(self, record: Record) -> None:
        """Complete the claim of the evaluation `record` holds (after it is in the history)."""
        self.claims.finish(self.trial, record)

    def _observe(self) -> None:
        for c in self.claims.finished():
            if c.trial_id in self.observed or c.run_id == self.claims.run_id:
                continue
            self.observed.add(c.trial_id)
            arch = self.waiting.pop(c.key, None)
            if arch is not None:
                self.strategy.tell(arch, c.metrics)
            else:
                self.strategy.observe(c.arch, c.metrics)

    def close(self, evaluated: int) -> None:
        """Stop the heartbeats; a one-line error when this worker, having `evaluated` architectures, found the
        budget evaluated by the others."""
        self.claims.close()
        if not evaluated:
            raise NASError(f"the shared search (study {self.claims.name!r} in --storage) holds its "
                           f"{self.claims.budget} evaluations already, all by other workers: nothing was left "
                           "for this one")
