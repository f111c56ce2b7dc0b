"""One `compare` worker among any number that share a comparison's plan through the store (one process or
machine each, against one store and one artifact directory): the store is the only coordinator.

A worker looks at every study of the plan, the seeds and labels studies included once what they re-run is
selected, and takes the first that is ready: created (or creatable) and with budget left, every study it waits
for (comparison.regimes.needs: the search whose best encoder it probes, the configuration it re-runs) *settled*,
i.e. that study has used its whole budget and no trial of it runs. It runs what is left of that study's budget
(objectives.run.run_study): workers on the same study share it trial by trial, and objectives.counting keeps the
total exact (a trial started by a race ends at once, FAIL "budget taken", not counted). When nothing is ready it
says, on one line, what it waits for, fails the trials of lost workers (so they are retried, resuming from their
checkpoints), and looks again every POLL_SECONDS.

A study is created once, whichever worker gets there first (study names are unique in the store); the others
see it `ready` only once its creator has set it up (comparison.resume.is_ready), so an encoder is pinned exactly
once. The report is written once: by the worker that finished the comparison's last trial (or, when this worker
found every study finished when it started, by this one: a `compare` run after the end writes it again).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from comparison.labels import curve_fractions, label_plans
from comparison.plan import PlannedStudy
from comparison.regimes import dependencies
from comparison.resume import add_wall_seconds, is_ready, remaining, set_study_error, simclr_encoder, tuned_values
from comparison.seeds import seed_plans
from errors import StudyExists, UserError, first_line
from objectives.counting import cancel_queued, uses_budget
from objectives.create import create_study, pin_encoder
from objectives.enqueue import enqueue_recipe
from objectives.run import RunOptions, requeue_grid_points, run_study
from storage import open_artifacts, schema, store
from storage.optuna_private import grid_id

POLL_SECONDS = 5.0  # how often a worker with nothing ready looks at the store again


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)  # studies that ran here, or were found with nothing left to run
    failed: dict[str, str] = field(default_factory=dict)  # study -> why it could not run
    seconds: dict[str, float] = field(default_factory=dict)  # study -> how long this worker ran it
    interrupted: bool = False
    whole: list[str] = field(default_factory=list)  # ran their whole budget here, nothing pruned: the cost model learns
    writes_report: bool = True  # this worker finished the last trial (or found everything finished)
    last_trial: str = ""  # "STUDY #N": the comparison's last finished trial


@dataclass(frozen=True)
class Status:
    """A planned study as the store has it now."""

    exists: bool = False
    ready: bool = False
    counted: int = 0  # trials (grid: points) that count toward its budget
    taken: int = 0  # ... and those running now, on any worker
    running: int = 0


def status(storage: optuna.storages.BaseStorage, planned: PlannedStudy) -> Status:
    try:
        study_id = storage.get_study_id_from_name(planned.name)
    except KeyError:
        return Status()
    trials = storage.get_all_trials(study_id, deepcopy=False)
    counted, _ = remaining(planned, trials)
    live = [t for t in trials if t.state == TrialState.RUNNING]
    if planned.grid:
        taken = len({grid_id(t) for t in trials if uses_budget(t) or t.state == TrialState.RUNNING} - {None})
    else:
        taken = counted + len(live)
    attrs = storage.get_study_user_attrs(study_id)
    return Status(True, is_ready(attrs, bool(trials)), counted, taken, len(live))


def ensure_study(
    storage: optuna.storages.BaseStorage,
    planned: PlannedStudy,
    artifacts_dir: str | None,
    url: str,
    time_plan: dict | None = None,
    take_over: bool = False,
) -> optuna.Study | None:
    """The planned study: loaded when it exists and is ready (checked by check_existing), else created, exactly
    once whichever worker gets there first (the others get None and look again later). The creator sets it up
    before it marks it ready (schema.READY): the sized plan stored on it, a probe of the SimCLR encoder pinned to
    the trial its best:STUDY resolves to now (objectives.create.pin_encoder: created only once that study has used
    its budget, so any worker would pin the same trial), the scale study with the parameters its search selected
    (comparison.resume.tuned_values), named in its `tuned_by` attr, a search with its preset's configuration
    queued as its first trial (objectives.enqueue.enqueue_recipe). With `take_over`, a study whose creator
    stopped before it was ready (killed between two writes) is set up here."""
    artifacts = open_artifacts(url, artifacts_dir, create=False)
    if planned.name in store.study_names(storage):
        study = store.load_study(storage, planned.name)
        if is_ready(study.user_attrs, bool(study.get_trials(deepcopy=False))):
            return study
        if not take_over:
            return None
        if schema.OBJECTIVE not in study.user_attrs:  # stopped before its spec was written: made again next look
            optuna.delete_study(study_name=planned.name, storage=storage)
            return None
        spec, (_, tuned_by) = store.study_spec(storage, planned.name), tuned_values(storage, planned)
        return _set_up(storage, study, planned, spec, tuned_by, artifacts, time_plan)
    encoder = simclr_encoder(storage, planned.comparison) if planned.probes_simclr else None
    tuned, tuned_by = tuned_values(storage, planned)
    planned = replace(planned, values={**planned.values, **tuned}) if tuned else planned
    spec = planned.spec(encoder)
    try:
        study = create_study(storage, planned.name, spec)
    except StudyExists:  # another worker created it a moment ago
        return None
    study.set_user_attr(schema.READY, False)
    return _set_up(storage, study, planned, spec, tuned_by, artifacts, time_plan)


def _set_up(storage, study: optuna.Study, planned: PlannedStudy, spec, tuned_by: str, artifacts, time_plan):
    """What ensure_study stores on a new study before it is ready; each step skipped when already done."""
    attrs = study.user_attrs
    if time_plan and schema.TIME_PLAN not in attrs:  # the sized plan travels with the studies, to any machine
        study.set_user_attr(schema.TIME_PLAN, json.dumps(time_plan))
    if planned.pretraining is not None and planned.pretraining.tuned_by and schema.TUNED_BY not in attrs:
        study.set_user_attr(schema.TUNED_BY, tuned_by)  # "" = the preset's configuration (the search had no pick)
    pin_encoder(storage, study, artifacts)
    if not planned.grid and not study.get_trials(deepcopy=False):
        enqueue_recipe(study, spec)  # every search's first trial is its recipe: equal for every regime
    study.set_user_attr(schema.READY, True)
    return study


def _counted_line(done: int, planned: PlannedStudy) -> str:
    return f"{done}/{planned.trials} trials done"


def waiting_line(blocked: dict[str, list[str]], states: dict[str, Status]) -> str:
    """What a worker with nothing ready waits for, in one line: each unsettled study, why (its trials run on
    other workers, or another worker is setting it up) and the studies waiting for it."""
    parts = []
    for name, waiting in blocked.items():
        s = states.get(name, Status())
        what = f"{s.running} trial(s) running on other workers" if s.running else "being set up by another worker"
        others = [w for w in waiting if w != name]
        parts.append(f"{name} ({what})" + (f" before {', '.join(others)}" if others else ""))
    return "waiting (any ready study is taken meanwhile): " + "; ".join(parts)


def finished_trials(
    storage: optuna.storages.BaseStorage, plans: Sequence[PlannedStudy]
) -> list[tuple[str, FrozenTrial]]:
    """(study, trial) for the finished trials of the comparison's studies, those of lost workers left out
    (another worker ended them)."""
    names = set(store.study_names(storage))
    out = []
    for planned in plans:
        if planned.name in names:
            for t in storage.get_all_trials(storage.get_study_id_from_name(planned.name), deepcopy=False):
                lost = str(t.user_attrs.get(schema.ERROR) or "").startswith(schema.WORKER_LOST)
                if t.state.is_finished() and not lost:
                    out.append((planned.name, t))
    return out


def _group(planned: PlannedStudy) -> str:
    """Which of the comparison's groups a study is in: the plan, the seeds studies or the labels studies."""
    return next((g for g in ("seeds", "labels") if planned.role.startswith(f"{g}_")), "plan")


