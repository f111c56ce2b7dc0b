"""The written report in a real browser: headless Chromium with the network off renders every figure offline.

Skips (with the reason) where Chromium is not installed; `.ci/run` installs Debian's `chromium`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest

import reports
from tests.reports import stores

CHROMIUM = next(
    (
        p
        for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
        if p and Path(p).exists()
    ),
    None,
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: apt-get install chromium"),
]
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-extensions",
        "--enable-unsafe-swiftshader",  # software WebGL for the parallel-coordinates lines (our own page)
        f"--user-data-dir={profile}",
        *OFFLINE,
        "--virtual-time-budget=10000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


class FigureSvgs(HTMLParser):
    """Per element id="figure-N": whether an <svg class="main-svg"> was drawn inside it; plus the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []  # (tag, figure id being inside)
        self.drawn: dict[str, bool] = {}
        self.tables: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        inside = self.stack[-1][1] if self.stack else None
        if (attrs.get("id") or "").startswith("figure-"):
            inside = attrs["id"]
            self.drawn.setdefault(inside, False)
        if tag == "svg" and inside and "main-svg" in (attrs.get("class") or "").split():
            self.drawn[inside] = True
        if tag == "table":
            self.tables.update((attrs.get("class") or "").split())
        if tag not in ("br", "img", "meta", "link", "input", "hr", "path", "rect", "line", "circle", "use", "image"):
            self.stack.append((tag, inside))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{root / 'studies.db'}"
    stores.fill_comparison(url)
    report = reports.build_report(url)
    return reports.write_html(report, root / "report.html"), report


def test_every_figure_draws_offline(page, tmp_path):
    path, report = page
    dom = chromium(path, tmp_path / "profile", "--dump-dom").stdout
    parsed = FigureSvgs()
    parsed.feed(dom)
    n_figures = path.read_text(encoding="utf-8").count('<div class="figure" id="figure-')
    assert n_figures >= 2 + 4 * 2  # comparison, scale, and at least two figures for each of four studies
    assert sorted(parsed.drawn) == sorted(f"figure-{i}" for i in range(n_figures))
    assert all(parsed.drawn.values()), [k for k, v in parsed.drawn.items() if not v]
    assert {"comparison", "scale", "trials"} <= parsed.tables
    text = "".join(parsed.text)
    assert f"Study {stores.EVIL}" in text  # shown as text: the parser decoded &lt;img ... back to the name
    assert "<img src=x" not in dom.replace("&lt;img src=x", "")
    assert "SimCLR -> linear probe" in text and "CUDA out of memory" in text


def test_screenshot(page, tmp_path):
    path, _ = page
    shot = tmp_path / "report.png"
    chromium(path, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1400,3000", "--hide-scrollbars")
    assert shot.exists() and shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


MEASURE = (
    '<script>window.addEventListener("load",function(){var d=document.createElement("p");d.id="measured";'
    'd.textContent="width "+document.documentElement.scrollWidth;document.body.appendChild(d);});</script>'
)


def test_long_missing_reason_wraps_within_the_page(tmp_path):
    """A regime missing for a long reason (paths and URLs, no spaces to break at) stays inside a 1400 px page."""
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    stores.fill_comparison(url)
    study = optuna.create_study(storage=url, study_name="offline", direction="maximize")
    reason = "could not run: weights " + "/a_rather_long_directory_name" * 12 + "/resnet18.pth are missing"
    study.set_user_attr("role", "probe_random")
    study.set_user_attr("error", reason)
    path = reports.write_html(reports.build_report(url), tmp_path / "report.html")
    measured = tmp_path / "measured.html"
    measured.write_text(path.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = chromium(measured, tmp_path / "profile", "--dump-dom", "--window-size=1400,2000").stdout
    assert "resnet18.pth are missing" in dom
    width = int(re.search(r'<p id="measured">width (\d+)</p>', dom)[1])
    assert width <= 1400, width
