"""Fuzzing the command line (hypothesis): random argument lists for every subcommand end with exit code 0 or 2 and
a message, never a traceback, and leave the stores as they were unless the command was a valid change (`create`,
`delete`). Run in process (study.main) for speed; nothing here trains or serves: `optimize` and `dashboard`
argument lists always end with a value they refuse, and the test fails if a study is optimized or a server starts.

Each of the 8 kinds of argument list (7 subcommands, and anything else) gets EXAMPLES lists, from a fixed seed
(derandomize: CI sees the same lists every run). STUDY_FUZZ_EXAMPLES=N explores: N lists per kind, a new seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import study
from storage import open_storage
from tests.helpers import run_cli

pytestmark = pytest.mark.slow  # end-to-end: several processes or a whole study each

EXAMPLES = int(os.environ.get("STUDY_FUZZ_EXAMPLES", "40"))
EXPLORE = "STUDY_FUZZ_EXAMPLES" in os.environ
READ_ONLY = {"list", "show", "report", "optimize", "dashboard"}  # as fuzzed here: they never change a store

# -- the vocabulary ----------------------------------------------------------------------------------------------

JUNK = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=10
)


def value(*known: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), JUNK) if known else JUNK


STORAGES = value(
    "sqlite:///s.db",  # the study store (also $STUDY_STORAGE)
    "journal:j.log",  # a journal store
    "sqlite:///missing.db",
    "journal:missing.log",
    "sqlite:///notes.db",  # a text file
    "sqlite:///other.db",  # somebody else's SQLite database
    "sqlite:///",
    "sqlite://",
    "sqlite:///:memory:",
    "sqlite:///no/such/dir/s.db",
    "studies.db",
    "postgresql+psycopg://postgres@127.0.0.1:1/x",
    "nosuchdialect://x",
    "journal:",
    "journal:.",
)
NAMES = value("a", "b", "nosuch", "", " ", "a\nb", "x" * 600, "ü-名前", "-a", "--", "a:b")
OBJECTIVES = value("simclr", "linear_probe", "supervised", "finetune", "nope", "")
SETS = value(
    "epochs=2",
    "epochs=0",
    "epochs=-1",
    "epochs=abc",
    "lr=0.1",
    "lr=nan",
    "lr=inf",
    "lr=1e999",
    "seed=-1",
    "seed=99999999999999999999999",
    "batch_size=3.5",
    "data_fraction=0",
    "data_fraction=1.5",
    "encoder=random",
    "encoder=best:a",
    "encoder=best:",
    "encoder=trial:a:x",
    "encoder=",
    "encoder=/no/such.pt",
    "precision=fp64",
    "nope=1",
    "=",
    "epochs",
    "probe_data=folder:",
)
PARAMS = value(
    "lr=float:0.01:0.1",
    "lr=float:0.01:0.1:log",
    "lr=float:0:1:log",
    "lr=float:1:0",
    "lr=float:nan:1",
    "lr=float:abc",
    "epochs=int:1:5",
    "epochs=int:1:5:0",
    "epochs=int:5:1",
    "batch_size=choice:4,8",
    "batch_size=choice:",
    "batch_size=choice:a,b",
    "probe_lr=choice:0.1,0.1",
    "temperature=choice:0.1,0.5",
    "nope=float:0:1",
    "lr=",
    "lr",
)
NUMBERS = value("0", "1", "2", "-1", "x", "1e3", "nan", "inf", "-inf", "3.5", "99999999999999999999")


def opt(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.tuples(st.just(flag), values).map(list)


COMMON = [opt("--storage", STORAGES), opt("--artifacts", value("art", "missing/dir", "", "notes.db"))]
NOISE = [
    JUNK.map(lambda t: [t]),
    st.sampled_from([["--help"], ["-h"], ["--"], ["--json"], ["--nope"], ["-x"], ["--storage"], ["="]]),
]


def command(name: str, options: list, positional: list | None = None, tail=None) -> st.SearchStrategy[list[str]]:
    pieces = st.lists(st.one_of(*options, *COMMON, *NOISE, *(positional or [])), max_size=6)
    argv = pieces.map(lambda ps: [name] + [token for piece in ps for token in piece])
    if tail is not None:  # a value the command refuses, last (argparse: the last of a repeated option wins)
        argv = st.tuples(argv, tail).map(lambda at: at[0] + at[1])
    return argv


CREATE = command(
    "create",
    [
        opt("--objective", OBJECTIVES),
        opt("--objective", OBJECTIVES),
        opt("--name", NAMES),
        opt("--preset", value("smoke", "default", "paper", "nope")),
        opt("--set", SETS),
        st.tuples(st.just("--set"), SETS, SETS).map(list),
        opt("--param", PARAMS),
        opt("--sampler", value("tpe", "random", "grid", "cmaes", "gp", "nope")),
        opt("--pruner", value("median", "median:1:0", "median:x", "hyperband", "hyperband:5:2", "hyperband:0", "none")),
        opt("--seed", NUMBERS),
        opt("--role", value("scratch", "simclr_scale", "nope", "")),
        opt("--comparison", value("c1", "")),
    ],
)
OPTIMIZE = command(
    "optimize",
    [
        opt("--trials", NUMBERS),
        opt("--timeout", NUMBERS),
        opt("--device", value("cpu", "auto", "cuda", "cuda:0", "cuda:x", "mps", "tpu", "")),
        opt("--threads", NUMBERS),
        opt("--work-dir", value("w", "")),
        opt("--heartbeat", NUMBERS),
        opt("--grace-period", NUMBERS),
        opt("--max-retry", NUMBERS),
    ],
    [NAMES.map(lambda n: [n])],
    tail=st.sampled_from([["--trials", "0"], ["--trials", "-2"], ["--trials", "x"], ["--timeout", "0"]]).flatmap(
        lambda bad: st.just(["a", *bad]) | st.just(bad) | st.just(["nosuch"])
    ),
)
LIST = command("list", [st.just(["--json"])])
SHOW = command("show", [st.just(["--json"])], [NAMES.map(lambda n: [n])])
DELETE = command("delete", [], [NAMES.map(lambda n: [n])])
REPORT = command(
    "report",
    [st.just(["--json"]), st.just(["--json"]), opt("--out", value("r.html", "", ".", "/no/such/dir/r.html", "art"))],
    [NAMES.map(lambda n: [n])],
)
DASHBOARD = command(
    "dashboard",
    [opt("--host", value("127.0.0.1", "0.0.0.0", "", "no such host")), opt("--port", NUMBERS)],
    tail=st.sampled_from([["--port", "0"], ["--port", "70000"], ["--port", "-1"], ["--port", "x"], ["--nope"]]),
)
OTHER = st.lists(JUNK, max_size=4) | st.sampled_from([[], ["--help"], ["-h"], ["compare!"], ["--storage", "x"]])
ARGV = {
    "create": CREATE,
    "optimize": OPTIMIZE,
    "list": LIST,
    "show": SHOW,
    "delete": DELETE,
    "report": REPORT,
    "dashboard": DASHBOARD,
    "other": OTHER,
}
FUZZED: Counter = Counter()  # (kind, exit code) -> argument lists, over the whole module

# -- the stores ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """s.db and j.log with studies "a" (2 finished trials) and "b" (none), a text file and a foreign SQLite file."""
    root = tmp_path_factory.mktemp("fuzz-pristine")
    for url in (f"sqlite:///{root / 's.db'}", f"journal:{root / 'j.log'}"):
        assert run_cli("create", "--objective", "linear_probe", "--name", "a", "--storage", url).rc == 0
        assert run_cli("create", "--objective", "simclr", "--name", "b", "--storage", url).rc == 0
        a = optuna.load_study(study_name="a", storage=open_storage(url))
        for value_ in (50.0, 60.0):
            a.add_trial(
                optuna.create_trial(
                    params={"probe_lr": 0.1},
                    distributions={"probe_lr": optuna.distributions.FloatDistribution(0.01, 1.0, log=True)},
                    value=value_,
                    intermediate_values={1: value_},
                )
            )
    (root / "notes.db").write_text("my notes\n")
    con = sqlite3.connect(root / "other.db")
    con.execute("CREATE TABLE photos (id INTEGER)")
    con.commit()
    con.close()
    (root / "art").mkdir()
    return root


def tree(root: Path) -> dict[str, str]:
    """Every file and directory under root -> sha256 of its bytes ("dir" for directories)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def studies(root: Path) -> dict[str, int]:
    """Study name -> number of trials in the SQLite store, read with sqlite3 (read-only)."""
    con = sqlite3.connect(f"{(root / 's.db').as_uri()}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT s.study_name, COUNT(t.trial_id) FROM studies s LEFT JOIN trials t USING (study_id) "
            "GROUP BY s.study_name"
        )
        return dict(rows.fetchall())
    finally:
        con.close()


