"""The shape of the code, checked: one declaration per config key (what `keys`, validation and the default spaces
derive from), provenance in every study, the import graph's direction, module and function sizes, and lint."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from errors import UserError
from objectives.space import default_space
from simclr.config import SECTIONS, check_value, defaults, objective_keys
from simclr.keys import key_rows
from storage import schema
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("simclr", "objectives", "comparison", "storage", "reports", "bench")


def source_files():
    for package in PACKAGES:
        yield from sorted((REPO / package).glob("*.py"))
    for module in ("study.py", "cli_args.py", "errors.py", "atomic.py"):
        yield REPO / module


# ---------------------------------------------------------------------------------------------------------
# one declaration per key


@pytest.mark.parametrize("objective", list(SECTIONS))
def test_keys_lists_every_key_with_type_default_range_and_help(objective):
    r = run_cli("keys", objective)
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split()[:7] == ["key", "type", "default", "range", "search", "objectives", "help"]
    listed = {line.split()[0]: line for line in lines[1:]}
    assert set(listed) == set(objective_keys(objective))
    for name, spec in objective_keys(objective).items():
        assert spec.help and spec.help in listed[name], name
        assert listed[name].split()[1] == spec.type.__name__
    assert re.search(r"^temperature\s+float\s+0\.5\s+> 0\s+\[0\.1, 1\] log", r.out, re.M) or objective != "simclr"


def test_keys_without_objective_says_which_objectives_use_each_key():
    rows = {(r["key"], r["objectives"]) for r in key_rows()}
    assert ("temperature", "simclr") in rows
    assert ("probe_lr", "simclr,linear_probe,supervised_pretrain") in rows
    assert ("encoder", "linear_probe,finetune") in rows
    assert run_cli("keys", "banana").rc == 2


@pytest.mark.parametrize(
    "objective, key, bad, fragment",
    [
        ("simclr", "temperature", 0.0, "must be > 0"),
        ("simclr", "data_fraction", 1.5, "must be in (0, 1]"),
        ("simclr", "jitter_strength", 3.0, "hue jitter"),
        ("simclr", "optimizer", "nesterov", "choose from sgd, lars, adamw"),
        ("simclr", "pretrain_data", "banana", "cifar10, cifar100 or folder:PATH"),
        ("linear_probe", "probe_batch_size", -1, "must be in [0, 10000000]"),
        ("simclr", "epochs", 10**20, "must be in (0, 10000] (SimCLR's longest schedule is 3200 epochs"),
        ("supervised", "label_smoothing", 1.0, "must be in [0, 1)"),
        ("simclr", "seed", 2**32, "numpy's seed range"),
    ],
)
def test_validation_comes_from_the_declaration(objective, key, bad, fragment):
    check_value(objective, key, objective_keys(objective)[key].default)  # the default is valid
    with pytest.raises(UserError, match=re.escape(fragment)):
        check_value(objective, key, bad)


@pytest.mark.parametrize("objective", list(SECTIONS))
def test_default_space_is_the_declared_search_ranges(objective):
    config = defaults(objective)
    space = default_space(objective, config)
    declared = {
        k
        for k, spec in objective_keys(objective).items()
        if spec.search is not None and (not spec.search.only or objective in spec.search.only)
    }
    assert set(space) == declared
    if objective == "simclr":  # SimCLR trials probe with fixed settings; the probe studies search them
        assert set(space) == {"lr", "temperature", "weight_decay", "batch_size", "jitter_strength"}
    for name, dist in space.items():  # every default range is valid for its key
        for bound in getattr(dist, "choices", None) or (dist.low, dist.high):
            if bound != 0 or objective_keys(objective)[name].range.gt is None:
                check_value(objective, name, bound)


def test_relative_search_ranges_move_with_the_config():
    config = {**defaults("simclr"), "lr": 1.0, "batch_size": 64}
    space = default_space("simclr", config)
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == (0.1, 3.0, True)
    assert list(space["batch_size"].choices) == [32, 64, 128]


# ---------------------------------------------------------------------------------------------------------
# provenance


def test_each_study_records_the_code_and_library_versions(tmp_path, data_dir):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    r = run_cli("create", "--objective", "supervised", "--name", "p", "--storage", url, "--data-dir", data_dir)
    assert r.rc == 0, r.err
    attrs = json.loads(run_cli("show", "p", "--json", "--storage", url).out)["user_attrs"]
    provenance = json.loads(attrs[schema.PROVENANCE])
    for package in ("torch", "torchvision", "optuna"):
        assert provenance[package] == importlib.metadata.version(package)
    assert provenance["project"] == re.search(r'^version = "(.+)"', (REPO / "pyproject.toml").read_text(), re.M)[1]
    if (REPO / ".git").exists() and shutil.which("git"):
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert provenance["git"].split("+")[0] == head.strip()


# ---------------------------------------------------------------------------------------------------------
# structure


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("storage", {"simclr", "objectives", "comparison", "reports", "torch", "study"}),
        ("reports", {"simclr", "objectives", "torch", "study"}),
        ("simclr", {"optuna", "objectives", "comparison", "storage", "reports", "study"}),
        ("objectives", {"comparison", "reports", "study"}),
        ("comparison", {"reports", "study", "cli_args"}),
    ],
)
def test_imports_point_one_way(package, forbidden):
    """Third-party floors too (tests/test_imports.py checks the project's modules): no torch under reports,
    no Optuna in the learning library."""
    for path in sorted((REPO / package).glob("*.py")):
        assert not imports_of(path) & forbidden, (path.name, imports_of(path) & forbidden)


def test_the_application_never_imports_the_benchmark_only_libraries():
    """lightly and scikit-learn are bench/'s references (bench/requirements.txt), not dependencies of the tool."""
    application = [REPO / "study.py", REPO / "cli_args.py", REPO / "errors.py", REPO / "atomic.py"]
    application += [p for package in PACKAGES if package != "bench" for p in sorted((REPO / package).glob("*.py"))]
    for path in application:
        assert not imports_of(path) & {"lightly", "sklearn"}, path.name


def test_modules_and_functions_stay_small():
    for path in source_files():
        source = path.read_text()
        assert len(source.splitlines()) <= 400, path
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno + 1 <= 80, (path.name, node.name)
    assert len((REPO / "study.py").read_text().splitlines()) < 300


@pytest.mark.skipif(
    shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(), reason="ruff is not installed"
)
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff_is_clean(command):
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff) if ruff.exists() else "ruff", *command, "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_presets_set_only_what_differs_from_the_defaults():
    from objectives.presets import PRESETS

    for preset, objectives in PRESETS.items():
        for objective, values in objectives.items():
            declared = defaults(objective)
            same = sorted(k for k, v in values.items() if v == declared[k])
            assert not same, f"preset {preset}/{objective} sets {', '.join(same)} to the default"


def test_renamed_values_are_read_under_their_new_names():
    from simclr.config import make_config, parse_value

    assert parse_value("simclr", "optimizer", "adam") == "adamw"  # --set and --param choice: of older scripts
    assert make_config("supervised", {"optimizer": "adam"}).supervised.optimizer == "adamw"  # stored studies
    assert parse_value("linear_probe", "probe_optimizer", "adam") == "adam"  # torch.optim.Adam: not renamed


def test_the_readmes_layout_names_every_module():
    """A user finds every module in the README's layout (docs/architecture.md says why each is shaped so)."""
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout") :].split("```")[1]
    for path in source_files():
        if path.name != "__init__.py":
            assert path.name in layout, f"README's layout does not name {path.relative_to(REPO)}"
    for package in PACKAGES:
        assert f"{package}/" in layout, package
