"""The cohort report and the patient pages (landmarkflow.present.report) and the HTML they are rendered with
(landmarkflow.present.pages)."""

import numpy as np
import pandas as pd
import pytest

from landmarkflow.evaluate import metrics
from landmarkflow.io.landmarks import landmarks_frame, points_of, read_landmarks, write_landmarks
from landmarkflow.present import pages
from test_metrics import _inputs, _outputs, _results


HOSTILE = "</td></tr></table><script>alert(1)</script>\"><img src=x onerror=alert(2)>"


def test_every_value_is_escaped_in_every_block():
    """Issue 42: a hostile string in every place a value can go comes out as text; the one script is the render check."""
    import re

    df = pd.DataFrame({HOSTILE: [HOSTILE, 1.23456, np.nan], "n": [1, 2, 3]})
    section = pages.Section(HOSTILE, HOSTILE, [
        pages.note(HOSTILE, pages.Code(HOSTILE), pages.Link(HOSTILE, HOSTILE)), pages.warn(HOSTILE), pages.Heading(HOSTILE),
        pages.table(df), pages.Details(HOSTILE, [pages.Pre(HOSTILE), pages.table(df)]),
        pages.Figure("data:image/png;base64,AAAA", HOSTILE, HOSTILE)])
    text = pages.render_page(HOSTILE, HOSTILE, HOSTILE, [section], before=[pages.note(HOSTILE)])
    assert "<script>alert" not in text and "<img src=x" not in text and "</td></tr></table><script>" not in text
    assert text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 14
    assert len(re.findall(r"<script\b", text)) == 1 and len(re.findall(r"<img\b", text)) == 1
    assert "<td>1.23</td>" in text and "<td></td>" in text  # floats at 2 decimals, missing values empty
    assert f'content="{pages.CSP}"'.replace("'", "&#39;") in text


def test_a_figure_is_a_data_uri_and_nothing_else():
    for src in ("javascript:alert(1)", "https://example.org/x.png", "file:///etc/passwd", "data:text/html;base64,AAAA"):
        with pytest.raises(ValueError, match="data:image/png;base64"):
            pages.Figure(src, "x")