STORE_FILES = ("s.db", "j.log", "notes.db", "other.db")


class Forbidden(BaseException):
    """Raised if fuzzing would train or serve (BaseException: no handler in study.py swallows it)."""


@pytest.mark.parametrize("kind", list(ARGV))
def test_fuzz_the_command_line(kind, pristine, tmp_path, monkeypatch):
    import optuna_dashboard

    def forbidden(*args, **kwargs):
        raise Forbidden("a fuzzed command tried to optimize or serve")

    monkeypatch.setattr(optuna.study.Study, "optimize", forbidden)
    monkeypatch.setattr(optuna_dashboard, "run_server", forbidden)
    work = tmp_path / "work"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STUDY_STORAGE", "sqlite:///s.db")

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=not EXPLORE,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(argv=ARGV[kind])
    def check(argv: list[str]) -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(pristine, work)
        os.chdir(work)
        before, names_before = tree(work), studies(work)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = study.main(argv)
            except SystemExit as e:  # study.main should not let one through; record it as its code
                rc = e.code
        out, err = out.getvalue(), err.getvalue()
        name = argv[0] if argv and argv[0] in study.commands() else "other"
        FUZZED[(kind, rc)] += 1
        where = f"argv={argv!r} rc={rc!r}\nstderr: {err[-2000:]}"
        assert rc in (0, 2), where
        assert "Traceback" not in err and "Traceback" not in out, where
        assert (out + err).strip(), f"no message: {where}"
        if rc == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), where
        after = tree(work)
        if rc != 0:  # refused: nothing changed, nothing created (no empty store, no artifact directory)
            assert after == before, where
            assert studies(work) == names_before, where
        elif name in READ_ONLY or name == "other":  # valid but read-only (or --help): the stores are as they were
            assert {f: after.get(f) for f in STORE_FILES} == {f: before[f] for f in STORE_FILES}, where
            assert studies(work) == names_before, where
            assert {f: h for f, h in after.items() if f.startswith("art")} == {
                f: h for f, h in before.items() if f.startswith("art")
            }, where
            new = after.keys() - before.keys()  # a report page, nothing else
            assert not new or (name == "report" and len(new) == 1 and "/" not in new.pop()), where

    check()
    codes = {rc: n for (k, rc), n in sorted(FUZZED.items()) if k == kind}
    print(f"fuzzed {kind}: {codes} (exit code: lists)")
    print(f"fuzzed so far: {sum(FUZZED.values())} argument lists")


