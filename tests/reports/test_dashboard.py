"""The comparison note and the scale figure saved for optuna-dashboard; trials untouched, people's notes kept."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import optuna
import optuna_dashboard
import pytest
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects  # what the dashboard reads back

import reports
from reports import dashboard
from tests.helpers import REPO
from tests.reports import stores


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    stores.fill_comparison(url)
    return url


def trial_snapshot(storage):
    return {
        s.study_name: [(t.state, t.values, t.params, t.user_attrs) for t in storage.get_all_trials(s._study_id)]
        for s in storage.get_all_studies()
    }


def test_note_and_figure_are_saved_and_replaced(url):
    storage = optuna.storages.get_storage(url)
    probe = optuna.load_study(study_name="probe-simclr", storage=storage)
    optuna_dashboard.save_note(probe, "My own notes: rerun with more epochs.")
    before = trial_snapshot(storage)

    report = reports.build_report(storage)
    for _ in range(2):  # a second report replaces, never duplicates
        written = dashboard.save_to_dashboard(storage, report)

    regime_studies = ["probe-simclr", "imagenet-a", "imagenet-b", "probe-random", "scratch", "finetune-by-hand"]
    assert sorted(written["notes"]) == sorted(regime_studies)
    assert written["figures"] == ["simclr-scale"]
    note = optuna_dashboard.get_note(probe)
    assert note.startswith("My own notes: rerun with more epochs.\n\n" + dashboard.NOTE_START)
    assert note.count(dashboard.NOTE_START) == 1 and note.count(dashboard.NOTE_END) == 1
    (low, high), (gain_low, gain_high) = (stores.EXPECTED_COMPARISON[0][k] for k in ("test_top1_ci", "gain_top1_ci"))
    simclr = (
        f"| SimCLR \\-\\> linear probe | 42.00 \\[{low:.1f}, {high:.1f}\\] | 72.30 | "
        f"+13.50 \\[{gain_low:+.1f}, {gain_high:+.1f}\\] | 43.50 | probe\\-simclr \\#1 | 4 (2/1/1) |"
    )
    assert simclr in note
    assert "| ImageNet\\-supervised \\-\\> linear probe | 51.00 | 81.50 | +22.50 | 52.50 |" in note  # no per-image hits
    assert "val top\\-1\\: the final epoch\\'s" in note and "95\\% bootstrap interval" in note
    assert "missing: no complete trial\\; last failure \\(probe\\-random \\#1\\)\\: CUDA out of memory" in note
    assert optuna_dashboard.get_note(optuna.load_study(study_name="simclr-scale", storage=storage)) == ""

    scale_id = storage.get_study_id_from_name("simclr-scale")
    graphs = get_plotly_graph_objects(storage.get_study_system_attrs(scale_id))
    assert list(graphs) == [dashboard.SCALE_FIGURE_ID]
    figure = json.loads(graphs[dashboard.SCALE_FIGURE_ID])
    best = next(trace for trace in figure["data"] if trace["name"] == "best trial: val top-1")
    assert best["x"] == [5000, 25000, 50000] and best["y"] == [34.0, 40.0, 44.0]
    assert trial_snapshot(storage) == before  # system attrs of studies only; no trial changed


@pytest.mark.parametrize(
    "existing",
    ["", "mine", f"mine\n\n{dashboard.NOTE_START}\nold table\n{dashboard.NOTE_END}\nafter"],
)
def test_merge_note_keeps_other_text(existing):
    merged = dashboard.merge_note(existing, f"{dashboard.NOTE_START}\nnew\n{dashboard.NOTE_END}")
    assert merged.count("new") == 1 and "old table" not in merged
    for kept in ("mine", "after"):
        assert (kept in merged) == (kept in existing)


def test_md_text_is_literal():
    assert dashboard.md_text("<img src=x>|[a](javascript:b)") == ("\\<img src\\=x\\>\\|\\[a\\]\\(javascript\\:b\\)")


def test_a_busy_port_is_one_line_before_anything_listens(tmp_path):
    """Not bottle's "Listening on http://..." followed by an error: the port is tried first."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=url, study_name="s")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = subprocess.run(
            [sys.executable, str(REPO / "study.py"), "dashboard", "--port", str(port), "--storage", url],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == f"error: port {port} is in use on 127.0.0.1 (another dashboard?); choose another: --port N\n"
