#!/usr/bin/env python3
"""The command line: Optuna studies over SimCLR, the linear protocol and supervised training, in one store.

    python study.py create --objective {simclr,linear_probe,supervised,finetune} [--name NAME]
            [--preset {smoke,default,paper}] [--set KEY=VALUE ...] [--param NAME=SPEC ...]
            [--sampler {tpe,random,grid,cmaes,gp}] [--pruner median|hyperband|none] [--seed N]
    python study.py optimize NAME [--trials N] [--timeout SECONDS] [--device auto|cpu|cuda|cuda:K]
    python study.py list | show NAME [--json] | delete NAME
    python study.py dashboard [--host 127.0.0.1] [--port 8080]
    python study.py report [NAME ...] [--out report.html]
    python study.py compare [--preset smoke|default|paper] [--prefix NAME] [--set KEY=VALUE ...] [--trials N]
            [--device ...] [--threads N] [--out report.html]

Every command takes --storage URL (else $STUDY_STORAGE, else sqlite:///studies.db) and --artifacts DIR.
Exit codes: 0 done; 1 `optimize` ran but none of its trials completed; 2 bad input (one line on stderr, the
store unchanged); 130 interrupted. Thin by design: parsing here, the work in storage/, objectives/, reports/.
Only `optimize` imports torch (lazily), so the other commands answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

from errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line ("error: ...") and exit code 2, like every other bad input."""

    def error(self, message: str):
        sys.stderr.write(f"error: {self.prog}: {one_line(message)}\n")
        raise SystemExit(2)


