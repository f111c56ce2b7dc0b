"""`study.py compare`: the whole comparison as one resumable command over one store.

The plan (comparison.plan: the studies PREFIX-*, each with the attrs comparison=PREFIX, preset and role) is sized to
the time budget and printed (comparison.budget); then each study is created (the SimCLR probe's encoder pinned to
best:PREFIX-hparams, or best:PREFIX-scale when only that one has a complete trial) or loaded, and runs what is left
of its budget; then each regime's selected configuration runs with the other seeds (comparison.seeds) and at fewer
labels (comparison.labels).

Resuming. Studies that exist are loaded, never recreated, after checking that they hold what this command would
create (else: UserError, use another --prefix). A study runs what is left of its budget: the budget minus the
trials that *count*. COMPLETE and PRUNED trials count, and so does a FAIL whose "error" the objective recorded
(diverged, out of memory, a bad value): its parameters with the same seed would fail again, and the search has
moved on. A FAIL "interrupted" (Ctrl-C, SIGTERM) or without an error (a killed worker: the heartbeat retry
re-runs it) does not count, nor does a grid duplicate. A grid point whose trials are all such FAILs is queued
again as a retry of its last trial, because Optuna's GridSampler counts every finished point as visited.

A study that cannot start (`prepare()` raises UserError: no ImageNet weights offline, no SimCLR encoder) gets
the reason in its "error" study attr, which the report shows for the missing regime, and compare goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import optuna

from comparison import budget, sizing
from comparison.labels import curve_fractions, label_plans
from comparison.plan import PlannedStudy, Request, plan
from comparison.resume import add_wall_seconds, remaining, set_study_error, simclr_encoder, tuned_values
from comparison.seeds import seed_plans
from errors import UserError, first_line
from objectives.create import check_name, create_study, pin_encoder
from objectives.enqueue import enqueue_recipe
from objectives.run import RunOptions, requeue_grid_points, run_study
from storage import display_url, open_artifacts, open_storage, schema, store, store_exists


@dataclass
class Outcome:
    ran: list[str] = field(default_factory=list)  # studies that ran (or had nothing left to run)
    failed: dict[str, str] = field(default_factory=dict)  # study -> why it could not run
    seconds: dict[str, float] = field(default_factory=dict)  # study -> how long its optimize took
    interrupted: bool = False
    whole: list[str] = field(default_factory=list)  # ran their whole budget here, nothing pruned: the cost model learns

    def merged(self, other: Outcome) -> Outcome:
        return Outcome(
            [*self.ran, *other.ran],
            {**self.failed, **other.failed},
            {**self.seconds, **other.seconds},
            self.interrupted or other.interrupted,
            [*self.whole, *other.whole],
        )


def ensure_study(
    storage: optuna.storages.BaseStorage,
    planned: PlannedStudy,
    artifacts_dir: str | None,
    url: str,
    time_plan: dict | None = None,
) -> optuna.Study:
    """The planned study: loaded when it exists (checked by check_existing), else created; a probe of the SimCLR
    encoder pinned to the trial its best:STUDY resolves to now (objectives.create.pin_encoder); the scale study
    with the parameters its search selected (comparison.resume.tuned_values), named in its `tuned_by` attr; a
    search with its preset's configuration queued as its first trial (objectives.enqueue.enqueue_recipe)."""
    if planned.name in store.study_names(storage):
        return store.load_study(storage, planned.name)
    encoder = simclr_encoder(storage, planned.comparison) if planned.probes_simclr else None
    tuned, tuned_by = tuned_values(storage, planned)
    planned = replace(planned, values={**planned.values, **tuned}) if tuned else planned
    spec = planned.spec(encoder)
    study = create_study(storage, planned.name, spec)
    if not planned.grid:
        enqueue_recipe(study, spec)  # every search's first trial is its recipe: equal for every regime
    if planned.pretraining is not None and planned.pretraining.tuned_by:
        study.set_user_attr(schema.TUNED_BY, tuned_by)  # "" = the preset's configuration (the search had no pick)
    pin_encoder(storage, study, open_artifacts(url, artifacts_dir, create=False))
    if time_plan:  # the sized plan travels with the studies: a resumed run keeps it on any machine
        study.set_user_attr(schema.TIME_PLAN, json.dumps(time_plan))
    return study