class Worker:
    """One worker's loop over the comparison (the module docstring says how workers share it)."""

    def __init__(
        self,
        storage: optuna.storages.BaseStorage,
        roots: Sequence[PlannedStudy],
        options: RunOptions,
        *,
        url: str,
        artifacts_dir: str | None,
        say: Callable[[str], None],
        time_plan: dict | None,
        patience: float = 120.0,
    ):
        self.storage, self.roots, self.options = storage, list(roots), options
        self.patience = patience  # seconds a study may stay not ready before this worker sets it up itself
        self.unready_since: dict[str, float] = {}
        self.url, self.artifacts_dir, self.say, self.time_plan = url, artifacts_dir, say, time_plan
        self.prefix, self.preset = roots[0].comparison, roots[0].preset
        self.seeds = int(roots[1].spec().config["seeds"])
        self.needs = dependencies(self.prefix)
        self.outcome = Outcome()
        self.states: dict[str, Status] = {}
        self.derived: list[PlannedStudy] = []
        self.announced: set[str] = set()
        self.groups_said: set[str] = set()
        self.ran_ids: set[int] = set()
        self.waiting = ""

    # -- what the store holds ----------------------------------------------------------------------------------

    def plans(self) -> list[PlannedStudy]:
        return [*self.roots, *self.derived]

    def done(self, planned: PlannedStudy) -> bool:
        s = self.states.get(planned.name) or status(self.storage, planned)
        return s.exists and s.ready and s.counted >= planned.trials and s.running == 0

    def settled(self, name: str) -> bool:
        """Used its whole budget with nothing running (what depends on it may start), or cannot run here."""
        planned = next((p for p in self.plans() if p.name == name), None)
        return name in self.outcome.failed or (planned is not None and self.done(planned))

    def waits_for(self, planned: PlannedStudy) -> list[str]:
        return [name for name in self.needs.get(planned.name, []) if not self.settled(name)]

    def look(self) -> list[PlannedStudy]:
        """Every study of the plan now, with its status: the planned ones, then the seeds and labels studies of
        the regimes whose selection is final."""
        self.states = {p.name: status(self.storage, p) for p in self.roots}
        known = {p.name for p in self.derived}
        candidates = [*seed_plans(self.storage, self.prefix, self.preset, self.seeds)]
        candidates += label_plans(self.storage, self.prefix, self.preset, self.seeds)
        for planned in candidates:
            if planned.name not in known and not self.waits_for(planned):
                self.derived.append(planned)
        self.states |= {p.name: status(self.storage, p) for p in self.derived}
        return self.plans()

    def ready(self, planned: PlannedStudy) -> bool:
        s = self.states[planned.name]
        if planned.name in self.outcome.failed or self.waits_for(planned):
            return False
        return not s.exists or (s.ready and s.taken < planned.trials) or self.stuck(planned)

    def stuck(self, planned: PlannedStudy) -> bool:
        """Not ready for longer than `patience`: its creator stopped while setting it up."""
        s = self.states[planned.name]
        if not s.exists or s.ready:
            self.unready_since.pop(planned.name, None)
            return False
        now = time.monotonic()
        return now - self.unready_since.setdefault(planned.name, now) >= self.patience

    # -- the loop ----------------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        before = {t._trial_id for _, t in finished_trials(self.storage, self.look())}
        while not self.outcome.interrupted:
            plans = self.look()
            self.announce_done(plans)
            pick = next((p for p in plans if self.ready(p)), None)
            if pick is not None:
                self.take(pick)
                continue
            if all(self.settled(p.name) for p in plans):
                break
            self.wait(plans)
        if not self.outcome.interrupted:
            self.decide_report(before)
        return self.outcome

    def head(self, planned: PlannedStudy, short: bool = False) -> str:
        group = [p for p in self.plans() if _group(p) == _group(planned)]
        k = next(i for i, p in enumerate(group, 1) if p.name == planned.name)
        what = "" if short else f" ({planned.objective}, role {planned.role})"
        return f"[{k}/{len(group)}] {planned.name}{what}"

    def announce_done(self, plans: Sequence[PlannedStudy]) -> None:
        for planned in plans:
            if planned.name not in self.announced and self.done(planned):
                self.announced.add(planned.name)
                cancel_queued(self.storage, self.storage.get_study_id_from_name(planned.name), planned.trials)
                counted = self.states[planned.name].counted
                self.say(f"{self.head(planned)}: {_counted_line(counted, planned)}, nothing left to run")
                self.outcome.ran.append(planned.name)

    def group_line(self, planned: PlannedStudy) -> None:
        """The first seeds (labels) study this worker runs says what the seeds (labels) studies are."""
        group = _group(planned)
        if group == "plan" or group in self.groups_said:
            return
        self.groups_said.add(group)
        if group == "seeds":
            self.say(f"seeds: each regime's selected configuration with {self.seeds - 1} more seed(s)")
        else:
            fractions = ", ".join(f"{f:g}" for f in curve_fractions(self.preset))
            self.say(f"label efficiency: each regime's selected configuration at label fractions {fractions}")

    def take(self, planned: PlannedStudy) -> None:
        """Create (or load) the study and run what is left of its budget here, beside any other worker on it."""
        stuck = self.stuck(planned)
        study = ensure_study(self.storage, planned, self.artifacts_dir, self.url, self.time_plan, take_over=stuck)
        if stuck and study is not None:
            self.say(f"{self.head(planned, short=True)}: its creator stopped before it was ready; set up here")
        if study is None:  # another worker is creating it: it is ready at a later look
            self.states[planned.name] = replace(self.states[planned.name], exists=True, ready=False)
            return
        now = status(self.storage, planned)  # another worker may have taken the last trial since the look
        if now.taken >= planned.trials:
            self.states[planned.name] = now
            return
        queued = requeue_grid_points(study) if planned.grid else []
        done, left = remaining(planned, study.get_trials(deepcopy=False))
        self.group_line(planned)
        self.announced.add(planned.name)
        others = f" ({now.running} running on other workers)" if now.running else ""
        again = f"; {len(queued)} interrupted grid point(s) queued again" if queued else ""
        self.say(f"{self.head(planned)}: {_counted_line(done, planned)}, running {left}{others}{again}")
        total = None if planned.grid else planned.trials  # the budget across workers (objectives.counting)
        options = replace(self.options, trials=left, total_trials=total)
        started = time.perf_counter()
        try:
            summary = run_study(
                self.storage, planned.name, options, url=self.url, artifacts_dir=self.artifacts_dir, say=self.say
            )
        except UserError as e:
            reason = first_line(e) or "cannot start"
            set_study_error(self.storage, planned.name, reason)
            self.outcome.failed[planned.name] = reason
            self.say(f"{self.head(planned, short=True)} cannot run: {reason} (recorded; going on)")
            return
        self.finish(planned, summary, done, time.perf_counter() - started, study)

    def finish(self, planned: PlannedStudy, summary, done: int, seconds: float, study: optuna.Study) -> None:
        set_study_error(self.storage, planned.name, "")
        if planned.name not in self.outcome.ran:
            self.outcome.ran.append(planned.name)
        self.outcome.seconds[planned.name] = self.outcome.seconds.get(planned.name, 0.0) + seconds
        self.ran_ids |= set(summary.trial_ids)
        add_wall_seconds(study, seconds)
        ran = [s for s in summary.states if s != "SKIPPED"]
        if done == 0 and len(ran) == planned.trials and set(ran) == {"COMPLETE"}:  # what the estimate models
            self.outcome.whole.append(planned.name)
        if summary.states:  # else another worker took its last trial a moment before (run_study said so)
            self.say(summary.line())
            self.say(f"{self.head(planned, short=True)}: {seconds / 60:.1f} min")
        self.outcome.interrupted = summary.interrupted

    # -- nothing ready -----------------------------------------------------------------------------------------

    def wait(self, plans: Sequence[PlannedStudy]) -> None:
        """Say what this worker waits for (when that changes), retry lost workers' trials, look again later."""
        blocked: dict[str, list[str]] = {}  # a study not settled -> the studies waiting for it (itself included)
        for planned in plans:
            if not self.settled(planned.name):
                for name in self.waits_for(planned) or [planned.name]:
                    blocked.setdefault(name, []).append(planned.name)
        line = waiting_line(blocked, self.states)
        if line != self.waiting:
            self.say(line)
            self.waiting = line
        self.recover(plans)
        time.sleep(POLL_SECONDS)

    def recover(self, plans: Sequence[PlannedStudy]) -> None:
        """Fail the trials whose worker stopped sending heartbeats, and queue their retries (storage.recovery)."""
        for planned in plans:
            if self.states[planned.name].running:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since Optuna 2.9
                    optuna.storages.fail_stale_trials(store.load_study(self.storage, planned.name))

    # -- the report --------------------------------------------------------------------------------------------

    def decide_report(self, before: set[int]) -> None:
        """Whether this worker writes the report: it finished the comparison's last trial, or that trial had
        finished before this worker started (a run after the end). Every worker decides alike from the store."""
        trials = finished_trials(self.storage, self.plans())
        if not trials:
            return
        name, last = max(trials, key=lambda pair: (pair[1].datetime_complete, pair[1]._trial_id))
        self.outcome.last_trial = f"{name} #{last.number}"
        self.outcome.writes_report = last._trial_id in self.ran_ids or last._trial_id in before
