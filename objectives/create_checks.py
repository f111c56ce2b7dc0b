"""What `create` checks about a study's encoder and feature cache before anything is written, so that a study
that cannot run is refused then, not at `optimize` (where the user must delete and create it again):

- an encoder file must load as one (torch.load with weights_only=True, the keys of our checkpoint format, weights
  that fit a ResNet-18): a corrupt or unsafe file is refused with the loader's reason;
- `best:STUDY` / `trial:STUDY:N` must name a study whose trials make encoders (a pretraining or supervised study,
  not a probe);
- the feature cache (cache_dir, else <data_dir>/features) must be writable, tested without creating it;
- `imagenet` weights not yet on this machine are only a warning: a worker on another machine may have them, or
  download them; `optimize` stops with the file's name and where to put it when it cannot.

torch is imported only for an encoder file or `imagenet`: the other checks keep `create` instant.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from errors import UserError
from objectives import registry
from objectives.space import parse_encoder
from storage import store


def check_encoder(storage, objective: str, config: dict[str, Any]) -> list[str]:
    """UserError for an encoder the study could never use; returns warnings (what only a worker can settle)."""
    if not registry.get(objective).takes_encoder or "encoder" not in config:
        return []
    text = str(config["encoder"])
    kind, ref, _ = parse_encoder(text)
    if kind == "path":
        from simclr.models import load_encoder

        load_encoder(ref)  # UserError: not a file of tensors, not our format, weights that do not fit
    elif kind == "imagenet":
        from simclr.models import imagenet_weights_file

        weights = imagenet_weights_file()
        if not weights.is_file():
            return [
                f"ImageNet weights {weights.name} are not in {weights.parent} on this machine: a worker downloads "
                "them at its first trial, or stops there if it cannot (put the file there to run offline)"
            ]
    elif kind in ("best", "trial") and storage is not None:
        source = store.study_spec(storage, ref)
        if not registry.get(source.objective).makes_encoders:
            makers = ", ".join(o.name for o in registry.REGISTRY.values() if o.makes_encoders)
            raise UserError(
                f"encoder {text!r}: study {ref!r} is a {source.objective} study, whose trials make no encoder "
                f"(encoders come from {makers} studies)"
            )
    return []


def check_cache_dir(objective: str, config: dict[str, Any]) -> None:
    """The feature cache of a study that caches features can be written: the directory, or the nearest one
    above it that exists (nothing is created here; a real write, as permission bits say nothing to root)."""
    if not registry.get(objective).takes_encoder or "data_dir" not in config:
        return
    given = str(config.get("cache_dir") or "")
    path = Path(given) if given else Path(str(config["data_dir"])) / "features"
    where = path.absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    fix = "use --set cache_dir=DIR"
    if not where.is_dir():
        raise UserError(f"feature cache {path}: {where} is not a directory; {fix}")
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"feature cache {path} is not writable ({e.strerror or type(e).__name__}); {fix}") from None