def run_plans(
    plans: Sequence[PlannedStudy],
    storage: optuna.storages.BaseStorage,
    options: RunOptions,
    *,
    url: str,
    artifacts_dir: str | None,
    say: Callable[[str], None],
    time_plan: dict | None = None,
) -> Outcome:
    """Create or load each study and run what is left of its budget (objectives.run.run_study, in this process,
    on the one opened store). A study that cannot start (UserError) gets the reason recorded on it; an interrupt
    stops all. A new study stores `time_plan` (the sized plan)."""
    outcome = Outcome()
    for k, planned in enumerate(plans, 1):
        study = ensure_study(storage, planned, artifacts_dir, url, time_plan)
        queued = requeue_grid_points(study) if planned.grid else []
        done, left = remaining(planned, study.get_trials(deepcopy=False))
        head = f"[{k}/{len(plans)}] {planned.name} ({planned.objective}, role {planned.role})"
        if left == 0:
            say(f"{head}: {done}/{planned.trials} trials done, nothing left to run")
            outcome.ran.append(planned.name)
            continue
        again = f"; {len(queued)} interrupted grid point(s) queued again" if queued else ""
        say(f"{head}: {done}/{planned.trials} trials done, running {left}{again}")
        started = time.perf_counter()
        try:
            summary = run_study(
                storage, planned.name, replace(options, trials=left), url=url, artifacts_dir=artifacts_dir, say=say
            )
        except UserError as e:
            reason = first_line(e) or "cannot start"
            set_study_error(storage, planned.name, reason)
            outcome.failed[planned.name] = reason
            say(f"[{k}/{len(plans)}] {planned.name} cannot run: {reason} (recorded; going on)")
            continue
        set_study_error(storage, planned.name, "")
        outcome.ran.append(planned.name)
        outcome.seconds[planned.name] = time.perf_counter() - started
        add_wall_seconds(study, outcome.seconds[planned.name])
        if done == 0 and not summary.interrupted and "PRUNED" not in summary.states:  # what the estimate models
            outcome.whole.append(planned.name)
        say(summary.line())
        say(f"[{k}/{len(plans)}] {planned.name}: {outcome.seconds[planned.name] / 60:.1f} min")
        if summary.interrupted:
            outcome.interrupted = True
            break
    return outcome


def run_comparison(
    request: Request,
    *,
    url: str,
    artifacts_dir: str | None,
    options: RunOptions,
    say: Callable[[str], None],
    time_budget: str | None = None,
) -> tuple[optuna.storages.BaseStorage, list[PlannedStudy], Outcome]:
    """The whole comparison: plan (validated before any store or data is touched), check what a resumed run
    finds, size the plan to `time_budget` (a duration such as "15m"; None: the preset's default) and print it with
    a time estimate (comparison.budget), then create and run each study; afterwards estimated vs actual time, which
    this machine's cost model learns from. Returns the store, the plan and the outcome; the caller writes the
    report."""
    started = time.perf_counter()
    check_name(request.prefix)
    options.check()
    budget_s = sizing.preset_time_budget(time_budget, request.preset)
    plan(request)  # bad input fails here, before any store is opened
    known = open_storage(url) if store_exists(url) else None
    if options.threads is not None:
        import torch  # only here: planning never needs it

        torch.set_num_threads(options.threads)
    header = f"comparison {request.prefix!r}, preset {request.preset}, in {display_url(url)}"
    plans, time_plan, machine = budget.size_plan(
        request, known=known, budget_s=budget_s, device=options.device, say=say, header=header
    )
    storage = known if known is not None else open_storage(url, create=True)
    run = {"url": url, "artifacts_dir": artifacts_dir, "say": say, "time_plan": time_plan}
    outcome = run_plans(plans, storage, options, **run)
    seeds = int(plans[1].spec().config["seeds"])
    if seeds > 1 and not outcome.interrupted:  # each regime's selected configuration with other seeds
        extra = seed_plans(storage, request.prefix, request.preset, seeds)
        say(f"seeds: each regime's selected configuration with {seeds - 1} more seed(s): {len(extra)} studies")
        plans, outcome = [*plans, *extra], outcome.merged(run_plans(extra, storage, options, **run))
    if not outcome.interrupted:  # each regime's selected configuration on fewer labels
        extra = label_plans(storage, request.prefix, request.preset, seeds)
        fractions = ", ".join(f"{f:g}" for f in curve_fractions(request.preset))
        say(f"label efficiency: each regime's selected configuration at label fractions {fractions}: {len(extra)}")
        plans, outcome = [*plans, *extra], outcome.merged(run_plans(extra, storage, options, **run))
    if outcome.seconds:
        for line in budget.time_lines(plans, time_plan, outcome.seconds, time.perf_counter() - started):
            say(line)
        budget.learn_from(machine, plans, time_plan, outcome.whole, outcome.seconds)
    return storage, plans, outcome
