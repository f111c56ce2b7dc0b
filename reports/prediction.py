"""Predict before you pay: a scale study's seed runs turned into reports.scaling's fitted, back-tested law, and the
answers users want from it, in words. One place computes it for the report's section, `report --json` ("scaling")
and `study.py predict`, so the three agree.

The runs: every COMPLETE trial of the scale study and of its seeds re-runs (the seeds_scale study of the same
comparison): (pretraining images, test top-1). Test top-1, not validation: the law predicts what the report
shows, and no choice is made on it (each run is one configuration at one size). The reference level is the
ImageNet-supervised linear probe of the same comparison, under the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from comparison import regimes
from reports import scaling
from reports.rows import StudyData, load_studies, number_attr
from reports.scale import data_fraction, scale_studies
from storage import schema

REFERENCE = "probe_imagenet"  # the row a curve is asked to reach: the ImageNet-supervised encoder, probed alike


def _comparison(study: StudyData) -> str:
    return str(study.user_attrs.get(schema.COMPARISON, ""))


def scale_runs(study: StudyData, studies: Sequence[StudyData]) -> list[dict[str, Any]]:
    """The seed runs of a scale curve: {"n", "top1", "study", "trial"} of every COMPLETE trial with both numbers,
    of the study and of its seeds re-runs (role seeds_scale, same comparison)."""
    sources = [study]
    if study.role == regimes.SCALE.role:
        seeds_role = regimes.SCALE.seeds_role
        sources += [s for s in studies if s.role == seeds_role and _comparison(s) == _comparison(study)]
    runs = []
    for source in sources:
        for trial in source.complete():
            n, top1 = number_attr(trial, schema.N_PRETRAIN_IMAGES), number_attr(trial, schema.TEST_TOP1)
            if n is not None and top1 is not None:
                runs.append({"n": n, "top1": top1, "study": source.name, "trial": trial.number})
    return sorted(runs, key=lambda r: (r["n"], r["study"], r["trial"]))


def _reference(study: StudyData, comparison: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    for row in comparison:
        if row["regime"] == REFERENCE and row.get("comparison", "") == _comparison(study) and row.get("test_top1"):
            return {"label": row["label"], "top1": row["test_top1"]}
    return None


def _has_scale_axis(study: StudyData) -> bool:
    """A scale study, or a SimCLR study whose trials span several data fractions."""
    if study.role == regimes.SCALE.role:
        return True
    return len({data_fraction(study, t) for t in study.trials} - {None}) > 1


def scaling_info(
    study: StudyData,
    studies: Sequence[StudyData],
    comparison: Sequence[dict[str, Any]],
    target: float | None = None,
) -> dict[str, Any]:
    """The fit of one scale curve: {"study", "comparison", "runs", "target", "reference", "fit" (reports.scaling),
    "lines" (the fit and its answers in words, `prediction_lines`)}."""
    runs = scale_runs(study, studies)
    reference = _reference(study, comparison)
    fit = scaling.fit_scaling(
        [(r["n"], r["top1"]) for r in runs], target=target, reference=reference and reference["top1"]
    )
    info = {
        "study": study.name,
        "comparison": _comparison(study),
        "runs": runs,
        "target": target,
        "reference": reference,
        "fit": fit,
    }
    info["lines"] = prediction_lines(info)
    return info


def scaling_rows(
    studies: Sequence[StudyData], comparison: Sequence[dict[str, Any]], target: float | None = None
) -> list[dict[str, Any]]:
    """`scaling_info` of every scale curve among `studies` (the report's section and its JSON "scaling")."""
    return [scaling_info(s, studies, comparison, target) for s in scale_studies(studies) if _has_scale_axis(s)]


def predict(storage, name: str, target: float | None = None) -> dict[str, Any]:
    """`study.py predict NAME`: the fit of study NAME's scale curve, with the reference row of its comparison."""
    from errors import UserError
    from reports.rows import comparisons

    studies = load_studies(storage)
    study = next((s for s in studies if s.name == name), None)
    if study is None:
        raise UserError(f"no study named {name!r} in the store")
    if study.objective != "simclr" or not _has_scale_axis(study):
        raise UserError(
            f"study {name!r} has no data-scale curve: predict takes a SimCLR study whose trials pretrain on several "
            "data fractions (compare's PREFIX-scale, or a grid over --param data_fraction=choice:...)"
        )
    same = [s for s in studies if _comparison(s) == _comparison(study)] if _comparison(study) else [study]
    return scaling_info(study, same, comparisons(same), target)


# ------------------------------------------------------------------------------------------------ in words


def _images(n: float | None) -> str:
    return "-" if n is None else f"{n:,.0f}"


def _level(answer: dict[str, Any]) -> str:
    return f"{answer['top1']:.1f}% [{answer['lo']:.1f}, {answer['hi']:.1f}]"


def _needed(what: str, answer: dict[str, Any] | None) -> str | None:
    return f"images to reach {what}: {answer['text']}" if answer else None


def prediction_lines(info: dict[str, Any]) -> list[str]:
    """The fit, its back-test and the answers as lines of text (what `predict` prints and the report shows)."""
    fit = info["fit"]
    head = f"{info['study']}: {len(info['runs'])} runs"
    if fit["status"] != "fit":
        return [f"{head}: {fit['message']}"]
    lines = [f"{head} at {fit['sizes']} sizes up to {_images(fit['largest'])} images", f"law: {fit['message']}"]
    lines.append(f"model: {fit['criterion']}")
    for test in fit["backtest"]:
        for p in test["points"]:
            verdict = "inside its band" if p["covered"] else "outside its band"
            verdict += "" if abs(p["error"]) <= p["tolerance"] else f", beyond the {p['tolerance']:.1f}-point tolerance"
            lines.append(
                f"back-test, fit on {test['fit_on']} sizes: at {_images(p['n'])} images predicted {p['predicted']:.1f}%"
                f" [{p['lo']:.1f}, {p['hi']:.1f}], measured {p['actual']:.1f}% ({p['error']:+.1f} points, {verdict})"
            )
    if not fit["backtest"]:
        lines.append("back-test: none (a refit needs 3 sizes after holding the largest out)")
    if not fit["answers_shown"]:
        lines.append(f"the law failed its back-test: {fit['backtest_note'].rstrip('.')}; no extrapolation is shown")
        return lines
    answers = fit["answers"]
    lines += [
        f"predicted at 2x ({_images(answers['at_2x']['n'])} images): {_level(answers['at_2x'])}",
        f"predicted at 10x ({_images(answers['at_10x']['n'])} images): {_level(answers['at_10x'])}",
    ]
    if info["target"] is not None:
        lines.append(_needed(f"{info['target']:g}%", answers.get("to_target")))
    if info["reference"]:
        reference = info["reference"]
        lines.append(_needed(f"{reference['label']} ({reference['top1']:.1f}%)", answers.get("to_reference")))
    return [line for line in lines if line]
