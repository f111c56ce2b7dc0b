"""Accuracy against compute: each compared regime's test top-1 against what it cost, one point a regime.

A regime's cost is every trial of the studies behind its number: the study that selected it (its whole search,
pruned and failed trials too: they were paid for) and, for a representation this comparison trained, the study
that trained that encoder (SimCLR's search for the SimCLR rows, the same-data supervised search for the
CIFAR-10-supervised rows). ImageNet pretraining was done by torchvision: not counted, and the point says so.
Seeds and label-fraction re-runs give intervals and curves, not the number: not counted.

Two costs: the trials' stored wall seconds (this machine's, schema.SECONDS), and FLOPs from the images each trial
pushed through ResNet-18 at its input side (`resnet18_macs`, counted from the architecture): training images x
epochs x 3 (forward and backward) for the trained regimes and pretraining (SimCLR: two views an image), one
forward per image a probe extracts features from. Evaluation passes are left out of both FLOP counts alike.
The Pareto front: the points no other point beats on both accuracy and cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from comparison import regimes
from reports.rows import StudyData, number_attr
from storage import schema

# ResNet-18's stages: (channels, stride of the first block); two basic blocks each
_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))


def resnet18_macs(stem: str, side: int) -> float:
    """Multiply-accumulates of one forward pass of ResNet-18 (up to the pooled features) on a side x side image:
    the CIFAR stem (3x3 conv, no max-pool) or the ImageNet stem (7x7 stride-2 conv and a stride-2 max-pool)."""
    if stem == "cifar":
        macs, h, c = 3 * 3 * 3 * 64 * side * side, side, 64
    else:
        h = -(-side // 2)
        macs, h, c = 7 * 7 * 3 * 64 * h * h, -(-h // 2), 64
    for width, stride in _STAGES:
        out = -(-h // stride)
        macs += 9 * c * width * out * out + 9 * width * width * out * out  # block 1: two 3x3 convs
        if stride != 1 or c != width:
            macs += c * width * out * out  # its 1x1 projection shortcut
        macs += 2 * 9 * width * width * out * out  # block 2
        h, c = out, width
    return float(macs)


def _forward_flops(study: StudyData) -> float:
    """FLOPs (2 per MAC) of one forward pass of the study's network at its input side."""
    config = study.config
    imagenet = study.encoder == "imagenet"
    side = int(config.get("resolution", 224)) if imagenet else int(config.get("image_size", 32))
    return 2 * resnet18_macs("imagenet" if imagenet else "cifar", side)


def trial_flops(study: StudyData, trial) -> float:
    """FLOPs of one trial's training passes (see the module docstring); 0 where its attrs do not say."""
    forward = _forward_flops(study)
    images = number_attr(trial, schema.N_TRAIN_IMAGES) or 0.0
    seen = number_attr(trial, schema.IMAGES_SEEN)
    if seen is not None:  # pretraining (simclr, supervised_pretrain): its images, then its probe's features
        views = 2 if study.objective == "simclr" else 1
        return forward * (3 * views * seen + images)
    if study.objective == "linear_probe":
        return forward * images
    epochs = float({**study.config, **trial.params}.get("epochs", 0) or 0)
    return forward * 3 * epochs * images


def _study_cost(study: StudyData) -> tuple[float, float]:
    """(seconds, FLOPs) of every trial of a study that ran."""
    ran = [t for t in study.trials if t.state.name != "WAITING"]
    return sum(number_attr(t, schema.SECONDS) or 0.0 for t in ran), sum(trial_flops(study, t) for t in ran)


def compute_rows(studies: Sequence[StudyData], comparison: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per compared regime with a test top-1: its interval, seconds, FLOPs, the studies they sum over,
    and whether it is on the Pareto front by seconds ("pareto_seconds") and by FLOPs ("pareto_flops")."""
    points = []
    for row in comparison:
        regime = regimes.BY_ROLE.get(row["regime"])
        if regime is None or regime.check or row.get("test_top1") is None:
            continue
        prefix = row.get("comparison", "")
        behind = [
            s for s in studies if s.role == regime.role and str(s.user_attrs.get(schema.COMPARISON, "")) == prefix
        ]
        pretraining = regimes.ENCODER_STUDY.get(regime.encoder or "")
        if pretraining is not None:
            behind += [
                s
                for s in studies
                if s.role == pretraining.role and str(s.user_attrs.get(schema.COMPARISON, "")) == prefix
            ]
        costs = [_study_cost(s) for s in behind]
        points.append(
            {
                "regime": regime.role,
                "label": regime.label,
                "comparison": prefix,
                "test_top1": row["test_top1"],
                "test_top1_ci": row.get("test_top1_ci"),
                "seconds": sum(c[0] for c in costs),
                "flops": sum(c[1] for c in costs),
                "studies": [s.name for s in behind],
                "note": "ImageNet pretraining not counted: torchvision's weights"
                if regime.encoder == "imagenet"
                else "",
            }
        )
    for point in points:
        for key in ("seconds", "flops"):
            point[f"pareto_{key}"] = not any(_beats(other, point, key) for other in points if other is not point)
    return points


def _beats(a: dict[str, Any], b: dict[str, Any], cost: str) -> bool:
    """a is at least as accurate and as cheap (by `cost`) as b, and strictly better on one (same comparison)."""
    if a["comparison"] != b["comparison"]:
        return False
    no_worse = a["test_top1"] >= b["test_top1"] and a[cost] <= b[cost]
    return no_worse and (a["test_top1"] > b["test_top1"] or a[cost] < b[cost])