def one_line(message: str) -> str:
    """A message as one line whatever the user typed: control characters and line separators escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


# ---------------------------------------------------------------------------------------------------------
# create


def _default_name(objective: str, taken: set[str]) -> str:
    base = f"{objective}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > 500 or not name.isprintable():
        raise UserError(f"study name {name!r}: use 1-500 printable characters")


def cmd_create(args: argparse.Namespace) -> int:
    from objectives import build_spec, create_study
    from objectives.space import parse_encoder
    from storage import open_storage, resolve_url, store_exists, study_names

    spec = build_spec(
        args.objective,
        preset=args.preset,
        sets=args.set,
        params=args.param,
        sampler=args.sampler,
        pruner=args.pruner,
        seed=args.seed,
        role=args.role,
        comparison=args.comparison,
    )
    if args.name is not None:
        _check_name(args.name)
    referenced = []
    if "encoder" in spec.config:
        kind, ref, _ = parse_encoder(spec.encoder)
        if kind in ("best", "trial"):
            referenced.append(ref)
        elif kind == "path" and not os.path.isfile(ref):
            raise UserError(f"encoder {ref!r}: no such checkpoint file")
    url = resolve_url(args.storage)
    if referenced and not store_exists(url):
        raise UserError(f"encoder {spec.encoder!r}: study {referenced[0]!r} not found (the store does not exist yet)")
    storage = open_storage(url, create=True)
    names = set(study_names(storage))
    for ref in referenced:
        if ref not in names:
            raise UserError(f"encoder {spec.encoder!r}: no study named {ref!r} in the store")
    name = args.name or _default_name(args.objective, names)
    if name in names:
        raise UserError(f"a study named {name!r} already exists (delete it first, or pick another --name)")
    create_study(storage, name, spec)
    print(name)
    return 0


# ---------------------------------------------------------------------------------------------------------
# optimize


class _TrialProgress:
    """Optuna callback: a tqdm bar over the worker's trials on a terminal, nothing otherwise."""

    def __init__(self, total: int | None, enabled: bool):
        self.bar = None
        self.states: list[str] = []
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="trials", unit="trial", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, study, trial) -> None:
        from storage.schema import ERROR, GRID_TAKEN

        state = trial.state.name
        if state == "FAIL" and str(trial.user_attrs.get(ERROR, "")).startswith(GRID_TAKEN):
            state = "SKIPPED"  # another worker took this grid point as this one asked for it: nothing ran
        self.states.append(state)
        if self.bar is not None:
            value = "" if trial.value is None else f" value {trial.value:.2f}"
            error = trial.user_attrs.get("error")
            self.bar.write(
                f"trial {trial.number} {trial.state.name}{value}{f': {error}' if error else ''}", file=sys.stderr
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_optimize(args: argparse.Namespace) -> int:
    import optuna

    from objectives import make_objective, open_study
    from storage import Heartbeat, open_artifacts, open_storage

    if args.trials is not None and args.trials < 1:
        raise UserError("--trials must be >= 1")
    if args.timeout is not None and not args.timeout > 0:
        raise UserError("--timeout must be > 0 seconds")
    heartbeat = Heartbeat(interval=args.heartbeat, grace_period=args.grace_period, max_retry=args.max_retry)
    if heartbeat.interval < 1 or heartbeat.grace_period <= heartbeat.interval or heartbeat.max_retry < 0:
        raise UserError("need --heartbeat >= 1, --grace-period > --heartbeat and --max-retry >= 0")
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be >= 1")
    storage = open_storage(args.storage, heartbeat=heartbeat)
    study, spec = open_study(storage, args.name)
    artifacts = open_artifacts(args.storage, args.artifacts, create=False)
    tty = sys.stderr.isatty()
    objective = make_objective(
        spec,
        study_name=args.name,
        storage=storage,
        artifacts=artifacts,
        device=args.device,
        work_dir=args.work_dir,
        progress=tty,
    )
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    objective.prepare()  # data, device, encoder: a UserError stops here, before any trial or directory exists
    if artifacts is None:
        objective.artifacts = open_artifacts(args.storage, args.artifacts, create=True)
    callbacks: list = []
    if spec.sampler.get("name") == "grid":
        from objectives.space import grid_exhausted

        if grid_exhausted(study, spec.space):
            print(f"study {args.name}: every grid point has been run; nothing to do", file=sys.stderr)
            return 0

        def stop_when_grid_started(study, trial) -> None:  # another worker may hold the last points
            if grid_exhausted(study, spec.space):
                study.stop()

        callbacks.append(stop_when_grid_started)
    progress = _TrialProgress(args.trials, tty)
    if tty:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the bar prints one line per trial instead

    def on_sigterm(signum, frame):
        """First SIGTERM: the trial stops at its next epoch boundary (FAIL "interrupted"), no new trial starts.
        A second one interrupts at once, like Ctrl-C."""
        if objective.stop_requested:
            raise KeyboardInterrupt(f"signal {signum}")
        objective.request_stop()

    def stop_when_asked(study, trial) -> None:
        if objective.stop_requested:
            study.stop()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        study.optimize(
            objective, n_trials=args.trials, timeout=args.timeout, callbacks=[progress, stop_when_asked, *callbacks]
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
    counts = {s: progress.states.count(s) for s in sorted(set(progress.states))}
    summary = ", ".join(f"{n} {s.lower()}" for s, n in counts.items()) or "no trials"
    try:
        best = f"; best value {study.best_value:.2f} (trial {study.best_trial.number})"
    except ValueError:
        best = ""
    print(f"study {args.name}: this worker ran {summary}{best}", file=sys.stderr)
    if objective.interrupted or objective.stop_requested:
        print("interrupted", file=sys.stderr)
        return 130
    ran = [s for s in progress.states if s != "SKIPPED"]
    return 1 if ran and "COMPLETE" not in ran and "PRUNED" not in ran else 0


# ---------------------------------------------------------------------------------------------------------
# list, show, delete (no torch, no Optuna samplers: straight from the storage API)


def _finite(x: Any) -> Any:
    """JSON-safe: non-finite floats become None (JSON has no NaN)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _study_id(storage, name: str) -> int:
    from storage import study_names

    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        known = study_names(storage)
        hint = f"; studies: {', '.join(known[:20])}" if known else "; the store has no studies"
        raise UserError(f"no study named {name!r}{hint}") from None


def _decoded(attrs: dict[str, Any]) -> dict[str, Any]:
    """The study attrs with JSON strings decoded (tolerant: studies not made by study.py show raw attrs)."""
    out: dict[str, Any] = {}
    for key in ("config", "space", "sampler", "pruner"):
        try:
            out[key] = json.loads(attrs[key])
        except (KeyError, TypeError, ValueError):
            out[key] = None
    if isinstance(out["space"], dict):  # {name: distribution_to_json string} -> {name: {"name", "attributes"}}
        try:
            out["space"] = {k: json.loads(v) for k, v in out["space"].items()}
        except (TypeError, ValueError):
            pass
    return out


def _best(trials) -> Any:
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    return max(complete, key=lambda t: t.value) if complete else None


def cmd_list(args: argparse.Namespace) -> int:
    from storage import open_storage

    storage = open_storage(args.storage)
    rows = []
    for s in storage.get_all_studies():
        trials = storage.get_all_trials(s._study_id, deepcopy=False)
        states = [t.state.name for t in trials]
        best = _best(trials)
        rows.append(
            {
                "name": s.study_name,
                "objective": s.user_attrs.get("objective", ""),
                "preset": s.user_attrs.get("preset", ""),
                "role": s.user_attrs.get("role", ""),
                "trials": len(trials),
                "states": {k: states.count(k) for k in sorted(set(states))},
                "best_value": None if best is None else best.value,
                "best_trial": None if best is None else best.number,
            }
        )
    if args.json:
        print(json.dumps(_finite(rows), indent=2))
        return 0
    if not rows:
        print("no studies", file=sys.stderr)
        return 0
    width = max(4, *(len(r["name"]) for r in rows))
    print(f"{'name':<{width}}  {'objective':<12}  {'preset':<7}  {'trials':>6}  {'complete':>8}  {'best':>7}  role")
    for r in rows:
        best = "" if r["best_value"] is None else f"{r['best_value']:.2f}"
        print(
            f"{r['name']:<{width}}  {r['objective']:<12}  {r['preset']:<7}  {r['trials']:>6}  "
            f"{r['states'].get('COMPLETE', 0):>8}  {best:>7}  {r['role']}"
        )
    return 0


def _show_data(storage, name: str) -> dict[str, Any]:
    from storage import schema

    study_id = _study_id(storage, name)
    attrs = storage.get_study_user_attrs(study_id)
    trials = storage.get_all_trials(study_id, deepcopy=False)
    best = _best(trials)
    states = [t.state.name for t in trials]
    return {
        "name": name,
        "direction": storage.get_study_directions(study_id)[0].name.lower(),
        "objective": attrs.get(schema.OBJECTIVE),
        "preset": attrs.get(schema.PRESET),
        "role": attrs.get(schema.ROLE),
        "comparison": attrs.get(schema.COMPARISON),
        "encoder": attrs.get(schema.ENCODER),
        "schema": attrs.get(schema.SCHEMA),
        **_decoded(attrs),
        "user_attrs": attrs,
        "n_trials": len(trials),
        "states": {k: states.count(k) for k in sorted(set(states))},
        "best_trial": None
        if best is None
        else {"number": best.number, "value": best.value, "params": dict(best.params)},
        "trials": [schema.trial_row(t) for t in trials],
    }


def _space_text(attrs: dict[str, Any]) -> str:
    from storage import schema

    try:
        space = schema.space_from_json(attrs[schema.SPACE])
    except (KeyError, TypeError, ValueError):
        return "(unknown)"
    if not space:
        return "(none)"
    parts = []
    for key, dist in space.items():
        kind = type(dist).__name__.replace("Distribution", "").lower()
        if hasattr(dist, "choices"):
            parts.append(f"{key} choice {list(dist.choices)}")
        else:
            parts.append(f"{key} {kind} [{dist.low:g}, {dist.high:g}]{' log' if dist.log else ''}")
    return "; ".join(parts)


def _print_show(data: dict[str, Any]) -> None:
    from simclr.config import defaults

    print(
        f"study {data['name']}: objective {data['objective']}, preset {data['preset'] or '-'}, "
        f"{data['direction']} val top-1" + (f", role {data['role']}" if data["role"] else "")
    )
    if data["sampler"]:
        pruner = dict(data["pruner"] or {})
        print(
            f"sampler {data['sampler'].get('name')} (seed {data['sampler'].get('seed')}); pruner "
            f"{pruner.pop('name', '-')} {' '.join(f'{k}={v}' for k, v in pruner.items())}"
        )
    print(f"space: {_space_text(data['user_attrs'])}")
    config = data["config"] or {}
    try:
        base = defaults(data["objective"])
    except UserError:
        base = {}
    changed = {k: v for k, v in config.items() if base.get(k) != v}
    print("config (differs from the defaults): " + (" ".join(f"{k}={v}" for k, v in changed.items()) or "-"))
    states = ", ".join(f"{n} {s.lower()}" for s, n in data["states"].items()) or "none"
    best = data["best_trial"]
    print(f"trials: {data['n_trials']} ({states})" + (f"; best #{best['number']} {best['value']:.2f}" if best else ""))
    if not data["trials"]:
        return
    print(f"{'#':>4}  {'state':<8}  {'value':>7}  {'test':>7}  {'steps':>6}  {'seconds':>8}  params / error")
    for t in data["trials"]:
        ua = t["user_attrs"]
        # a pruned trial's Optuna value is its last intermediate value (e.g. kNN), not a probe accuracy: hidden
        value = "" if t["value"] is None or t["state"] != "COMPLETE" else f"{t['value']:.2f}"
        test = ua.get("test_top1")
        params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        extra = f"  [{ua['error']}]" if ua.get("error") else ""
        print(
            f"{t['number']:>4}  {t['state']:<8}  {value:>7}  {'' if test is None else f'{test:.2f}':>7}  "
            f"{ua.get('steps', ''):>6}  {ua.get('seconds', ''):>8}  {params}{extra}"
        )


def cmd_show(args: argparse.Namespace) -> int:
    from storage import open_storage

    data = _show_data(open_storage(args.storage), args.name)
    if args.json:
        print(json.dumps(_finite(data), indent=2))
    else:
        _print_show(data)
    return 0


def _artifact_ids(storage, study_id: int) -> set[str]:
    """Every artifact a study's trials (and the study) point at: listed ones and unlisted resume checkpoints."""
    ids = {k.split(":", 1)[1] for k in storage.get_study_system_attrs(study_id) if k.startswith("artifacts:")}
    for t in storage.get_all_trials(study_id, deepcopy=False):
        ids.update(k.split(":", 1)[1] for k in t.system_attrs if k.startswith("artifacts:"))
        checkpoint = t.user_attrs.get("checkpoint")
        if isinstance(checkpoint, str) and checkpoint:
            ids.add(checkpoint)
    return ids


def cmd_delete(args: argparse.Namespace) -> int:
    from storage import open_artifacts, open_storage
    from storage.store import remove_quietly

    storage = open_storage(args.storage)
    study_id = _study_id(storage, args.name)
    ids = _artifact_ids(storage, study_id)
    storage.delete_study(study_id)
    artifacts = open_artifacts(args.storage, args.artifacts, create=False)
    if artifacts is not None:
        for artifact_id in ids:
            remove_quietly(artifacts, artifact_id)
    print(f"deleted study {args.name} ({len(ids) if artifacts is not None else 0} artifacts removed)", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------------------
# dashboard, report


def cmd_dashboard(args: argparse.Namespace) -> int:
    import optuna_dashboard

    from storage import display_url, open_artifacts, open_storage, resolve_url

    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: must be in 1-65535")
    storage = open_storage(args.storage)  # refuses a store that does not exist (never creates an empty one)
    artifacts = open_artifacts(args.storage, args.artifacts, create=False)
    print(
        f"optuna-dashboard for {display_url(resolve_url(args.storage))} on http://{args.host}:{args.port}/ "
        "(Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port, artifact_store=artifacts)
    except OSError as e:
        raise UserError(f"dashboard cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Provisional wiring of reports/ (its owner and the lead may change it): HTML file, or --json on stdout."""
    import reports
    from storage import display_url, open_storage, resolve_url

    if not args.json:
        _check_out(args.out)
    storage = open_storage(args.storage)
    report = reports.build_report(storage, args.names or None, url=display_url(resolve_url(args.storage)))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        try:
            path = report.write_html(args.out)
        except OSError as e:  # read-only directory, full disk
            raise UserError(f"cannot write {args.out}: {e.strerror or e}") from None
        print(path, file=sys.stderr)
    return 0


def _check_out(out: str) -> None:
    """An output file name whose directory exists (checked before the store is read)."""
    path = Path(out)
    if not out.strip() or path.name in ("", "..") or path.is_dir():
        raise UserError(f"--out {out!r}: give a file name, e.g. --out report.html")
    if not path.parent.is_dir():
        raise UserError(f"--out {out}: directory {path.parent} does not exist")


# ---------------------------------------------------------------------------------------------------------
# compare: the whole comparison (objectives/compare.py), each study run by cmd_optimize, then the report


def cmd_compare(args: argparse.Namespace) -> int:
    import logging

    import optuna

    import reports
    from objectives import compare
    from reports.dashboard import save_to_dashboard
    from storage import display_url, open_storage, resolve_url, store_exists

    _check_name(args.prefix)
    if args.threads is not None and args.threads < 1:
        raise UserError("--threads must be >= 1")
    out = Path(args.out)
    if not out.parent.is_dir():  # found out now, not after the training
        raise UserError(f"--out {args.out}: directory {out.parent} does not exist")
    steps = compare.plan(args.prefix, preset=args.preset, sets=args.set, trials=args.trials)
    url = resolve_url(args.storage)
    known = open_storage(url) if store_exists(url) else None
    existing = compare.check_existing(known, steps) if known is not None else []

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    say(f"comparison {args.prefix!r}, preset {args.preset}, in {display_url(url)}: {len(steps)} studies")
    if existing:
        say(f"resuming: {len(existing)} of these studies exist; finished trials are kept, only what is left runs")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    if compare.work_left(known, steps):
        sizes, rt = compare.preflight(steps, args.device)  # data and device first: a UserError creates nothing
        estimate = compare.estimate_seconds(steps, sizes, compare.speed_test(rt))
        say(f"budget ({rt.describe()}, {args.preset} preset):")
        for line in compare.budget_lines(steps, sizes, estimate):
            say(line)

    def optimize(name: str, trials: int) -> int:
        argv = ["optimize", "--trials", str(trials), "--device", args.device]
        argv += ["--threads", str(args.threads)] if args.threads is not None else []
        argv += ["--storage", url] + (["--artifacts", args.artifacts] if args.artifacts else [])
        if not sys.stderr.isatty():
            optuna.logging.set_verbosity(optuna.logging.INFO)  # a plain line per finished trial
        return cmd_optimize(parser().parse_args([*argv, "--", name]))

    epoch_lines = logging.getLogger("objectives")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("  %(message)s"))
    if not sys.stderr.isatty():  # on a terminal the epoch bars show progress
        epoch_lines.addHandler(handler)
        epoch_lines.setLevel(logging.INFO)
    verbosity = optuna.logging.get_verbosity()
    try:
        storage = open_storage(url, create=True)
        outcome = compare.run_steps(steps, storage, optimize, say)
    finally:
        epoch_lines.removeHandler(handler)
        epoch_lines.setLevel(logging.NOTSET)
        optuna.logging.set_verbosity(verbosity)
    if outcome.interrupted:
        say("interrupted: run the same command again to continue where it stopped")
        return 130
    if not outcome.ran:
        first = next(iter(outcome.failed.items()))
        raise UserError(f"nothing could run ({first[0]}: {first[1]})")
    report = reports.build_report(storage, [s.name for s in steps], url=display_url(url))
    try:
        path = report.write_html(out).resolve()
    except OSError as e:
        raise UserError(f"cannot write {out} ({e.strerror or e}); the results are stored: study.py report") from None
    save_to_dashboard(storage, report)
    print(compare.format_table(report.comparison))
    print(f"report: {path}")
    return 0


# ---------------------------------------------------------------------------------------------------------
# the table of subcommands


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        metavar="URL",
        help="sqlite:///PATH, postgresql+psycopg://USER@HOST/DB or journal:PATH "
        "(default: $STUDY_STORAGE, else sqlite:///studies.db)",
    )
    p.add_argument(
        "--artifacts",
        metavar="DIR",
        help="artifact directory (default: $STUDY_ARTIFACTS, else <store>_artifacts beside the file)",
    )


def _args_create(p: argparse.ArgumentParser) -> None:
    from objectives.presets import PRESETS
    from objectives.space import SAMPLERS
    from storage.schema import OBJECTIVES

    p.add_argument("--objective", required=True, choices=OBJECTIVES)
    p.add_argument("--name", help="study name (default: OBJECTIVE-DATE-TIME)")
    p.add_argument("--preset", choices=list(PRESETS), help="fills config: smoke (minutes, CPU), default, paper")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="fix a config key")
    p.add_argument(
        "--param",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME=SPEC",
        help="search a key: float:LOW:HIGH[:log], int:LOW:HIGH[:STEP|log], choice:A,B,C",
    )
    p.add_argument("--sampler", default="tpe", choices=SAMPLERS)
    p.add_argument(
        "--pruner",
        default="median",
        metavar="PRUNER",
        help="median[:N_STARTUP[:N_WARMUP]], hyperband[:MIN_RESOURCE[:REDUCTION]] or none (default median)",
    )
    p.add_argument("--seed", type=int, help="sampler seed (default: the config's seed)")
    p.add_argument("--role", default="", help="the regime this study plays in a comparison (for reports)")
    p.add_argument("--comparison", default="", help="the comparison this study belongs to (for reports)")


def _args_optimize(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")
    p.add_argument("--trials", type=int, default=10, help="trials this worker runs (default 10)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:K or mps (one worker per GPU)")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: all cores; use cores/workers when several CPU workers share a machine)",
    )
    p.add_argument("--work-dir", help="where trials keep temporary checkpoints (default: the system temp dir)")
    p.add_argument("--heartbeat", type=int, default=60, help="seconds between heartbeats of a running trial")
    p.add_argument(
        "--grace-period", type=int, default=120, help="a trial without heartbeat this long is failed and retried"
    )
    p.add_argument("--max-retry", type=int, default=3, help="retries of a trial whose worker died")


def _args_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")


def _args_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="machine-readable: study attrs and every trial")


