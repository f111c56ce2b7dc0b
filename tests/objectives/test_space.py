"""objectives.space and objectives.build_spec: --set/--param parsing, default spaces, samplers, pruners."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from errors import UserError
from objectives import build_spec, registry
from objectives.presets import PRESETS
from objectives.space import (
    build_space,
    default_space,
    make_pruner,
    make_sampler,
    parse_encoder,
    parse_param,
    parse_set,
    pruner_spec,
    suggest,
)
from simclr.config import SECTIONS, defaults
from storage import schema


@pytest.mark.parametrize(
    "objective, text, key, dist",
    [
        ("simclr", "lr=float:0.01:1", "lr", FloatDistribution(0.01, 1.0)),
        ("simclr", "lr=float:1e-3:1:log", "lr", FloatDistribution(1e-3, 1.0, log=True)),
        ("simclr", "epochs=int:1:9", "epochs", IntDistribution(1, 9)),
        ("simclr", "epochs=int:1:9:2", "epochs", IntDistribution(1, 9, step=2)),
        ("simclr", "batch_size=int:16:256:log", "batch_size", IntDistribution(16, 256, log=True)),
        ("simclr", "batch_size=choice:128,256", "batch_size", CategoricalDistribution([128, 256])),
        ("simclr", "data_fraction=choice:0.1,0.25,1", "data_fraction", CategoricalDistribution([0.1, 0.25, 1.0])),
        ("simclr", "optimizer=choice:sgd,lars", "optimizer", CategoricalDistribution(["sgd", "lars"])),
        ("simclr", "channels_last=choice:true,false", "channels_last", CategoricalDistribution([True, False])),
        ("linear_probe", "encoder=choice:random,imagenet", "encoder", CategoricalDistribution(["random", "imagenet"])),
        ("linear_probe", " probe_lr = float:0.5:0.5 ", "probe_lr", FloatDistribution(0.5, 0.5)),
    ],
)
def test_parse_param(objective, text, key, dist):
    assert parse_param(objective, text) == (key, dist)


def test_choice_values_are_typed_by_the_key():
    _, dist = parse_param("simclr", "batch_size=choice:128,256")
    assert all(type(v) is int for v in dist.choices)
    _, dist = parse_param("simclr", "lr=choice:1,2")
    assert all(type(v) is float for v in dist.choices)


@pytest.mark.parametrize(
    "objective, text, fragment",
    [
        ("simclr", "lr", "expected KEY=VALUE"),
        ("simclr", "=float:0:1", "expected KEY=VALUE"),
        ("simclr", "lr=", "SPEC must be"),
        ("simclr", "lr=abc", "SPEC must be"),
        ("simclr", "lr=uniform:0:1", "SPEC must be"),
        ("simclr", "lr=float:1", "SPEC must be"),
        ("simclr", "lr=float:1:2:3:4", "SPEC must be"),
        ("simclr", "lr=float:1:0", "LOW 1.0 is above HIGH 0.0"),
        ("simclr", "lr=float:a:1", "not a number"),
        ("simclr", "lr=float:0:nan", "not a finite number"),
        ("simclr", "lr=float:0.1:inf", "not a finite number"),
        ("simclr", "lr=float:0:1:log", "must be > 0"),
        ("simclr", "weight_decay=float:0:1:log", "log range needs LOW > 0"),
        ("simclr", "lr=float:0.1:1:lin", "can only be 'log'"),
        ("simclr", "lr=float:-1:1", "must be > 0"),
        ("simclr", "data_fraction=float:0.5:2", "must be in (0, 1]"),
        ("simclr", "lr=int:1:3", "lr is float"),
        ("simclr", "epochs=float:1:3", "epochs is int"),
        ("simclr", "epochs=int:1.5:3", "not an int"),
        ("simclr", "epochs=int:1:10:0", "STEP must be a positive int"),
        ("simclr", "epochs=int:1:10:x", "not an int"),
        ("simclr", "epochs=int:1:10:4", "multiple of STEP"),
        ("simclr", "optimizer=float:0:1", "optimizer is str; use choice"),
        ("simclr", "optimizer=choice:sgd,nesterov", "choose from"),
        ("simclr", "batch_size=choice:", "choice needs values"),
        ("simclr", "batch_size=choice:1,,2", "choice needs values"),
        ("simclr", "batch_size=choice:8,8", "listed twice"),
        ("simclr", "batch_size=choice:8,big", "expected int"),
        ("simclr", "foo=float:0:1", "unknown config key"),
        ("simclr", "probe_weight_decay=foo", "SPEC must be"),
        ("linear_probe", "epochs=int:1:3", "unknown config key"),  # not a key of this objective
        ("supervised", "temperature=float:0.1:1", "unknown config key"),
    ],
)
def test_parse_param_rejects(objective, text, fragment):
    with pytest.raises(UserError, match=None) as info:
        parse_param(objective, text)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("lr=0.5", ("lr", 0.5)),
        ("epochs=3", ("epochs", 3)),
        ("optimizer=lars", ("optimizer", "lars")),
        ("channels_last=false", ("channels_last", False)),
        ("data_dir=/tmp/x y", ("data_dir", "/tmp/x y")),
    ],
)
def test_parse_set(text, expected):
    assert parse_set("simclr", text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "lr=abc",
        "lr",
        "=1",
        "nope=1",
        "epochs=1.5",
        "epochs=0",
        "optimizer=rmsprop",
        "data_fraction=0",
        "data_fraction=1.5",
        "lr=-1",
        "download=maybe",
    ],
)
def test_parse_set_rejects(text):
    with pytest.raises(UserError):
        parse_set("simclr", text)


@pytest.mark.parametrize("objective", list(SECTIONS))
def test_default_space_fits_the_config(objective):
    config = defaults(objective)
    space = default_space(objective, config)
    assert space, "every objective searches something by default"
    for key, dist in space.items():
        assert key in config
        if isinstance(dist, FloatDistribution) and key in ("lr", "probe_lr"):
            assert dist.low < config[key] < dist.high  # scaled around the config value
    trial = optuna.trial.FixedTrial(
        {k: (d.choices[0] if isinstance(d, CategoricalDistribution) else d.low) for k, d in space.items()}
    )
    assert set(suggest(trial, space)) == set(space)


def test_default_space_moves_with_the_preset():
    paper = {**defaults("simclr"), **registry.get("simclr").preset("paper")}
    smoke = {**defaults("simclr"), **registry.get("simclr").preset("smoke")}
    assert default_space("simclr", paper)["lr"].high > default_space("simclr", smoke)["lr"].high
    assert 512 in default_space("simclr", paper)["batch_size"].choices
    assert max(default_space("simclr", smoke)["batch_size"].choices) <= 256


def test_build_space_set_removes_and_param_overrides():
    config = defaults("simclr")
    space = build_space(
        "simclr",
        config,
        {"lr": 0.1},
        {"temperature": CategoricalDistribution([0.5]), "data_fraction": CategoricalDistribution([0.1, 1.0])},
        "tpe",
    )
    assert "lr" not in space
    assert space["temperature"] == CategoricalDistribution([0.5])
    assert "data_fraction" in space and "weight_decay" in space


def test_grid_space_is_the_choices_only():
    space = build_space(
        "simclr", defaults("simclr"), {}, {"data_fraction": CategoricalDistribution([0.1, 1.0])}, "grid"
    )
    assert list(space) == ["data_fraction"]
    with pytest.raises(UserError, match="grid needs"):
        build_space("simclr", defaults("simclr"), {}, {"lr": FloatDistribution(0.1, 1)}, "grid")
    with pytest.raises(UserError, match="at least one --param"):
        build_space("simclr", defaults("simclr"), {}, {}, "grid")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"objective": "nope"}, "unknown objective"),
        ({"objective": "simclr", "preset": "huge"}, "unknown preset"),
        ({"objective": "simclr", "sampler": "bayes"}, "unknown sampler"),
        ({"objective": "simclr", "pruner": "sha"}, "unknown pruner"),
        ({"objective": "simclr", "pruner": "median:x"}, "must be ints"),
        ({"objective": "simclr", "pruner": "median:1:2:3"}, "at most 2"),
        ({"objective": "simclr", "pruner": "hyperband:0"}, "MIN_RESOURCE must be >= 1"),
        ({"objective": "simclr", "pruner": "none:1"}, "unknown pruner"),
        ({"objective": "simclr", "sets": ["lr=0.1"], "params": ["lr=float:0.1:1"]}, "either fixed"),
        ({"objective": "simclr", "sets": ["lr=0.1", "lr=0.2"]}, "given twice"),
        ({"objective": "simclr", "params": ["lr=float:0.1:1", "lr=float:0.1:2"]}, "given twice"),
        ({"objective": "simclr", "sampler": "grid", "params": ["lr=float:0.1:1"]}, "grid needs"),
        ({"objective": "simclr", "values": {"temperature": 0.0}}, "must be > 0"),
        ({"objective": "simclr", "values": {"banana": 1}}, "unknown config key"),
        ({"objective": "simclr", "values": {"lr": 0.1}, "sets": ["lr=0.2"]}, "given twice"),
        ({"objective": "linear_probe", "sets": ["encoder=trial:x:y"]}, "trial:STUDY:NUMBER"),
        ({"objective": "finetune", "sets": ["encoder=best:"]}, "needs a study name"),
    ],
)
def test_build_spec_rejects(kwargs, fragment):
    with pytest.raises(UserError) as info:
        build_spec(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("objective", list(SECTIONS))
@pytest.mark.parametrize("preset", [None, *PRESETS])
def test_spec_round_trips_through_study_attrs(objective, preset):
    spec = build_spec(objective, preset=preset, sets=["seed=3"], sampler="random", seed=7)
    assert spec.config["seed"] == 3 and spec.sampler == {"name": "random", "seed": 7}
    attrs = json.loads(json.dumps(spec.user_attrs()))  # what a store keeps: JSON-able values
    back = schema.read_spec(attrs)
    assert back == spec
    for key, value in registry.get(objective).preset(preset).items():
        assert back.config[key] == value


def test_set_overrides_preset():
    spec = build_spec("simclr", preset="smoke", sets=["epochs=7"])
    smoke = registry.get("simclr").preset("smoke")
    assert spec.config["epochs"] == 7 and spec.config["data_fraction"] == smoke["data_fraction"]


@pytest.mark.parametrize("name", ["tpe", "random", "grid"])
def test_samplers_are_seeded(name):
    spec = build_spec("simclr", sampler=name, params=["data_fraction=choice:0.1,0.25,0.5,1"] if name == "grid" else [])
    draws = []
    for _ in range(2):
        study = optuna.create_study(direction="maximize", sampler=make_sampler(spec.sampler, spec.space))
        for _ in range(3):
            trial = study.ask()
            study.tell(trial, suggest(trial, spec.space).get("data_fraction", 0.0) or 1.0)
        draws.append([t.params for t in study.trials])
    assert draws[0] == draws[1]


@pytest.mark.parametrize(
    "text, objective, sets, expected",
    [
        # SimCLR: after 5/8 of its epochs (the monitor ranks trials there, not at the first report nor at half),
        # never inside warm-up (the first kNN report at or after its end)
        ("median", "simclr", {"monitor_every": 5}, {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 63}),
        (
            "median",
            "simclr",
            {"monitor_every": 2, "warmup_epochs": 3, "epochs": 4},
            {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 4},
        ),
        (
            "median",
            "simclr",
            {"monitor_every": 1, "warmup_epochs": 0.5, "epochs": 8},
            {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 5},
        ),
        # supervised runs: after half their epochs (30 here), however short the warm-up
        ("median", "supervised", {"warmup_epochs": 5}, {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 15}),
        ("median", "finetune", {"epochs": 200}, {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 100}),
        ("median:1:0", "linear_probe", {}, {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}),
        (
            "hyperband",
            "supervised",
            {"epochs": 27},
            {"name": "hyperband", "min_resource": 14, "max_resource": 27, "reduction_factor": 3},
        ),
        (
            "hyperband:5:2",
            "simclr",
            {"epochs": 100},
            {"name": "hyperband", "min_resource": 5, "max_resource": 100, "reduction_factor": 2},
        ),
        ("none", "finetune", {}, {"name": "none"}),
    ],
)
def test_pruner_spec(text, objective, sets, expected):
    config = {**defaults(objective), **sets}
    spec = pruner_spec(text, objective, config)
    assert spec == expected
    pruner = make_pruner(spec)
    assert isinstance(
        pruner,
        {
            "median": optuna.pruners.MedianPruner,
            "hyperband": optuna.pruners.HyperbandPruner,
            "none": optuna.pruners.NopPruner,
        }[expected["name"]],
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("random", ("random", "", None)),
        ("imagenet", ("imagenet", "", None)),
        ("best:ssl", ("best", "ssl", None)),
        ("trial:a:b:12", ("trial", "a:b", 12)),
        ("runs/x.pt", ("path", "runs/x.pt", None)),
    ],
)
def test_parse_encoder(text, expected):
    assert parse_encoder(text) == expected


def test_grid_exhaustion_and_duplicates():
    from objectives.space import grid_duplicate_of, grid_exhausted, grid_size

    spec = build_spec("linear_probe", sampler="grid", params=["probe_lr=choice:0.01,0.1"])
    assert grid_size(spec.space) == 2
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec.sampler, spec.space))
    first = study.ask()  # trials 0 and 1 get grid points 0 and 1: trial numbers never collide
    assert not grid_exhausted(study, spec.space)
    second = study.ask()
    assert grid_exhausted(study, spec.space)  # both points started: a worker asking now would repeat one
    third = study.ask()  # what a racing worker gets: Optuna logs "re-evaluating" and repeats a running point
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert grid_duplicate_of(frozen[first.number], list(frozen.values())) is None
    assert grid_duplicate_of(frozen[second.number], list(frozen.values())) is None
    assert grid_duplicate_of(frozen[third.number], list(frozen.values())) in (0, 1)


def test_a_later_trial_waits_for_an_earlier_trials_grid_point():
    """The race that ran one point twice: trial 0 is created, but before its worker writes the point GridSampler
    gave it, trial 1 takes that point as free. Trial 1 sees trial 0 as unsettled, and once trial 0's point is
    written, gives way to it (the lower number keeps a point)."""
    from objectives.space import grid_duplicate_of, grid_unsettled

    spec = build_spec("linear_probe", sampler="grid", params=["probe_lr=choice:0.01,0.1"])
    study = optuna.create_study(direction="maximize", sampler=make_sampler(spec.sampler, spec.space))
    storage, sid = study._storage, study._study_id
    early = storage.create_new_trial(sid)  # trial 0, its worker not yet past the sampler
    late = study.ask()  # trial 1 gets grid point 1
    late_attrs = storage.get_trial(late._trial_id).system_attrs
    frozen = lambda: {t.number: t for t in storage.get_all_trials(sid)}  # noqa: E731
    assert grid_unsettled(frozen()[1], list(frozen().values())) == [0]
    assert grid_duplicate_of(frozen()[1], list(frozen().values())) is None  # why waiting matters
    storage.set_trial_system_attr(early, "search_space", late_attrs["search_space"])
    storage.set_trial_system_attr(early, "grid_id", late_attrs["grid_id"])  # trial 0's worker writes the same point
    assert grid_unsettled(frozen()[1], list(frozen().values())) == []
    assert grid_duplicate_of(frozen()[1], list(frozen().values())) == 0
    assert grid_duplicate_of(frozen()[0], list(frozen().values())) is None
    dead = storage.create_new_trial(sid)  # trial 2, its worker killed before the sampler: it holds nothing
    storage.set_trial_state_values(dead, optuna.trial.TrialState.FAIL)
    third = study.ask()
    assert grid_unsettled(frozen()[third.number], list(frozen().values())) == []  # a finished trial: never waited for