def test_the_policy_allows_exactly_the_pages_own_script_and_style():
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(pages.CHECK_JS.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in pages.CSP and "default-src 'none'" in pages.CSP
    assert "unsafe-inline" not in pages.CSP and "img-src data:;" in pages.CSP
    text = pages.render_page("t", "h", "s", [])
    assert f"<script>{pages.CHECK_JS}</script>" in text and f"<style>{pages.CSS}</style>" in text  # byte for byte: the hashes hold


def test_evaluate_cohort_and_report_on_a_mixed_cohort(small_cohort, tmp_path):
    """One patient with pre-op ground truth, one without: errors over the first, predictions of both."""
    from landmarkflow.present import report
    from landmarkflow.cohort.manifest import load_manifest

    import shutil

    manifest, folder = small_cohort
    shutil.copytree(folder / "p1", folder / "p2")
    rows = [line for line in manifest.read_text().splitlines()[1:] if "pre_lm.csv" not in line]
    with manifest.open("a") as f:
        f.write("".join(line.replace("P1\t", "P2\t", 1).replace("p1/", "p2/") + "\n" for line in rows))
    m = load_manifest(manifest)
    assert m.patients == ["P1", "P2"]
    files = _results(tmp_path, m)
    out = _outputs(tmp_path)
    metrics.evaluate_cohort(m, files, out["errors"], out["summary"], out["predictions"], (), (), out["rigid"],
                            out["residuals"], out_check=out["check"])
    err = pd.read_csv(out["errors"], sep="\t")
    assert set(err["patient"]) == {"P1"} and len(err) == 2 * 3
    s = pd.read_csv(out["summary"], sep="\t").set_index("method")
    assert s.loc["ants_syn", "n"] == 2 and s.loc["ants_syn", "landmarks"] == 4
    pred = pd.read_csv(out["predictions"], sep="\t")
    assert set(pred["patient"]) == {"P1", "P2"}
    html = tmp_path / "report.html"
    report.build_report(m, {"seed": 1}, _inputs(out, files), html, tmp_path / "figs")
    text = html.read_text()
    assert "Pre-operative ground truth for 1 of 2 patients" in text and "P2 count in the columns" in text
    assert "Landmarks to check first" in text and "Errors per method" in text


def _evaluated_without_truth(small_cohort, tmp_path):
    """The small cohort without its pre-op landmarks, evaluated: (manifest, result files, cohort tables)."""
    from landmarkflow.cohort.manifest import load_manifest

    manifest, _ = small_cohort
    manifest.write_text("".join(line for line in manifest.read_text().splitlines(True) if "pre_lm.csv" not in line))
    m = load_manifest(manifest)
    files = _results(tmp_path, m)
    out = _outputs(tmp_path)
    metrics.evaluate_cohort(m, files, out["errors"], out["summary"], out["predictions"], out_check=out["check"])
    return m, files, out


def test_report_says_plainly_that_there_is_no_ground_truth(small_cohort, tmp_path):
    from landmarkflow.present import report

    m, files, out = _evaluated_without_truth(small_cohort, tmp_path)
    html = tmp_path / "report.html"
    report.build_report(m, {"seed": 1}, _inputs(out, files), html, tmp_path / "figs")
    text = html.read_text()
    assert "No pre-operative ground truth" in text and "median_disagreement_mm" in text
    assert "Errors per method" not in text  # no error figures without errors
    assert "<th>mean_mm</th>" not in text  # no empty error columns


def test_a_page_per_patient_with_the_recommended_and_flagged_landmarks_first(small_cohort, tmp_path, monkeypatch):
    """Issue 30: beside the cohort report, a page per patient: the consensus with its uncertainty and flag first,
    the flagged landmarks named; the cohort page links to them, and above LARGE_COHORT patients it no longer
    embeds every landmark's views."""
    import shutil

    from landmarkflow.cohort.manifest import load_manifest
    from landmarkflow.present import report

    manifest, folder = small_cohort
    shutil.copytree(folder / "p1", folder / "p2")
    rows = manifest.read_text().splitlines()[1:]
    with manifest.open("a") as f:
        f.write("".join(line.replace("P1\t", "P2\t", 1).replace("p1/", "p2/") + "\n" for line in rows))
    m = load_manifest(manifest)
    files = _results(tmp_path, m)
    for patient, flags in (("P1", [0, 1]), ("P2", [0, 0])):
        ants = read_landmarks(tmp_path / "results" / patient / "landmarks" / "ants_syn.csv")
        cons = landmarks_frame(ants["landmark"], points_of(ants), uncertainty_mm=[0.4, 2.5], flag=flags,
                               rule=["agreement", "disagreement"], methods=["ants_syn+svf", "ants_syn"])
        write_landmarks(cons, tmp_path / "results" / patient / "landmarks" / "consensus.csv")
        files.append(tmp_path / "results" / patient / "landmarks" / "consensus.csv")
    out = _outputs(tmp_path)
    metrics.evaluate_cohort(m, files, out["errors"], out["summary"], out["predictions"], (), (), out["rigid"],
                            out["residuals"], out_check=out["check"])
    html, pages = tmp_path / "cohort" / "report.html", tmp_path / "cohort" / "patients"
    report.build_report(m, {"seed": 1}, _inputs(out, files), html, tmp_path / "figs", pages)
    assert sorted(p.name for p in pages.iterdir()) == ["P1.html", "P2.html"]
    text = html.read_text()
    assert '<a href="patients/P1.html">P1</a>' in text and '<a href="patients/P2.html">P2</a>' in text
    p1 = (pages / "P1.html").read_text()
    assert p1.index("Recommended landmarks") < p1.index("flagged by the consensus") < p1.index("Every method")
    assert "<th>uncertainty_mm</th>" in p1 and "1 landmark(s): 2" in p1 and 'href="../report.html"' in p1
    assert "Landmarks flagged by the consensus (check them by eye)</h2><p class=\"note\">none" in (pages / "P2.html").read_text()
    monkeypatch.setattr(report, "LARGE_COHORT", 1)
    report.build_report(m, {"seed": 1}, _inputs(out, files), html, tmp_path / "figs", pages)
    assert "every landmark&#39;s views are on the patient pages" in html.read_text()  # (escaped, as all text)


def test_the_differential_changes_are_shown_without_ground_truth(small_cohort, tmp_path):
    """Issue 43: without ground truth the radiomics section shows the consensus's changes: a heatmap and, per
    landmark, the largest changes its uncertainty cannot explain (a smaller one is left out)."""
    from landmarkflow.evaluate import radiomics
    from landmarkflow.present import report

    m, files, out = _evaluated_without_truth(small_cohort, tmp_path)
    rows = []
    for lm, delta in (("1", 2.0), ("2", -0.5)):
        for feature, spread in (("original_firstorder_Mean", 0.1), ("original_glcm_Contrast", 5.0), ("original_glcm_Idm", np.nan)):
            rows.append({"patient": "P1", "landmark": lm, "method": "consensus", "modality": "t1", "radius_mm": 5.0,
                         "feature": feature, "pre": 1.0 + float(lm), "post": 1.0 + float(lm) + delta, "delta": delta,
                         "pre_spread": spread})
    changes = radiomics.changes(pd.DataFrame(rows))
    assert changes["distinguishable"].tolist()[:2] == [1, 0]  # |2.0| > 0.1; |2.0| < 5.0
    (tmp_path / "rad").mkdir()
    changes.to_csv(tmp_path / "rad" / "changes.tsv", sep="\t", index=False)
    pd.DataFrame(columns=["method", "modality", "radius_mm", "feature_class", "features", "median_deviation"]).to_csv(
        tmp_path / "rad" / "summary.tsv", sep="\t", index=False)
    inputs = _inputs(out, files)
    inputs.radiomics_summary, inputs.radiomics_changes = tmp_path / "rad" / "summary.tsv", tmp_path / "rad" / "changes.tsv"
    report.build_report(m, {"seed": 1}, inputs, tmp_path / "report.html", tmp_path / "figs")
    text = (tmp_path / "report.html").read_text()
    section = text[text.index('<section id="radiomics">'):text.index('<section id="benchmarks">')]
    assert "<h3>P1 landmark 1</h3>" in section and "<h3>P1 landmark 2</h3>" in section
    assert "1 of 2 changes are larger than the landmark" in section  # Idm: spread unknown, not counted
    assert section.count("original_firstorder_Mean") == 2 and "original_glcm_Contrast" not in section  # left out: below its spread
    assert 'alt="differential radiomics: landmarks against feature classes"' in section
    assert (tmp_path / "figs" / "radiomics_changes.png").stat().st_size > 5_000
    assert "No pre-operative ground truth: the features at the redetected positions are not compared" in section


def test_orientation_letters_follow_the_grid():
    """Issue 43: every slice carries L/R, A/P, S/I at its edges, read from the grid (a flipped or permuted one too)."""
    from landmarkflow.present.figures import orientation_letters

    ras = np.diag([1.0, 1.0, 1.0, 1.0])
    assert orientation_letters(ras, (0, 1)) == (("L", "R"), ("P", "A"))  # axial: right is R, up is A
    assert orientation_letters(ras, (0, 2)) == (("L", "R"), ("I", "S"))  # coronal
    assert orientation_letters(ras, (1, 2)) == (("P", "A"), ("I", "S"))  # sagittal
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert orientation_letters(lps, (0, 1)) == (("R", "L"), ("A", "P"))
    permuted = np.array([[0, 0, 2.0, 0], [1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])  # i: A, j: I, k: R
    assert orientation_letters(permuted, (0, 1)) == (("P", "A"), ("S", "I"))


def test_the_summary_speaks_plainly_and_explains_its_columns(small_cohort, tmp_path):
    from landmarkflow.cohort.manifest import load_manifest
    from landmarkflow.present import report

    manifest, _ = small_cohort
    m = load_manifest(manifest)
    files = _results(tmp_path, m)
    out = _outputs(tmp_path)
    metrics.evaluate_cohort(m, files, out["errors"], out["summary"], out["predictions"], out_check=out["check"])
    report.build_report(m, {"seed": 1}, _inputs(out, files), tmp_path / "report.html", tmp_path / "figs", tmp_path / "patients")
    text = (tmp_path / "report.html").read_text()
    assert text.index('<section id="patients">') < text.index('<section id="summary">')  # the patient pages first
    summary = text[text.index('<section id="summary">'):]
    assert "<th>mean error (mm)</th>" in summary and "<th>mean_mm</th>" not in summary
    assert "<summary>What the columns mean</summary>" in summary
    assert "<td>share improved</td><td>share of landmarks whose error is below their initial error</td>" in summary
