"""The cohort report as a person sees it: rendered by headless Chromium."""

import re
import subprocess

import pytest

from workflow_helpers import CHROMIUM, chromium_flags


SECTIONS = ["summary", "errors", "predictions", "landmarks", "training", "qc", "radiomics", "benchmarks", "warnings", "config"]


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_report_renders_in_chromium(tiny_run, tmp_path):
    report = tiny_run / "results" / "cohort" / "report.html"
    flags = chromium_flags(tmp_path / "profile")
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    status = re.search(r'id="render-status"[^>]*data-images-ok="(\d+)"[^>]*data-images="(\d+)"[^>]*data-errors="(\d+)"', dom.stdout)
    assert status, "the page's load handler did not run: " + dom.stdout[-500:]
    ok, total, errors = map(int, status.groups())
    assert errors == 0, "JavaScript errors on the page"
    assert total >= 8 and ok == total, f"{ok} of {total} images decoded"
    # issue 43: at 1280 px no table runs past the page (the 12-column summary was cut); a wide one scrolls inside itself
    widest = re.search(r'data-widest-table="(\d+)"[^>]*data-page-width="(\d+)"', dom.stdout)
    assert widest and 1000 < int(widest.group(2)) <= 1280 and int(widest.group(1)) <= int(widest.group(2)), widest
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in dom.stdout, sid
    summary = dom.stdout[dom.stdout.index('<section id="summary">'):]
    first_row = re.search(r"<tbody>\s*<tr>\s*<td>([^<]+)</td>", summary)
    assert first_row and first_row.group(1) == "consensus", "the recommended landmark is the summary's first row"
    assert "agent_guided" in dom.stdout
    shot = tmp_path / "report.png"
    res = subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", report.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.stat().st_size > 20_000
    # the patient's page (issue 30), linked from the cohort page
    assert 'href="patients/tiny01.html"' in dom.stdout
    page = tiny_run / "results" / "cohort" / "patients" / "tiny01.html"
    pdom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert pdom.returncode == 0, pdom.stderr[-2000:]
    pstatus = re.search(r'id="render-status"[^>]*data-images-ok="(\d+)"[^>]*data-images="(\d+)"[^>]*data-errors="(\d+)"', pdom.stdout)
    assert pstatus and pstatus.group(3) == "0" and pstatus.group(1) == pstatus.group(2), pdom.stdout[-500:]
    recommended = pdom.stdout[pdom.stdout.index('<section id="recommended">'):pdom.stdout.index('<section id="flagged">')]
    assert "<th>uncertainty_mm</th>" in recommended and "<th>flag</th>" in recommended
    assert 'href="../report.html"' in pdom.stdout
