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
from collections.abc import Callable

import optuna

from comparison import budget, sizing
from comparison.plan import PlannedStudy, Request, plan
from comparison.regimes import PRETRAINING
from comparison.resume import is_ready, stored_time_plan
from comparison.worker import POLL_SECONDS, Outcome, Worker, ensure_study
from errors import UserError
from objectives.create import check_name
from objectives.run import RunOptions
from storage import Heartbeat, display_url, open_storage, store, store_exists


def wait_for_plan(storage, prefix: str, say: Callable[[str], None], patience: float) -> None:
    """When another worker is storing this comparison's plan (its first study exists, not yet ready), wait until
    it has, at most `patience` seconds, so that this worker reads the plan instead of sizing its own."""
    first = f"{prefix}-{PRETRAINING[0].suffix}"
    deadline, said = time.monotonic() + patience, False
    while storage is not None and first in store.study_names(storage) and time.monotonic() < deadline:
        study = store.load_study(storage, first)
        if is_ready(study.user_attrs, bool(study.get_trials(deepcopy=False))):
            return
        if not said:
            say(f"waiting for the worker that is storing this comparison's plan ({first})")
            said = True
        time.sleep(min(POLL_SECONDS, 1.0))


def run_comparison(
    request: Request,
    *,
    url: str,
    artifacts_dir: str | None,
    options: RunOptions,
    say: Callable[[str], None],
    time_budget: str | None = None,
    workers: int = 1,
    heartbeat: Heartbeat | None = None,
) -> tuple[optuna.storages.BaseStorage, list[PlannedStudy], Outcome]:
    """The whole comparison, as one of any number of workers: plan (validated before any store or data is
    touched), read the plan another worker stored or size it to `time_budget` (a duration such as "15m"; None:
    the preset's default) on `workers` workers and print it with a time estimate (comparison.budget), then run
    whatever is ready (comparison.worker) until every study has used its budget; afterwards estimated vs actual
    time, which this machine's cost model learns from. Returns the store, the plan (every study, the seeds and
    labels studies included) and the outcome; the caller writes the report when the outcome says so."""
    started = time.perf_counter()
    check_name(request.prefix)
    options.check()
    if workers < 1:
        raise UserError("--workers must be >= 1")
    budget_s = sizing.preset_time_budget(time_budget, request.preset)
    plan(request)  # bad input fails here, before any store is opened
    heartbeat = heartbeat or Heartbeat()
    known = open_storage(url, heartbeat=heartbeat) if store_exists(url) else None
    if options.threads is not None:
        import torch  # only here: planning never needs it

        torch.set_num_threads(options.threads)
    wait_for_plan(known, request.prefix, say, heartbeat.grace_period)
    header = f"comparison {request.prefix!r}, preset {request.preset}, in {display_url(url)}"
    sizing_args = {"budget_s": budget_s, "device": options.device, "say": say, "header": header, "workers": workers}
    fresh = stored_time_plan(known, request.prefix) is None
    plans, time_plan, machine = budget.size_plan(request, known=known, **sizing_args)
    storage = known if known is not None else open_storage(url, create=True, heartbeat=heartbeat)
    if fresh:  # store the plan with the first study, unless another worker stored its plan a moment before
        ensure_study(storage, plans[0], artifacts_dir, url, time_plan)
        if stored_time_plan(storage, request.prefix) != json.loads(json.dumps(time_plan)):
            say("another worker stored this comparison's plan a moment before this one: using its plan")
            wait_for_plan(storage, request.prefix, say, heartbeat.grace_period)
            plans, time_plan, machine = budget.size_plan(request, known=storage, **{**sizing_args, "header": ""})
    where = {"url": url, "artifacts_dir": artifacts_dir, "say": say, "time_plan": time_plan}
    worker = Worker(storage, plans, options, **where, patience=heartbeat.grace_period)
    outcome = worker.run()
    plans = worker.plans()
    if outcome.seconds:
        for line in budget.time_lines(plans, time_plan, outcome.seconds, time.perf_counter() - started):
            say(line)
        budget.learn_from(machine, plans, time_plan, outcome.whole, outcome.seconds)
    return storage, plans, outcome
