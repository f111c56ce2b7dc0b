#!/usr/bin/env python3
"""The command line: Optuna studies over SimCLR, the linear protocol and supervised training, in one store.

    python study.py create --objective {simclr,linear_probe,supervised,finetune} [--name NAME]
            [--preset {smoke,default,paper}] [--set KEY=VALUE ...] [--param NAME=SPEC ...]
            [--sampler {tpe,random,grid,cmaes,gp}] [--pruner median|hyperband|none] [--seed N]
    python study.py optimize NAME [--trials N] [--timeout SECONDS] [--device auto|cpu|cuda|cuda:K]
    python study.py list | show NAME [--json] | delete NAME | keys [OBJECTIVE]
    python study.py dashboard [--host 127.0.0.1] [--port 8080]
    python study.py report [NAME ...] [--out report.html]
    python study.py compare [--preset smoke|default|paper] [--prefix NAME] [--set KEY=VALUE ...] [--trials N]
            [--device ...] [--threads N] [--out report.html]

Every command takes --storage URL (else $STUDY_STORAGE, else sqlite:///studies.db) and --artifacts DIR, before or
after the command's name. Exit codes: 0 done; 1 `optimize` ran but none of its trials completed; 2 bad input
(one line on stderr, the store unchanged); 130 interrupted. This file only parses and dispatches: the work is
in objectives/ (studies, the runner, compare), storage/ (the store) and reports/ (tables, the HTML report).
Only `optimize` and `compare` import torch, so the other commands answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from errors import UserError, first_line


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line ("error: ...") and exit code 2, like every other bad input."""

    def error(self, message: str):
        sys.stderr.write(f"error: {self.prog}: {first_line(message, 1000)}\n")
        raise SystemExit(2)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_options(args: argparse.Namespace):
    from objectives.run import RunOptions

    return RunOptions(
        trials=args.trials,
        timeout=getattr(args, "timeout", None),
        device=args.device,
        threads=args.threads,
        work_dir=getattr(args, "work_dir", None),
        progress=args.progress or ("bar" if sys.stderr.isatty() else "lines"),
    )


def cmd_create(args: argparse.Namespace) -> int:
    from objectives.create import new_study
    from storage import resolve_url

    name = new_study(
        resolve_url(args.storage),
        args.name,
        args.objective,
        data_dir=args.data_dir,
        preset=args.preset,
        sets=args.set,
        params=args.param,
        sampler=args.sampler,
        pruner=args.pruner,
        seed=args.seed,
        role=args.role,
        comparison=args.comparison,
    )
    print(name)
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from objectives.run import progress_lines, run_study
    from storage import Heartbeat, open_storage, resolve_url

    heartbeat = Heartbeat(interval=args.heartbeat, grace_period=args.grace_period, max_retry=args.max_retry)
    if heartbeat.interval < 1 or heartbeat.grace_period <= heartbeat.interval or heartbeat.max_retry < 0:
        raise UserError("need --heartbeat >= 1, --grace-period > --heartbeat and --max-retry >= 0")
    options = run_options(args)
    options.check()
    url = resolve_url(args.storage)
    storage = open_storage(url, heartbeat=heartbeat)
    with progress_lines(options.progress == "lines"):
        summary = run_study(storage, args.name, options, url=url, artifacts_dir=args.artifacts, say=say)
    say(summary.line())
    if summary.interrupted:
        say("interrupted")
    return summary.exit_code