def _args_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def _args_dashboard(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)


def _args_compare(p: argparse.ArgumentParser) -> None:
    from objectives.presets import PRESETS

    p.add_argument("--preset", default="smoke", choices=list(PRESETS), help="budgets and config (default smoke)")
    p.add_argument("--prefix", default="compare", help="study names PREFIX-scale, PREFIX-hparams, ...")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="fix a config key in every study whose objective has it (e.g. data_dir=DIR)",
    )
    p.add_argument("--trials", type=int, help="trials of the hparams, probe and scratch studies (default: preset's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:K or mps")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")
    p.add_argument("--out", default="report.html", help="the HTML report (default report.html)")


def _args_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--out", default="report.html")
    p.add_argument("--json", action="store_true")


COMMANDS = {
    "create": (_args_create, cmd_create, "create a study (before starting workers)"),
    "optimize": (_args_optimize, cmd_optimize, "run trials of a study (start one per GPU/machine)"),
    "list": (_args_list, cmd_list, "list the studies in the store"),
    "show": (_args_show, cmd_show, "a study's settings and trials"),
    "delete": (_args_name, cmd_delete, "delete a study and its artifacts"),
    "dashboard": (_args_dashboard, cmd_dashboard, "browse the store with optuna-dashboard"),
    "report": (_args_report, cmd_report, "one HTML report over the store"),
    "compare": (_args_compare, cmd_compare, "the whole comparison (resumable), then the report"),
}


def parser() -> argparse.ArgumentParser:
    main_parser = Parser(prog="study.py", description=__doc__.split("\n\n")[0])
    sub = main_parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, required=True)
    for name, (add_args, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        _common(p)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else 2
    try:
        return COMMANDS[args.command][1](args)
    except UserError as e:
        message = str(e).strip().split("\n")[0] or "bad input"
        print(f"error: {one_line(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
