#!/usr/bin/env python3
"""The command line: Optuna studies over SimCLR, the linear protocol and supervised training, in one store.

    python study.py create --objective OBJECTIVE [--name NAME] [--preset P] [--set KEY=VALUE ...] [--param K=SPEC]
    python study.py optimize NAME [--trials N] [--timeout SECONDS] [--device auto|cpu|cuda|cuda:K]
    python study.py list | show NAME [--json|--csv|--best] | delete NAME [--force] | keys [OBJECTIVE] | dashboard
    python study.py enqueue NAME --set KEY=VALUE ... | export NAME [--trial N] --out F | report [NAME ...] [--out F]
    python study.py compare [--preset smoke|default|paper] [--time-budget 15m] [--set KEY=VALUE ...] [--out FILE]

Every command takes --storage URL (else $STUDY_STORAGE, else sqlite:///studies.db) and --artifacts DIR, before or
after its name. Exit codes: 0 done; 1 `optimize` ran but no trial completed; 2 bad input (one line on stderr, the
store unchanged); 130 interrupted. This file only parses and dispatches to objectives/, storage/ and reports/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

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
    timeout, work_dir = getattr(args, "timeout", None), getattr(args, "work_dir", None)
    return RunOptions(args.trials, timeout, args.device, args.threads, work_dir, args.keep_checkpoints, progress)


def cmd_create(args: argparse.Namespace) -> int:
    from objectives.create import new_study
    from storage import resolve_url

    print(new_study(resolve_url(args.storage), args.name, args.objective, data_dir=args.data_dir, preset=args.preset,
                    artifacts_dir=args.artifacts, sets=args.set, params=args.param, sampler=args.sampler,
                    pruner=args.pruner, seed=args.seed, role=args.role, comparison=args.comparison))  # fmt: skip
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from objectives.run import progress_lines, run_study
    from storage import Heartbeat, open_storage, resolve_url

    heartbeat = Heartbeat(interval=args.heartbeat, grace_period=args.grace_period, max_retry=args.max_retry)
    options, url = run_options(args), resolve_url(args.storage)
    options.check()
    with progress_lines(options.progress == "lines"):
        summary = run_study(open_storage(url, heartbeat=heartbeat), args.name, options, url=url,
                            artifacts_dir=args.artifacts, say=say)  # fmt: skip
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
    from objectives.export import enqueue
    from storage import open_storage

    params = enqueue(open_storage(args.storage), args.name, args.set)
    say(f"queued in {args.name}: {' '.join(f'{k}={v}' for k, v in params.items())} (the next optimize runs it)")
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
    report = reports.build_report(open_storage(url, read_only=True), args.names or None, url=display_url(url))
    print(json.dumps(report.to_json(), indent=2)) if args.json else say(str(reports.write(report, args.out)))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import reports
    from objectives.compare import run_comparison
    from objectives.run import progress_lines
    from reports.dashboard import save_to_dashboard
    from reports.text import comparison_table
    from storage import display_url, resolve_url

    reports.check_out(args.out)
    url, options = resolve_url(args.storage), run_options(args)
    with progress_lines(options.progress == "lines"):
        storage, plans, outcome = run_comparison(args.prefix, preset=args.preset, sets=args.set, trials=args.trials,
                                                 data_dir=args.data_dir, url=url, artifacts_dir=args.artifacts,
                                                 options=options, say=say, time_budget=args.time_budget)  # fmt: skip
    if outcome.interrupted:
        say("interrupted: run the same command again to continue where it stopped")
        return 130
    if not outcome.ran:
        raise UserError("nothing could run ({}: {})".format(*next(iter(outcome.failed.items()))))
    report = reports.build_report(storage, [p.name for p in plans], url=display_url(url))
    path = reports.write(report, args.out)
    save_to_dashboard(storage, report)
    print(comparison_table(report.comparison))
    print(f"report: {path}")
    return 0


# The table of subcommands: name -> (handler, help, arguments as (flags, argparse keywords))


def arg(*flags: str, **kw) -> tuple:
    return flags, kw


def sets(help_text: str) -> tuple:
    return arg("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=help_text)


def commands() -> dict[str, tuple]:
    from objectives.presets import PRESETS
    from objectives.space import SAMPLERS, SPEC_HELP
    from storage.schema import OBJECTIVES

    name, flag = arg("name", metavar="NAME"), {"action": "store_true"}
    data = arg("--data-dir", metavar="DIR", help="where the CIFAR archives are or are downloaded to (default: "
               "$STUDY_DATA, else ./data; a probe of best:STUDY takes that study's data settings)")  # fmt: skip
    run = [arg("--device", default="auto", help="auto, cpu, cuda, cuda:K or mps (one worker per GPU)"),
           arg("--threads", type=int, help="torch CPU threads (default: all cores; cores/workers for several)"),
           arg("--keep-checkpoints", type=int, default=3, metavar="K", help="checkpoints of the best K trials of a "
               "study are kept (and those that may resume or that other studies probe); default 3"),
           arg("--progress", choices=("bar", "lines", "none"), help="bars (default on a terminal), a line per epoch "
               "and trial (default otherwise: logs, several workers on one terminal), or none")]  # fmt: skip
    return {
        "create": (cmd_create, "create a study (before starting workers)", [
            arg("--objective", required=True, choices=OBJECTIVES), arg("--name", help="default: OBJECTIVE-DATE-TIME"),
            arg("--preset", choices=list(PRESETS), help="fills config: smoke (minutes, CPU), default, paper"), data,
            sets("fix a config key (`study.py keys OBJECTIVE` lists them)"),
            arg("--param", action="extend", nargs="+", default=[], metavar="NAME=SPEC", help=SPEC_HELP),
            arg("--sampler", default="tpe", choices=SAMPLERS), arg("--pruner", default="median",
                help="median[:N_STARTUP[:N_WARMUP]], hyperband[:MIN_RESOURCE[:REDUCTION]] or none (default median)"),
            arg("--seed", type=int, help="sampler seed (default: the config's seed)"),
            arg("--role", default="", help="the regime this study plays in a comparison (for reports)"),
            arg("--comparison", default="", help="the comparison this study belongs to (for reports)")]),
        "optimize": (cmd_optimize, "run trials of a study (start one per GPU/machine)", [
            name, arg("--trials", type=int, default=10, help="trials this worker runs (default 10)"),
            arg("--timeout", type=float, help="stop starting trials after this many seconds"), *run,
            arg("--work-dir", help="where trials keep temporary checkpoints (default: the system temp dir)"),
            arg("--heartbeat", type=int, default=60, help="seconds between heartbeats of a running trial"),
            arg("--grace-period", type=int, default=120, help="a trial silent this long is failed and retried"),
            arg("--max-retry", type=int, default=3, help="retries of a trial whose worker died")]),
        "list": (cmd_list, "list the studies in the store", [arg("--json", **flag)]),
        "show": (cmd_show, "a study's settings and trials (--json, --csv and --best exclude each other)", [
            name, arg("--json", **flag, help="study attrs and every trial, as JSON"),
            arg("--csv", **flag, help="the trials table as CSV (pandas.read_csv reads it)"),
            arg("--best", **flag, help="the best trial's whole config as --set options")]),
        "delete": (cmd_delete, "delete a study and its artifacts", [name, arg("--force", **flag)]),
        "keys": (cmd_keys, "every config key: type, default, range, search range, help",
                 [arg("objective", nargs="?", choices=OBJECTIVES, help="only this objective's keys")]),
        "enqueue": (cmd_enqueue, "queue a trial with given parameter values (the next optimize runs it)",
                    [name, sets("a searched parameter's value")]),
        "export": (cmd_export, "write a trial's encoder as a torchvision resnet18 state_dict", [
            name, arg("--trial", type=int, help="default: the best"),
            arg("--out", required=True, help="encoder.pt (+ encoder.json: config and scores)")]),
        "dashboard": (cmd_dashboard, "browse the store with optuna-dashboard",
                      [arg("--host", default="127.0.0.1"), arg("--port", type=int, default=8080)]),
        "report": (cmd_report, "one HTML report over the store", [
            arg("names", nargs="*", metavar="NAME"), arg("--out", default="report.html"), arg("--json", **flag)]),
        "compare": (cmd_compare, "the whole comparison (resumable), then the report", [
            arg("--preset", default="smoke", choices=list(PRESETS), help="budgets and config (default smoke)"),
            arg("--prefix", default="compare", help="study names PREFIX-scale, PREFIX-hparams, ..."), data,
            sets("fix a config key in every study whose objective has it"),
            arg("--trials", type=int, help="trials of the hparams, probe and scratch studies (default: preset's)"),
            arg("--time-budget", metavar="DURATION", help="size the plan to fit, e.g. 15m, 2h, none (smoke: 15m)"),
            *run, arg("--out", default="report.html", help="the HTML report (default report.html)")]),
    }  # fmt: skip


def common(default=None) -> list[tuple]:
    """--storage and --artifacts, before or after the command's name (the subcommand's copies default to
    SUPPRESS, so a value given before the name is kept)."""
    return [arg("--storage", metavar="URL", default=default, help="sqlite:///PATH, postgresql+psycopg://USER@HOST/DB"
                " or journal:PATH (default: $STUDY_STORAGE, else sqlite:///studies.db)"),
            arg("--artifacts", metavar="DIR", default=default, help="checkpoint directory (default: "
                "$STUDY_ARTIFACTS, else <store>_artifacts beside the store file)")]  # fmt: skip


def parser() -> argparse.ArgumentParser:
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
            code = commands()[args.command][0](args)
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
