"""Issue 42: landmark labels that carry HTML reach the report as text, and no script runs in its pages.

One tiny run whose landmarks carry hostile labels in the three formats users give (a 3D Slicer ``.mrk.json``
post-op file, a Slicer ``.fcsv`` pre-op file, and a second rater's CSV), rendered by the workflow itself;
the pages are then read as files and in Chromium.
"""

import csv
import html
import re
import subprocess

import pandas as pd
import pytest
from markupsafe import escape

from workflow_helpers import CHROMIUM, TINY, chromium_flags, run, snakemake_args, workdir
from landmarkflow.core.files import write_table
from landmarkflow.io.landmarks import points_of, read_landmarks
from landmarkflow.io.markups import write_markups
from landmarkflow.present.pages import CSP

PATIENT = "xss01"
#: one per demo landmark (1, 2, 3); each would change the page's title if it ran
LABELS = {
    "1": "<script>document.title='pwned-1'</script>",
    "2": "\"><img src=x onerror=\"document.title='pwned-2'\">",
    "3": "</td></tr></table><script>document.title='pwned-3'</script>",
}
RAW = ("<script>document.title", "<img src=x", "</td></tr></table><script>")


def _fcsv(path, labels, xyz_ras):
    """A 3D Slicer fiducial CSV (LPS, as Slicer 5 writes it), labels quoted by the CSV writer where needed."""
    with open(path, "w", newline="") as fh:
        fh.write("# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n"
                 "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n")
        writer = csv.writer(fh, lineterminator="\n")
        for k, (label, (x, y, z)) in enumerate(zip(labels, xyz_ras), start=1):
            writer.writerow([f"vtkMRMLMarkupsFiducialNode_{k}", -x, -y, z, 0, 0, 0, 1, 1, 1, 0, label, "", ""])


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """The demo patient made by the workflow, its three landmark files rewritten with hostile labels (same
    points), then the whole workflow (PIN and ANTs off, to stay short)."""
    wd = workdir(tmp_path_factory.mktemp("xss"), [PATIENT], overrides={**TINY, "pin": {"activate": False},
                                                                         "ants": {"activate": False}})
    demo = wd / "resources" / "demo" / PATIENT
    run([*snakemake_args(wd), "--cores", "2", f"resources/demo/{PATIENT}/truth.json"])
    labels = wd / "labels"
    labels.mkdir()
    post = read_landmarks(demo / "post_landmarks_expert.csv")
    pre = read_landmarks(demo / "pre_landmarks_expert.csv")
    rater = read_landmarks(demo / "pre_landmarks_expert2.csv")
    assert post["landmark"].tolist() == list(LABELS)
    write_markups(post.assign(landmark=post["landmark"].map(LABELS)), labels / "post.mrk.json")
    _fcsv(labels / "pre.fcsv", pre["landmark"].map(LABELS), points_of(pre))
    rater.assign(landmark=rater["landmark"].map(LABELS)).to_csv(labels / "rater.csv", index=False)
    manifest = pd.read_csv(wd / "config" / "cohort.tsv", sep="\t", dtype=str)
    files = {("post", "expert"): "../labels/post.mrk.json", ("pre", "expert"): "../labels/pre.fcsv",
             ("pre", "expert2"): "../labels/rater.csv"}
    for (tp, name), path in files.items():
        row = (manifest["timepoint"] == tp) & (manifest["kind"] == "landmarks") & (manifest["name"] == name)
        assert row.sum() == 1
        manifest.loc[row, "path"] = path
    write_table(manifest, wd / "config" / "cohort.tsv")
    run([*snakemake_args(wd), "--cores", "2"])
    return wd


@pytest.mark.e2e
@pytest.mark.slow
def test_hostile_labels_are_text_in_both_pages(hostile_run):
    cohort = hostile_run / "results" / "cohort"
    pred = pd.read_csv(cohort / "predictions.tsv", sep="\t", dtype=str)
    assert set(LABELS.values()) <= set(pred["label"])  # the labels travelled to the report's tables
    for page in (cohort / "report.html", cohort / "patients" / f"{PATIENT}.html"):
        text = page.read_text()
        for raw in RAW:
            assert raw not in text, f"{page.name}: {raw!r} unescaped"
        for label in LABELS.values():
            assert str(escape(label)) in text, f"{page.name}: {label!r} not shown as text"
        assert f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}">' in text
        assert len(re.findall(r"<script\b", text)) == 1  # the render check, nothing else


def _chromium(page, profile):
    res = subprocess.run([CHROMIUM, *chromium_flags(profile), "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _title(dom):
    return html.unescape(re.search(r"<title>(.*?)</title>", dom, re.S).group(1))


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_in_chromium_no_label_runs_and_the_policy_stops_an_injected_script(hostile_run, tmp_path):
    cohort = hostile_run / "results" / "cohort"
    for page, title in ((cohort / "report.html", "Landmark redetection report"),
                        (cohort / "patients" / f"{PATIENT}.html", f"{PATIENT}: landmark redetection")):
        dom = _chromium(page, tmp_path / "profile")
        assert _title(dom) == title, f"{page.name}: a label's script ran"
        assert "pwned" not in _title(dom)
        status = re.search(r'id="render-status"[^>]*data-images-ok="(\d+)"[^>]*data-images="(\d+)"[^>]*data-errors="(\d+)"', dom)
        assert status, "the render check (the one allowed script) did not run"
        assert status.group(3) == "0" and status.group(1) == status.group(2)
        for label in LABELS.values():  # shown as text: serialised escaped in the DOM, never as an element
            assert html.escape(label, quote=False) in dom
        assert not re.search(r"<img[^>]*\ssrc=\"x\"", dom) and not re.search(r"<[a-z]+\s[^>]*onerror=", dom)  # no such element
    # a script that got into a page some other way: the policy stops it; without the policy it runs (the check can fail)
    text = (cohort / "report.html").read_text()
    injected = text.replace("</h1>", "</h1><script>document.title='injected'</script>", 1)
    with_policy, without = tmp_path / "with.html", tmp_path / "without.html"
    with_policy.write_text(injected)
    without.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", injected))
    assert _title(_chromium(with_policy, tmp_path / "p2")) == "Landmark redetection report"
    assert _title(_chromium(without, tmp_path / "p3")) == "injected"