def cmd_list(args: argparse.Namespace) -> int:
    from reports import json_safe, study_list
    from reports.text import list_table
    from storage import open_storage

    rows = study_list(open_storage(args.storage, read_only=True))
    if args.json:
        print(json.dumps(json_safe(rows), indent=2))
    elif rows:
        print(list_table(rows))
    else:
        say("no studies")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from reports import json_safe, study_details
    from reports.text import show_text
    from simclr.config import SECTIONS, defaults
    from storage import open_storage

    data = study_details(open_storage(args.storage, read_only=True), args.name)
    if args.json:
        print(json.dumps(json_safe(data), indent=2))
    else:
        objective = data.get("objective")
        print(show_text(data, defaults(objective) if objective in SECTIONS else {}))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from storage import delete_study, open_artifacts, open_storage

    storage = open_storage(args.storage)
    removed = delete_study(storage, args.name, open_artifacts(args.storage, args.artifacts, create=False))
    say(f"deleted study {args.name} ({removed} artifacts removed)")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from simclr.config import keys_text

    print(keys_text(args.objective))
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import optuna_dashboard

    from storage import display_url, open_artifacts, open_storage, resolve_url

    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: must be in 1-65535")
    storage = open_storage(args.storage)  # refuses a store that does not exist (never creates an empty one)
    artifacts = open_artifacts(args.storage, args.artifacts, create=False)
    say(
        f"optuna-dashboard for {display_url(resolve_url(args.storage))} on http://{args.host}:{args.port}/ (Ctrl-C stops)"
    )
    try:
        optuna_dashboard.run_server(storage, host=args.host, port=args.port, artifact_store=artifacts)
    except OSError as e:
        raise UserError(f"dashboard cannot listen on {args.host}:{args.port} ({e.strerror or e})") from None
    return 0


def write_report(storage, names: list[str] | None, url: str, out: str):
    """Build the report over `names` (all studies: None) and write it to `out`; the Report."""
    import reports
    from storage import display_url

    report = reports.build_report(storage, names, url=display_url(url))
    try:
        say(str(report.write_html(out).resolve()))
    except OSError as e:  # read-only directory, full disk
        raise UserError(f"cannot write {out}: {e.strerror or e} (the results are stored: study.py report)") from None
    return report


def cmd_report(args: argparse.Namespace) -> int:
    import reports
    from storage import display_url, open_storage, resolve_url

    url = resolve_url(args.storage)
    if args.json:
        report = reports.build_report(open_storage(url, read_only=True), args.names or None, url=display_url(url))
        print(json.dumps(report.to_json(), indent=2))
        return 0
    check_out(args.out)
    write_report(open_storage(url, read_only=True), args.names or None, url, args.out)
    return 0


def check_out(out: str) -> None:
    """An output file name whose directory exists (checked before anything is read or run)."""
    path = Path(out)
    if not out.strip() or path.name in ("", "..") or path.is_dir():
        raise UserError(f"--out {out!r}: give a file name, e.g. --out report.html")
    if not path.parent.is_dir():
        raise UserError(f"--out {out}: directory {path.parent} does not exist")


def cmd_compare(args: argparse.Namespace) -> int:
    from objectives.compare import run_comparison
    from objectives.run import progress_lines
    from reports.dashboard import save_to_dashboard
    from reports.text import comparison_table
    from storage import resolve_url

    check_out(args.out)
    url, options = resolve_url(args.storage), run_options(args)
    with progress_lines(options.progress == "lines"):
        storage, plans, outcome = run_comparison(
            args.prefix,
            preset=args.preset,
            sets=args.set,
            trials=args.trials,
            data_dir=args.data_dir,
            url=url,
            artifacts_dir=args.artifacts,
            options=options,
            say=say,
        )
    if outcome.interrupted:
        say("interrupted: run the same command again to continue where it stopped")
        return 130
    if not outcome.ran:
        name, reason = next(iter(outcome.failed.items()))
        raise UserError(f"nothing could run ({name}: {reason})")
    report = write_report(storage, [p.name for p in plans], url, args.out)
    save_to_dashboard(storage, report)
    print(comparison_table(report.comparison))
    return 0


# ---------------------------------------------------------------------------------------------------------
# The table of subcommands: (arguments, handler, help)


def common_args(p: argparse.ArgumentParser, default=None) -> None:
    """--storage and --artifacts, accepted before and after the command's name (the subcommand's copy defaults
    to SUPPRESS, so a value given before the name is not overwritten)."""
    p.add_argument(
        "--storage",
        metavar="URL",
        default=default,
        help="sqlite:///PATH, postgresql+psycopg://USER@HOST/DB "
        "or journal:PATH (default: $STUDY_STORAGE, else sqlite:///studies.db)",
    )
    p.add_argument(
        "--artifacts",
        metavar="DIR",
        default=default,
        help="artifact directory (default: $STUDY_ARTIFACTS, else <store>_artifacts beside the file)",
    )


