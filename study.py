#!/usr/bin/env python3
"""The command line: Optuna studies over SimCLR, the linear protocol and supervised training, in one store.

    python study.py create --objective OBJECTIVE [--name NAME] [--preset P] [--set KEY=VALUE ...] [--param K=SPEC]
    python study.py optimize NAME [--trials N] [--timeout SECONDS] [--device auto|cpu|cuda|cuda:K]
    python study.py list | show NAME [--json|--csv|--best] | delete NAME [--force] | keys [OBJECTIVE] | dashboard
    python study.py enqueue NAME --set KEY=VALUE ... | dequeue NAME N | export NAME [--trial N] --out F
    python study.py report [NAME ...] [--out F] [--json] | predict NAME [--target ACC] [--json]
    python study.py compare [--preset smoke|default|paper] [--time-budget 15m] [--workers N] [--set KEY=VALUE ...]

Every command takes --storage URL (else $STUDY_STORAGE, else sqlite:///studies.db) and --artifacts DIR, before or
after its name. Exit codes: 0 done; 1 `optimize` ran but no trial completed; 2 bad input (one line on stderr, the
store unchanged); 130 interrupted; 141 the reader of stdout went away (`show NAME | head -1`: quietly, as other
tools do). This file only parses (the table of subcommands and their arguments is cli_args.py) and dispatches to
objectives/, storage/ and reports/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from errors import UserError, first_line


class Parser(argparse.ArgumentParser):  # errors: one line ("error: ...") and exit code 2, like all bad input
    def error(self, message: str):
        sys.stderr.write(f"error: {self.prog}: {first_line(message, 1000)}\n")
        raise SystemExit(2)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_options(args: argparse.Namespace):
    from objectives.run import RunOptions

    progress = args.progress or ("bar" if sys.stderr.isatty() else "lines")
    timeout, work_dir, total = getattr(args, "timeout", None), getattr(args, "work_dir", None), None
    trials = args.trials
    if args.command == "optimize":  # compare's --trials sizes its studies; None there: the preset's
        total = args.total_trials
        trials = trials if trials is not None else None if total is not None else 10
    return RunOptions(
        trials, timeout, args.device, args.threads, work_dir, args.keep_checkpoints, progress, args.log, total
    )


def cmd_create(args: argparse.Namespace) -> int:
    from comparison.regimes import ROLES
    from objectives.create import new_study
    from storage import resolve_url

    if args.role and args.role not in ROLES:  # the comparison's vocabulary: what the report reads a role as
        raise UserError(f"unknown role {args.role!r}; choose from {', '.join(ROLES)}")
    print(
        new_study(
            resolve_url(args.storage),
            args.name,
            args.objective,
            data_dir=args.data_dir,
            preset=args.preset,
            artifacts_dir=args.artifacts,
            sets=args.set,
            params=args.param,
            sampler=args.sampler,
            pruner=args.pruner,
            seed=args.seed,
            role=args.role,
            comparison=args.comparison,
        )
    )
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from objectives.run import progress_lines, run_study
    from storage import Heartbeat, open_storage, resolve_url

    heartbeat = Heartbeat(interval=args.heartbeat, grace_period=args.grace_period, max_retry=args.max_retry)
    options, url = run_options(args), resolve_url(args.storage)
    options.check()
    with progress_lines(options.progress == "lines"):
        summary = run_study(
            open_storage(url, heartbeat=heartbeat), args.name, options, url=url, artifacts_dir=args.artifacts, say=say
        )
    say(summary.line() + ("; interrupted" if summary.interrupted else ""))
    return summary.exit_code


def cmd_list(args: argparse.Namespace) -> int:
    from reports import json_safe, study_list
    from reports.text import list_table
    from storage import resolve_url

    rows = study_list(resolve_url(args.storage))  # a URL: summarised without building an Optuna storage (fast)
    if args.json or rows:
        print(json.dumps(json_safe(rows), indent=2) if args.json else list_table(rows))
    else:
        say("no studies")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from reports import json_safe, study_details
    from reports.text import best_sets, show_text, trials_csv
    from simclr.config import SECTIONS, defaults
    from storage import open_storage

    if args.json + args.csv + args.best > 1:
        raise UserError("show: give one of --json, --csv, --best")
    data = study_details(open_storage(args.storage, read_only=True), args.name)
    if args.json:
        print(json.dumps(json_safe(data), indent=2))
    elif args.csv:
        print(trials_csv(data["trials"]), end="")
    elif args.best:
        print(best_sets(data))
    else:
        print(show_text(data, defaults(data["objective"]) if data["objective"] in SECTIONS else {}))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from objectives.create import delete
    from storage import open_artifacts, open_storage

    artifacts = open_artifacts(args.storage, args.artifacts, create=False)
    removed = delete(open_storage(args.storage), args.name, artifacts, force=args.force)
    say(f"deleted study {args.name} ({removed} artifacts removed)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from simclr.keys import keys_text

    print(keys_text(args.objective))
    return 0


def cmd_enqueue(args: argparse.Namespace) -> int:
    from objectives.enqueue import enqueue
    from storage import open_storage

    number, params = enqueue(open_storage(args.storage), args.name, args.set)
    shown = " ".join(f"{k}={v}" for k, v in params.items())
    say(f"queued trial {number} in {args.name}: {shown} (the next optimize runs it; `dequeue {args.name} {number}`)")
    return 0


def cmd_dequeue(args: argparse.Namespace) -> int:
    from objectives.enqueue import dequeue
    from storage import open_storage

    params = dequeue(open_storage(args.storage), args.name, args.number)
    say(f"dequeued trial {args.number} of {args.name}: {' '.join(f'{k}={v}' for k, v in params.items())}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import reports
    from objectives.export import export_encoder
    from storage import open_artifacts, open_storage

    reports.check_out(args.out)
    storage, artifacts = open_storage(args.storage, read_only=True), open_artifacts(args.storage, args.artifacts)
    info = export_encoder(storage, artifacts, args.name, args.trial, args.out)
    say(f"trial {info['trial']} of {args.name} -> {args.out} (+ {info['json']})")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from reports.dashboard import serve

    serve(args.storage, args.artifacts, host=args.host, port=args.port, say=say)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import reports
    from storage import display_url, open_storage, resolve_url

    url = resolve_url(args.storage)
    if not args.json:
        reports.check_out(args.out)  # before anything is read
    storage = open_storage(url, read_only=True)
    report = reports.build_report(storage, args.names or None, url=display_url(url), comparison=args.comparison)
    print(json.dumps(report.to_json(), indent=2)) if args.json else say(str(reports.write(report, args.out)))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from reports import json_safe
    from reports.prediction import predict
    from storage import open_storage, resolve_url

    info = predict(open_storage(resolve_url(args.storage), read_only=True), args.name, target=args.target)
    print(json.dumps(json_safe(info), indent=2) if args.json else "\n".join(info["lines"]))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import reports
    from comparison.plan import Request
    from comparison.run import run_comparison
    from objectives.run import progress_lines
    from reports.dashboard import save_to_dashboard
    from reports.text import comparison_table, labels_table
    from storage import Heartbeat, display_url, resolve_url

    reports.check_out(args.out)
    url, options = resolve_url(args.storage), run_options(args)
    heartbeat = Heartbeat(interval=args.heartbeat, grace_period=args.grace_period, max_retry=args.max_retry)
    with progress_lines(options.progress == "lines"):
        request = Request.of(args.prefix, preset=args.preset, sets=args.set, trials=args.trials, data_dir=args.data_dir)
        run = {"time_budget": args.time_budget, "workers": args.workers, "heartbeat": heartbeat}
        storage, plans, outcome = run_comparison(
            request, url=url, artifacts_dir=args.artifacts, options=options, say=say, **run
        )
    if outcome.interrupted:
        say("interrupted: run the same command again to continue where it stopped")
        return 130
    if not outcome.ran:
        raise UserError("nothing could run ({}: {})".format(*next(iter(outcome.failed.items()))))
    if not outcome.writes_report:
        say(f"done; the report is written by the worker that finished the last trial ({outcome.last_trial})")
        return 0
    report = reports.build_report(storage, [p.name for p in plans], url=display_url(url))
    path = reports.write(report, args.out)
    save_to_dashboard(storage, report)
    print(comparison_table(report.comparison))
    if report.labels:
        print(labels_table(report.labels))
    print(f"report: {path}")
    return 0


def commands() -> dict[str, tuple]:
    """name -> (handler, help, arguments as (flags, argparse keywords)), in the order of cli_args.COMMANDS; the
    handler of command NAME is this module's cmd_NAME."""
    from cli_args import COMMANDS

    return {name: (handler(name), help_text, arguments) for name, (help_text, arguments) in COMMANDS.items()}


def handler(name: str) -> Callable[[argparse.Namespace], int]:
    return globals()["cmd_" + name]


def parser() -> argparse.ArgumentParser:
    from cli_args import common

    main_parser = Parser(prog="study.py", description=__doc__.split("\n\n")[0])
    for flags, kw in common():
        main_parser.add_argument(*flags, **kw)
    sub = main_parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, required=True)
    for name, (_, help_text, arguments) in commands().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        for flags, kw in arguments + common(default=argparse.SUPPRESS):
            p.add_argument(*flags, **kw)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    from storage import store_errors

    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else 2
    try:
        with store_errors(args.storage):
            code = handler(args.command)(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except UserError as e:
        say(f"error: {first_line(e, 1000) or 'bad input'}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except BrokenPipeError:  # `show NAME | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


if __name__ == "__main__":
    sys.exit(main())
