"""Creating a study: the checks `create` can make before anything is written (the name, the data directory,
the encoder's study and trial; the encoder's file and source, the feature cache: create_checks.py), what a probe
inherits from the study whose encoder it probes, and the study's attrs (its spec and provenance). No torch here
unless the encoder is a file or `imagenet`: `create` answers in a fraction of a second."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna

from errors import StudyExists, UserError
from objectives import build_spec, parse_sets, registry
from objectives.create_checks import check_cache_dir, check_encoder
from objectives.provenance import provenance
from objectives.space import parse_encoder
from simclr.config import DataConfig
from storage import open_artifacts, open_storage, schema, store, store_exists, study_names

ENV_DATA = "STUDY_DATA"  # the data directory of new studies when --data-dir is not given
DATA_KEYS = tuple(DataConfig.__dataclass_fields__)  # what a probe takes from the study whose encoder it probes


def check_name(name: str) -> None:
    if not name.strip() or len(name) > 500 or not name.isprintable():
        raise UserError(f"study name {name!r}: use 1-500 printable characters")


def default_name(objective: str, taken: set[str]) -> str:
    base = f"{objective}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def data_dir_default(data_dir: str | None) -> str | None:
    """--data-dir, else $STUDY_DATA, else None (the config's default, ./data, or an inherited one)."""
    return data_dir or os.environ.get(ENV_DATA) or None


def check_data(config: dict[str, Any]) -> None:
    """The data a study will read can be found: `data_dir` exists, or `download` will create it in an existing
    directory; a folder: dataset's PATH exists. (A typo'd data_dir would otherwise fail at optimize, after
    being created wherever it pointed.)"""
    data_dir = Path(str(config["data_dir"]))
    if not data_dir.is_dir():
        where = data_dir.resolve().parent
        if data_dir.exists():
            raise UserError(f"data_dir {data_dir} is not a directory (--data-dir DIR or --set data_dir=DIR)")
        if not config["download"] or not where.is_dir():
            raise UserError(
                f"data_dir {data_dir} does not exist{'' if config['download'] else ' and download=false'}; "
                "give the directory holding the CIFAR archives with --data-dir DIR (or $STUDY_DATA)"
            )
    for key in ("pretrain_data", "probe_data"):
        value = str(config.get(key, ""))
        if value.startswith("folder:") and not Path(value[len("folder:") :]).is_dir():
            raise UserError(f"{key}={value}: no such directory")


def chosen_trial(study: optuna.Study, number: int | None, what: str = "") -> optuna.trial.FrozenTrial:
    """Trial `number` of a study, or its best (in the study's direction); UserError when there is no such trial or
    it is not COMPLETE. `what` prefixes the message (e.g. "encoder 'best:ssl': ")."""
    name = study.study_name
    if number is None:
        try:
            return study.best_trial
        except ValueError:
            raise UserError(f"{what}study {name!r} has no completed trial yet (optimize it first)") from None
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise UserError(f"{what}study {name!r} has no trial {number}")
    if found[0].state != optuna.trial.TrialState.COMPLETE:
        raise UserError(f"{what}trial {number} of {name!r} is {found[0].state.name}, not COMPLETE")
    return found[0]


def encoder_trial(storage: optuna.storages.BaseStorage | None, text: str) -> optuna.trial.FrozenTrial | None:
    """The COMPLETE trial a `best:STUDY` / `trial:STUDY:NUMBER` encoder names (None for the other kinds);
    UserError when the study or trial is not there, or the trial is not COMPLETE."""
    kind, ref, number = parse_encoder(text)
    if kind not in ("best", "trial"):
        return None
    if storage is None:
        raise UserError(f"encoder {text!r} names a study, but no store was given")
    return chosen_trial(store.load_study(storage, ref), number, f"encoder {text!r}: ")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pin_encoder(storage: optuna.storages.BaseStorage, study: optuna.Study, artifacts) -> int | None:
    """Resolve a study's `best:STUDY` / `trial:STUDY:N` encoder once and store which trial it is and the sha256
    of its checkpoint, so that every worker, today or after a resumed `compare` with a larger budget, probes the
    same weights (a later, better trial of STUDY does not change a probe study's encoder). Does nothing when
    already pinned or not resolvable yet (no complete trial: the first worker that can resolve it pins it).
    Returns the pinned trial number."""
    attrs = study.user_attrs
    encoder = str(attrs.get(schema.ENCODER) or "")
    if schema.ENCODER_TRIAL in attrs or not encoder or parse_encoder(encoder)[0] not in ("best", "trial"):
        return attrs.get(schema.ENCODER_TRIAL)
    try:
        trial = encoder_trial(storage, encoder)
    except UserError:
        return None
    assert trial is not None
    study.set_user_attr(schema.ENCODER_TRIAL, trial.number)
    artifact_id, base = trial.user_attrs.get(schema.CHECKPOINT), getattr(artifacts, "base_path", None)
    if artifact_id and base is not None and (Path(base) / artifact_id).is_file():
        study.set_user_attr(schema.ENCODER_SHA256, file_sha256(Path(base) / artifact_id))
    return trial.number


def _inherited(storage, encoder: str | None) -> tuple[str, dict[str, Any]]:
    """(preset, data settings) of the study whose encoder a probe or fine-tuning study takes ("", {} else)."""
    if encoder is None or parse_encoder(encoder)[0] not in ("best", "trial"):
        return "", {}
    if storage is None:
        raise UserError(
            f"encoder {encoder!r}: study {parse_encoder(encoder)[1]!r} not found (the store does not exist yet)"
        )
    encoder_trial(storage, encoder)  # the study and a COMPLETE trial exist
    try:
        source = store.study_spec(storage, parse_encoder(encoder)[1])
    except UserError as e:  # not a study of ours (encoder_trial found it)
        raise UserError(f"encoder {encoder!r}: {e}") from None
    return source.preset, {k: v for k, v in source.config.items() if k in DATA_KEYS}


def new_study(
    url: str,
    name: str | None,
    objective: str,
    *,
    preset: str | None = None,
    sets: Sequence[str] = (),
    data_dir: str | None = None,
    artifacts_dir: str | None = None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
    **spec_args: Any,
) -> str:
    """Create a study in the store at `url` (created if missing) and return its name; nothing is written when a
    check fails (objectives.create_checks: what can be checked before a worker runs; `say` gets the warnings
    about what only a worker can settle). A study whose encoder is `best:STUDY` or `trial:STUDY:N` takes that
    study's preset and data settings unless told otherwise (--preset, --data-dir, --set)."""
    if name is not None:
        check_name(name)
    try:
        storage = open_storage(url) if store_exists(url) else None
    except UserError:  # a server database without Optuna's tables yet: created below, after the checks
        storage = None
    fixed = parse_sets(objective, sets)  # the --set texts, parsed once
    encoder = fixed.get("encoder")
    if encoder is not None:
        kind, ref, _ = parse_encoder(encoder)
        if kind == "path" and not os.path.isfile(ref):
            raise UserError(f"encoder {ref!r}: no such checkpoint file")
    inherited_preset, base = _inherited(storage, encoder)
    data_dir = data_dir_default(data_dir)
    if data_dir is not None:
        base["data_dir"] = data_dir
    spec = build_spec(objective, preset=preset or inherited_preset or None, values=fixed, base=base, **spec_args)
    check_data(spec.config)
    check_cache_dir(spec.objective, spec.config)
    cautions = check_encoder(storage, spec.objective, spec.config)
    storage = storage or open_storage(url, create=True)
    names = set(study_names(storage))
    name = name or default_name(spec.objective, names)
    if name in names:
        raise UserError(f"a study named {name!r} already exists (delete it first, or pick another --name)")
    study = create_study(storage, name, spec)
    pin_encoder(storage, study, open_artifacts(url, artifacts_dir, create=False))
    for caution in cautions:  # once nothing can refuse the study
        say(f"warning: {caution}")
    return name


def create_study(storage: optuna.storages.BaseStorage, name: str, spec: schema.StudySpec) -> optuna.Study:
    """A new study holding `spec` in its attrs (UserError if the name is taken); nothing is left on failure."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line; restored after
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=schema.DIRECTION)
    except optuna.exceptions.DuplicatedStudyError:
        raise StudyExists(f"a study named {name!r} already exists") from None
    finally:
        optuna.logging.set_verbosity(verbosity)
    try:
        schema.write_spec(study, spec)
        study.set_user_attr(schema.PROVENANCE, json.dumps(provenance(), sort_keys=True))
        name_metric(study, spec.objective)
    except BaseException:
        optuna.delete_study(study_name=name, storage=storage)
        raise
    return study


def name_metric(study: optuna.Study, objective: str) -> None:
    """Name the study's value after what `objective` returns (ObjectiveInfo.metric), for optuna-dashboard, which
    otherwise labels it "Objective 0". Writes only when the name differs: a study created before names were set
    gets its name from its next `optimize` (objectives.run.run_study)."""
    names = [registry.get(objective).metric]
    if study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # "experimental" since 3.2
            study.set_metric_names(names)


def dependents(storage: optuna.storages.BaseStorage, name: str) -> list[str]:
    """The studies whose encoder is a trial of study `name` (best:NAME or trial:NAME:N): deleting `name` takes
    their encoder's checkpoint away."""
    found = []
    for study in storage.get_all_studies():
        encoder = str(study.user_attrs.get(schema.ENCODER) or "")
        kind, ref, _ = parse_encoder(encoder) if encoder else ("", "", None)
        if kind in ("best", "trial") and ref == name and study.study_name != name:
            found.append(study.study_name)
    return found


def delete(storage: optuna.storages.BaseStorage, name: str, artifacts, *, force: bool = False) -> int:
    """Delete study `name` and its artifacts (the number of files removed); UserError, deleting nothing, when
    other studies probe one of its encoders, unless `force`."""
    using = dependents(storage, name)
    if using and not force:
        raise UserError(f"studies {', '.join(using)} probe an encoder of {name!r}; delete them first, or use --force")
    return store.delete_study(storage, name, artifacts)
