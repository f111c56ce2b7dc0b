"""study.py's command line as data: every subcommand's help and arguments, and the options all commands take.

study.py builds its argparse parser from `COMMANDS` and `common()` and dispatches each subcommand to its handler;
nothing here runs anything. An argument is `(flags, keywords)`, exactly what `add_argument(*flags, **keywords)`
takes, so a table row reads like the call it becomes. Imported by study.py when it parses (the choices come from
objectives/ and storage/, which import optuna).
"""

from __future__ import annotations

from typing import Any

from objectives.presets import PRESETS
from objectives.registry import NAMES as OBJECTIVES
from objectives.space import SAMPLERS, SPEC_HELP

Argument = tuple[tuple[str, ...], dict[str, Any]]


def arg(*flags: str, **keywords: Any) -> Argument:
    return flags, keywords


def percent(text: str) -> float:
    """A top-1 level given as 60 or 60%: a percent in (0, 100]."""
    value = float(text.strip().removesuffix("%"))
    if not 0 < value <= 100:
        raise ValueError(text)
    return value


def sets(help_text: str) -> Argument:
    """--set KEY=VALUE ... (repeatable, accumulating); `help_text` says what a key means for the command."""
    return arg("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=help_text)


FLAG: dict[str, Any] = {"action": "store_true"}
NAME = arg("name", metavar="NAME")
DATA_DIR = arg(
    "--data-dir",
    metavar="DIR",
    help="where the CIFAR archives are or are downloaded to (default: $STUDY_DATA, else ./data; a probe of "
    "best:STUDY takes that study's data settings)",
)
# How a worker runs trials: shared by `optimize` (one study) and `compare` (every study of its plan).
RUN = [
    arg("--device", default="auto", help="auto, cpu, cuda, cuda:K or mps (one worker per GPU)"),
    arg("--threads", type=int, help="torch CPU threads (default: all cores; cores/workers for several)"),
    arg(
        "--keep-checkpoints",
        type=int,
        default=3,
        metavar="K",
        help="checkpoints of the best K trials of a study are kept (and those that may resume or that other "
        "studies probe); default 3",
    ),
    arg(
        "--progress",
        choices=("bar", "lines", "none"),
        help="bars (default on a terminal), a line per epoch and trial (default otherwise: logs, several workers "
        "on one terminal), or none",
    ),
    arg(
        "--log",
        metavar="tensorboard:DIR",
        help="also write each trial's per-epoch loss, lr, monitor and images/s as TensorBoard scalars under "
        "DIR/STUDY/trial-N (needs: pip install tensorboard)",
    ),
]
# Where a worker keeps its trials' checkpoints, and how it finds a lost worker's trials: `optimize` and `compare`.
RECOVERY = [
    arg("--work-dir", help="where trials keep temporary checkpoints (default: the system temp dir)"),
    arg("--heartbeat", type=int, default=60, help="seconds between heartbeats of a running trial (default 60)"),
    arg(
        "--grace-period",
        type=int,
        default=120,
        help="seconds: a trial silent this long lost its worker; the next trial started fails and retries it "
        "(default 120)",
    ),
    arg("--max-retry", type=int, default=3, help="retries of a trial whose worker was lost (default 3)"),
]
PRUNER_HELP = "median[:N_STARTUP[:N_WARMUP]], hyperband[:MIN_RESOURCE[:REDUCTION]] or none (default median)"

CREATE = [
    arg("--objective", required=True, choices=OBJECTIVES),
    arg("--name", help="default: OBJECTIVE-DATE-TIME"),
    arg("--preset", choices=list(PRESETS), help="fills config: smoke (minutes, CPU), default, paper"),
    DATA_DIR,
    sets("fix a config key (`study.py keys OBJECTIVE` lists them)"),
    arg("--param", action="extend", nargs="+", default=[], metavar="NAME=SPEC", help=SPEC_HELP),
    arg("--sampler", default="tpe", choices=SAMPLERS),
    arg("--pruner", default="median", help=PRUNER_HELP),
    arg("--seed", type=int, help="sampler seed (default: the config's seed)"),
    arg("--role", default="", help="the regime this study plays in a comparison (for reports)"),
    arg("--comparison", default="", help="the comparison this study belongs to (for reports)"),
]
OPTIMIZE = [
    NAME,
    arg("--trials", type=int, help="trials this worker runs (default 10; with --total-trials: no limit of its own)"),
    arg(
        "--total-trials",
        type=int,
        metavar="N",
        help="stop once the study has N trials that count, finished or running on any worker (the store counts: "
        "give every worker the same N)",
    ),
    arg("--timeout", type=float, help="stop starting trials after this many seconds"),
    *RUN,
    *RECOVERY,
]
SHOW = [
    NAME,
    arg("--json", **FLAG, help="study attrs and every trial, as JSON"),
    arg("--csv", **FLAG, help="the trials table as CSV (pandas.read_csv reads it)"),
    arg("--best", **FLAG, help="the best trial's whole config as --set options"),
]
EXPORT = [
    NAME,
    arg("--trial", type=int, help="default: the best"),
    arg("--out", required=True, help="encoder.pt (+ encoder.json: config and scores)"),
]
COMPARE = [
    arg("--preset", default="smoke", choices=list(PRESETS), help="budgets and config (default smoke)"),
    arg("--prefix", default="compare", help="study names PREFIX-scale, PREFIX-hparams, ..."),
    DATA_DIR,
    sets("fix a config key in every study whose objective has it"),
    arg("--trials", type=int, help="trials of the hparams, probe and scratch studies (default: preset's)"),
    arg("--time-budget", metavar="DURATION", help="size the plan to fit, e.g. 15m, 2h, none (smoke: 15m)"),
    arg(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="size --time-budget for N compare workers sharing this store (start each like this one; default 1)",
    ),
    *RUN,
    *RECOVERY,
    arg("--out", default="report.html", help="the HTML report (default report.html)"),
]

# name -> (help, arguments), in the order `study.py --help` lists the subcommands
COMMANDS: dict[str, tuple[str, list[Argument]]] = {
    "create": ("create a study (before starting workers)", CREATE),
    "optimize": ("run trials of a study (start one per GPU/machine)", OPTIMIZE),
    "list": ("list the studies in the store", [arg("--json", **FLAG)]),
    "show": ("a study's settings and trials (--json, --csv and --best exclude each other)", SHOW),
    "delete": ("delete a study and its artifacts", [NAME, arg("--force", **FLAG)]),
    "keys": (
        "every config key: type, default, range, search range, help",
        [arg("objective", nargs="?", choices=OBJECTIVES, help="only this objective's keys")],
    ),
    "enqueue": (
        "queue a trial with given parameter values (the next optimize runs it)",
        [NAME, sets("a searched parameter's value")],
    ),
    "dequeue": (
        "cancel a queued trial that no worker has started (it ends FAIL 'dequeued')",
        [NAME, arg("number", type=int, metavar="N", help="the queued trial's number (`show NAME`)")],
    ),
    "export": ("write a trial's encoder as a torchvision resnet18 state_dict", EXPORT),
    "dashboard": (
        "browse the store with optuna-dashboard",
        [arg("--host", default="127.0.0.1"), arg("--port", type=int, default=8080)],
    ),
    "report": (
        "one HTML report over the store",
        [
            arg("names", nargs="*", metavar="NAME"),
            arg("--comparison", metavar="PREFIX", help="only the studies of this comparison (compare --prefix)"),
            arg("--out", default="report.html"),
            arg("--json", **FLAG),
        ],
    ),
    "predict": (
        "fit a data-scale curve's law, back-test it, and predict accuracy at more data",
        [
            NAME,
            arg("--target", type=percent, metavar="ACC", help="also: images needed to reach this top-1, e.g. 60%%"),
            arg("--json", **FLAG),
        ],
    ),
    "compare": ("the whole comparison (resumable), then the report", COMPARE),
}


def common(default: Any = None) -> list[Argument]:
    """--storage and --artifacts, before or after the command's name (the subcommand's copies default to
    SUPPRESS, so a value given before the name is kept)."""
    return [
        arg(
            "--storage",
            metavar="URL",
            default=default,
            help="sqlite:///PATH, postgresql+psycopg://USER@HOST/DB or journal:PATH (default: $STUDY_STORAGE, else "
            "sqlite:///studies.db)",
        ),
        arg(
            "--artifacts",
            metavar="DIR",
            default=default,
            help="checkpoint directory (default: $STUDY_ARTIFACTS, else <store>_artifacts beside the store file)",
        ),
    ]