def args_create(p: argparse.ArgumentParser) -> None:
    from objectives.presets import PRESETS
    from objectives.space import SAMPLERS, SPEC_HELP
    from storage.schema import OBJECTIVES

    p.add_argument("--objective", required=True, choices=OBJECTIVES)
    p.add_argument("--name", help="study name (default: OBJECTIVE-DATE-TIME)")
    args_data(p)
    p.add_argument("--preset", choices=list(PRESETS), help="fills config: smoke (minutes, CPU), default, paper")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="fix a config key (study.py keys OBJECTIVE lists them)",
    )
    p.add_argument(
        "--param", action="extend", nargs="+", default=[], metavar="NAME=SPEC", help=f"search a key: {SPEC_HELP}"
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


def args_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR", help="where the CIFAR archives are or are downloaded to (default: "
                   "$STUDY_DATA, else ./data; a probe of best:STUDY takes that study's)")


def args_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=("bar", "lines", "none"), help="bars (default on a terminal), a line per "
                   "epoch and per trial (default otherwise: logs, several workers on one terminal), or none")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:K or mps (one worker per GPU)")
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads for torch (default: all cores; use cores/workers when several CPU workers share a machine)",
    )


def args_optimize(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")
    p.add_argument("--trials", type=int, default=10, help="trials this worker runs (default 10)")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    args_run(p)
    p.add_argument("--work-dir", help="where trials keep temporary checkpoints (default: the system temp dir)")
    p.add_argument("--heartbeat", type=int, default=60, help="seconds between heartbeats of a running trial")
    p.add_argument(
        "--grace-period", type=int, default=120, help="a trial without heartbeat this long is failed and retried"
    )
    p.add_argument("--max-retry", type=int, default=3, help="retries of a trial whose worker died")


def args_name(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")


def args_show(p: argparse.ArgumentParser) -> None:
    args_name(p)
    args_list(p)


def args_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


def args_keys(p: argparse.ArgumentParser) -> None:
    from storage.schema import OBJECTIVES

    p.add_argument("objective", nargs="?", choices=OBJECTIVES, metavar="OBJECTIVE", help=", ".join(OBJECTIVES))


def args_dashboard(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)


def args_compare(p: argparse.ArgumentParser) -> None:
    from objectives.presets import PRESETS

    p.add_argument("--preset", default="smoke", choices=list(PRESETS), help="budgets and config (default smoke)")
    p.add_argument("--prefix", default="compare", help="study names PREFIX-scale, PREFIX-hparams, ...")
    args_data(p)
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="fix a config key in every study whose objective has it (e.g. data_dir=DIR)",
    )
    p.add_argument("--trials", type=int, help="trials of the hparams, probe and scratch studies (default: preset's)")
    args_run(p)
    p.add_argument("--out", default="report.html", help="the HTML report (default report.html)")


def args_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("--out", default="report.html")
    args_list(p)


COMMANDS = {
    "create": (args_create, cmd_create, "create a study (before starting workers)"),
    "optimize": (args_optimize, cmd_optimize, "run trials of a study (start one per GPU/machine)"),
    "list": (args_list, cmd_list, "list the studies in the store"),
    "show": (args_show, cmd_show, "a study's settings and trials"),
    "delete": (args_name, cmd_delete, "delete a study and its artifacts"),
    "keys": (args_keys, cmd_keys, "every config key: type, default, range, search range, help"),
    "dashboard": (args_dashboard, cmd_dashboard, "browse the store with optuna-dashboard"),
    "report": (args_report, cmd_report, "one HTML report over the store"),
    "compare": (args_compare, cmd_compare, "the whole comparison (resumable), then the report"),
}


def parser() -> argparse.ArgumentParser:
    main_parser = Parser(prog="study.py", description=__doc__.split("\n\n")[0])
    common_args(main_parser)
    sub = main_parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, required=True)
    for name, (add_args, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        common_args(p, default=argparse.SUPPRESS)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # --help (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else 2
    try:
        return COMMANDS[args.command][1](args)
    except UserError as e:
        say(f"error: {first_line(e, 1000) or 'bad input'}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
