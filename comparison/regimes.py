"""The comparison's regimes, declared once: the ground floor of the comparison wing.

A regime is one row of the comparison table: a representation (SimCLR on CIFAR-10, ImageNet-supervised, random,
none) evaluated one way (linear probe, training from scratch, fine-tuning) on the probe data set's labels. Each is
declared here once, with the study that selects its configuration, the encoder it evaluates, the labels its number
rests on, its input resolution, the regime its gain is measured against, the budget knobs sizing may cut and its
seeds study. The pretraining studies that make the SimCLR encoders are declared beside them.

Everything else is derived from these two tables: the plan (comparison.plan), the cost model and sizing
(comparison.budget), the seeds studies (comparison.seeds), what a resumed run checks (comparison.resume), and the
report's rows and protocol lines (reports/). Plain data: no torch, no Optuna, no store, so the report (which must
start fast) reads it too.

Adding a regime: one entry in REGIMES (its objective must exist) plus its tests; see docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass

SIMCLR = "simclr"  # a regime's encoder: the best of this comparison's SimCLR pretraining (pinned at creation)
SUPERVISED = "supervised"  # ... the best of its same-data supervised pretraining (CIFAR-10 labels, SimCLR's images)
# how a regime evaluates its representation: what its gain over the baseline compares
LINEAR = "linear probe (frozen encoder)"
FINE_TUNED = "fine-tuning (all weights)"
FROM_SCRATCH = "training from scratch"
PROBE_KNOBS = (("probe_fraction", "probe_fraction"),)  # every regime trains or probes on the probe images


@dataclass(frozen=True)
class SameAs:
    """A regime's config value that is another key's value in the same study (the in-domain probe reads the
    pretraining set: `probe_data` = SameAs("pretrain_data"))."""

    key: str


@dataclass(frozen=True)
class Pretraining:
    """A study of the comparison that trains encoders: SimCLR's (the `simclr` objective), or the same-data
    supervised arm's (`supervised_pretrain`: the pretraining set's labels on the very images SimCLR pretrains on)."""

    suffix: str  # the study is PREFIX-<suffix>
    role: str  # its `role` study attr
    grid: bool  # a grid over data_fraction, one trial a point (the scale curve); else a search (TPE, pruned)
    trials: str  # the sizing knob of its trial budget ("" for the grid: one trial a point)
    objective: str = "simclr"
    makes: str = ""  # the encoder its best trial is to the regimes (SIMCLR, SUPERVISED); "" = none
    seeds: str = ""  # the seeds study re-running it with other seeds: PREFIX-seeds-<seeds>, role seeds_<seeds>
    tuned_by: str = ""  # the search whose best trial's parameters it runs with (set when it is created)
    # (config key, sizing knob) pairs: what sizing may cut in this study's config
    knobs: tuple[tuple[str, str], ...] = (
        ("epochs", "simclr_epochs"),
        ("data_fraction", "data_fraction"),
        *PROBE_KNOBS,  # its trials probe their encoders on the probe images
    )

    @property
    def seeds_role(self) -> str:
        return f"seeds_{self.seeds}" if self.seeds else ""


@dataclass(frozen=True)
class Regime:
    """One compared regime (a row of the comparison table)."""

    role: str  # the `role` study attr of the study that selects its configuration
    label: str  # the row's name in the report
    objective: str  # the objective of that study
    encoder: str | None  # the encoder evaluated: "simclr" (this comparison's best pretraining), "imagenet", "random"
    labels: str  # which labels its number rests on (the report's protocol line)
    missing: str  # what its study is, in words ("no <missing> in this store")
    evaluation: str = LINEAR  # how the representation is evaluated: what its gain over the baseline compares
    study: str = ""  # the study is PREFIX-<study>; "" = compare does not plan it (shown where a store has one)
    resolution: str = "image_size"  # the config key giving its input side
    baseline: str | None = "scratch"  # the regime its gain is measured against (None: it is the baseline)
    trials: str = "regime_trials"  # the sizing knob of its trial budget
    knobs: tuple[tuple[str, str], ...] = PROBE_KNOBS  # (config key, sizing knob) pairs sizing may cut
    seeds: str = ""  # its seeds study: PREFIX-seeds-<seeds>, role seeds_<seeds> ("" = none)
    seeds_objective: str = ""  # what that study runs ("" = the regime's objective)
    selected_by: str = ""  # the study whose best config the seeds study re-runs ("" = the regime's own study)
    label_curve: bool = True  # compare re-runs its selected configuration at fewer labels (comparison.labels)
    values: tuple[tuple[str, object], ...] = ()  # config values the regime sets over the preset
    check: str = ""  # a sanity row, not a compared one: what it checks (no gain; the report shows it apart)

    @property
    def seeds_role(self) -> str:
        return f"seeds_{self.seeds}" if self.seeds else ""

    @property
    def labels_role(self) -> str:
        return f"labels_{self.role}" if self.label_curve and self.study else ""

    def compares(self) -> str:
        """What its gain compares, in words ("" for the baseline and for a check)."""
        if self.baseline is None:
            return self.check
        return f"gain: {self.evaluation} vs {BY_ROLE[self.baseline].evaluation}"


HPARAMS = Pretraining(
    "hparams", "simclr_hparams", grid=False, trials="hparams_trials", makes=SIMCLR
)  # seeds: the probe's
# the scale curve at the configuration the search selected (the preset's where the search has no complete trial)
SCALE = Pretraining("scale", "simclr_scale", grid=True, trials="", seeds="scale", tuned_by=HPARAMS.suffix)
# labels vs no labels on equal data: the same images, the same trial budget as SimCLR's search, selected alike
LABELLED = Pretraining(
    "supervised-pretrain",
    "supervised_pretrain",
    grid=False,
    trials="hparams_trials",
    objective="supervised_pretrain",
    makes=SUPERVISED,
    knobs=(("epochs", "labelled_epochs"), ("data_fraction", "data_fraction"), *PROBE_KNOBS),
)
PRETRAINING: tuple[Pretraining, ...] = (HPARAMS, SCALE, LABELLED)  # run order: the search, the curve at its pick
ENCODER_STUDY: dict[str, Pretraining] = {p.makes: p for p in PRETRAINING if p.makes}  # encoder -> its study

_LINEAR = "CIFAR-100 labels for the linear layer only"
_ALL = "CIFAR-100 labels for all weights"
_FINETUNE_KNOBS = (("epochs", "finetune_epochs"), *PROBE_KNOBS)
# Rows grouped by representation (SimCLR, ImageNet-supervised, random, none) x evaluation (linear, fine-tuned),
# then the checks (rows that are not compared: the in-domain probe).
REGIMES: tuple[Regime, ...] = (
    Regime(
        "probe_simclr",
        "SimCLR -> linear probe",
        "linear_probe",
        encoder=SIMCLR,
        labels=f"{_LINEAR} (pretraining: none)",
        missing="linear-probe study of a SimCLR encoder",
        study="probe-simclr",
        seeds="simclr",
        seeds_objective="simclr",  # each seed pretrains anew and probes its own encoder
        selected_by=HPARAMS.suffix,
    ),
    Regime(
        "finetune",
        "SimCLR -> fine-tuned",
        "finetune",
        encoder=SIMCLR,
        labels=f"{_ALL} (pretraining: none)",
        missing="fine-tuning study of a SimCLR encoder",
        study="finetune-simclr",
        evaluation=FINE_TUNED,
        knobs=_FINETUNE_KNOBS,
        seeds="finetune",  # the selected SimCLR encoder fine-tuned with other seeds
    ),
    Regime(
        "probe_supervised",
        "CIFAR-10-supervised -> linear probe",
        "linear_probe",
        encoder=SUPERVISED,
        labels=f"{_LINEAR} (pretraining: CIFAR-10 labels on SimCLR's images)",
        missing="linear-probe study of the same-data supervised encoder",
        study="probe-supervised",
        seeds="supervised",
        seeds_objective="supervised_pretrain",  # each seed trains anew on the labels and probes its own encoder
        selected_by=LABELLED.suffix,
    ),
    Regime(
        "finetune_supervised",
        "CIFAR-10-supervised -> fine-tuned",
        "finetune",
        encoder=SUPERVISED,
        labels=f"{_ALL} (pretraining: CIFAR-10 labels on SimCLR's images)",
        missing="fine-tuning study of the same-data supervised encoder",
        study="finetune-supervised",
        evaluation=FINE_TUNED,
        knobs=_FINETUNE_KNOBS,
        seeds="finetune_supervised",
    ),
    Regime(
        "probe_imagenet",
        "ImageNet-supervised -> linear probe",
        "linear_probe",
        encoder="imagenet",
        labels=f"{_LINEAR} (pretraining: ImageNet-1k labels)",
        missing="ImageNet-supervised probe study",
        study="probe-imagenet",
        resolution="resolution",  # the 7x7-stem encoder at the configured input size
        seeds="probe_imagenet",
    ),
    Regime(
        "finetune_imagenet",
        "ImageNet-supervised -> fine-tuned",
        "finetune",
        encoder="imagenet",
        labels=f"{_ALL} (pretraining: ImageNet-1k labels)",
        missing="fine-tuning study of the ImageNet-supervised encoder",
        study="finetune-imagenet",
        resolution="resolution",
        evaluation=FINE_TUNED,
        knobs=_FINETUNE_KNOBS,
        seeds="finetune_imagenet",
    ),
    Regime(
        "probe_random",
        "random encoder -> linear probe",
        "linear_probe",
        encoder="random",
        labels=f"{_LINEAR} (no pretraining)",
        missing="random-encoder probe study",
        study="probe-random",
        seeds="probe_random",
    ),
    Regime(
        "scratch",
        "from scratch (supervised)",
        "supervised",
        encoder=None,
        labels=_ALL,
        missing="from-scratch supervised study",
        study="scratch",
        evaluation=FROM_SCRATCH,
        baseline=None,
        knobs=(("epochs", "supervised_epochs"), *PROBE_KNOBS),
        seeds="scratch",
    ),
    Regime(
        "probe_simclr_in_domain",
        "SimCLR -> linear probe on CIFAR-10 (in-domain check)",
        "linear_probe",
        encoder=SIMCLR,
        labels="CIFAR-10 labels for the linear layer only (pretraining: none)",
        missing="in-domain (CIFAR-10) probe study of the SimCLR encoder",
        study="probe-simclr-cifar10",
        baseline=None,
        label_curve=False,
        values=(("probe_data", SameAs("pretrain_data")),),
        check="in-domain check: hold it against the public CIFAR-10 linear-probe numbers (ResNet-18 after 1,000 "
        "epochs: around 91% in google-research/simclr, 90.7% in solo-learn)",
    ),
)

BY_ROLE: dict[str, Regime] = {regime.role: regime for regime in REGIMES}
BASELINE = next(regime.role for regime in REGIMES if regime.baseline is None and not regime.check)
CHECKS: tuple[str, ...] = tuple(regime.role for regime in REGIMES if regime.check)  # rows outside the comparison
PLANNED: tuple[Regime, ...] = tuple(regime for regime in REGIMES if regime.study)  # what compare creates
SEEDED: tuple[Regime, ...] = tuple(regime for regime in PLANNED if regime.seeds)
LABEL_CURVED: tuple[Regime, ...] = tuple(regime for regime in PLANNED if regime.labels_role)
# every role a study of a comparison can play (`study.py create --role` takes these too)
ROLES: tuple[str, ...] = (
    *(p.role for p in PRETRAINING),
    *BY_ROLE,
    *(regime.seeds_role for regime in SEEDED),
    *(regime.labels_role for regime in LABEL_CURVED),
    *(p.seeds_role for p in PRETRAINING if p.seeds),
)
PRETRAINING_ROLES: tuple[str, ...] = tuple(p.role for p in PRETRAINING)


def regime_of(objective: str, encoder: str) -> str | None:
    """The regime a study without a `role` attr plays, guessed from its objective and encoder: a named encoder
    ("imagenet", "random") picks the regime evaluating it, any other (a SimCLR checkpoint) the SimCLR one."""
    candidates = [regime for regime in REGIMES if regime.objective == objective]
    for regime in candidates:
        if regime.encoder == encoder:
            return regime.role
    fallback = [regime for regime in candidates if regime.encoder in (SIMCLR, None)]
    return fallback[0].role if fallback else None


def needs(role: str) -> tuple[str, ...]:
    """The studies (PREFIX-<suffix>) a study of `role` waits for: what it reads from them (the encoder it evaluates,
    the configuration it runs again, the parameters it is tuned with) is final only once they have used their
    whole budget. The pretraining studies and the regimes without a SimCLR or same-data encoder need nothing."""
    for p in PRETRAINING:
        if role == p.role:
            return (p.tuned_by,) if p.tuned_by else ()
        if role == p.seeds_role:
            return (p.suffix,)
    if role in BY_ROLE:
        encoder = BY_ROLE[role].encoder
        return (ENCODER_STUDY[encoder].suffix,) if encoder in ENCODER_STUDY else ()
    for regime in PLANNED:
        if role == regime.seeds_role:  # its selected configuration (and, for SimCLR's, the tuned probe settings)
            return tuple(dict.fromkeys(s for s in (regime.selected_by, regime.study) if s))
        if role == regime.labels_role:
            return (regime.study,)
    return ()


def study_roles(prefix: str) -> dict[str, str]:
    """Every study a comparison PREFIX can hold -> its role: the planned ones, then the seeds and labels studies."""
    out = {f"{prefix}-{p.suffix}": p.role for p in PRETRAINING}
    out |= {f"{prefix}-{regime.study}": regime.role for regime in PLANNED}
    out |= {f"{prefix}-seeds-{regime.seeds}": regime.seeds_role for regime in SEEDED}
    out |= {f"{prefix}-seeds-{p.seeds}": p.seeds_role for p in PRETRAINING if p.seeds}
    out |= {f"{prefix}-labels-{regime.study}": regime.labels_role for regime in LABEL_CURVED}
    return out


def dependencies(prefix: str) -> dict[str, list[str]]:
    """Study -> the studies it waits for (`needs`), for every study a comparison PREFIX can hold."""
    return {name: [f"{prefix}-{s}" for s in needs(role)] for name, role in study_roles(prefix).items()}