@pytest.mark.parametrize(
    "argv, fragment",
    [  # what fuzzing (and reading the code while writing it) found: each used to succeed, or to end in a traceback
        (["report", "--out", ""], "give a file name"),
        (["report", "--out", "."], "give a file name"),
        (["report", "--out", "/no/such/dir/r.html"], "does not exist"),
        (["delete", "", "\x1e0"], "unrecognized arguments: \\x1e0"),  # a line separator in the message
        (["create", "--objective", "simclr", "--name", "a\x1eb"], "printable"),
        (["create", "--objective", "simclr", "--storage", "sqlite:///"], "in-memory"),  # a study that vanished
        (["list", "--storage", "sqlite:///:memory:"], "in-memory"),
        (["create", "--objective", "simclr", "--seed", "-1"], "--seed -1"),  # every worker then failed
        (["create", "--objective", "simclr", "--sampler", "grid", "--seed", "4294967296"], "must be in 0..4294967295"),
        (["create", "--objective", "simclr", "--set", "seed=-3"], "seed=-3"),
        (["create", "--objective", "simclr", "--set", "weight_decay=nan"], "finite"),
        (["create", "--objective", "simclr", "--set", "lr=1e999"], "finite"),
    ],
)
def test_fuzzing_findings_are_refused(argv, fragment, pristine, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(pristine, work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("STUDY_STORAGE", "sqlite:///s.db")
    before = tree(work)
    r = run_cli(*argv)
    assert r.rc == 2 and r.err.count("\n") == 1 and r.err.startswith("error: "), r.err
    assert fragment in r.err, r.err
    assert tree(work) == before
