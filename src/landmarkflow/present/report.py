"""The per-cohort HTML report: one self-contained file (figures embedded), readable offline.

Sections: summary table (paper, Table 1), error per method (Fig. 4a/b),
error against initial displacement (Fig. 4c), per landmark slices with the
ground truth, every method's prediction, the agents' end points and
trajectories and the masks (Fig. 5), training curves, preprocessing QC,
run time and memory per rule, warnings, configuration and software versions.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort.manifest import TIMEPOINTS
from ..cohort.preproc_folder import PreprocFolder
from ..core import layout, methods
from ..core.device import read_device_warning
from ..core.files import atomic_dir, atomic_path
from ..core.methods import sort_key, sort_methods
from ..evaluate.benchmarks import read_benchmarks, summarise_benchmarks
from ..evaluate.metrics import ERROR_COLUMNS, experimental, ground_truth
from ..io.landmarks import read_landmarks
from ..preprocess.lesions import describe as describe_lesions
from ..preprocess.lesions import read_info as read_lesions_info
from . import figures
from .figures import png_file_uri, png_uri
from .pages import Code, Details, Figure, Heading, Link, Pre, Section, note, render_page, table, warn

log = logging.getLogger(__name__)

@dataclass
class ReportInputs:
    """The files the report reads, and no others: what its rule declares. ``files`` are results files of any
    kind that :func:`.layout.parse` knows (landmarks, end points, trajectories, training logs, benchmarks);
    ``preproc``: the preprocessed folders; the cohort tables by name (None where a stage is off)."""

    summary: str
    errors: str
    predictions: str
    preproc: list = field(default_factory=list)
    lesions: list = field(default_factory=list)  #: the patients' lesion folders (given and derived masks)
    files: list = field(default_factory=list)
    warnings: str | None = None
    check: str | None = None
    bands: str | None = None
    rigid_fit: str | None = None
    rigid_residuals: str | None = None
    radiomics_summary: str | None = None
    radiomics_changes: str | None = None  #: the consensus's differential changes (radiomics_changes.tsv)

    def of_kind(self, kind: str) -> list[tuple[dict, str]]:
        """(what :func:`.layout.parse` says of it, path) of every given file of ``kind``; the training logs
        of a given trained folder count as given."""
        out = []
        for f in self.files:
            key = layout.parse(f)
            if key["kind"] == "trained" and kind == "training":
                out += [(k, str(p)) for p in sorted(Path(f).glob("*.tsv")) if (k := layout.parse(p))["kind"] == kind]
            elif key["kind"] == kind:
                out.append((key, f))
        return out

    def folders(self) -> dict[str, PreprocFolder]:
        """The preprocessed folders by patient (reading the lesion masks of the patient's lesion folder, when given)."""
        lesions = {layout.parse(d)["patient"]: d for d in self.lesions}
        out = {}
        for d in self.preproc:
            patient = PreprocFolder(d).patient
            out[patient] = PreprocFolder(d, lesions=lesions.get(patient))
        return out


def search_timings(inputs: ReportInputs) -> pd.DataFrame:
    """Per searching method (agents, PIN): training seconds per landmark (the training log's last time)
    and inference seconds per landmark (the ``seconds`` column of the landmark CSV)."""
    train = {(k["patient"], k["method"], k["landmark"]): path for k, path in inputs.of_kind("training")}
    rows = []
    for key, lm_csv in inputs.of_kind("landmarks"):
        if key["method"] not in methods.SEARCH:
            continue
        infer = pd.read_csv(lm_csv, dtype={"landmark": str})
        for r in infer.itertuples():
            tlog = train.get((key["patient"], key["method"], r.landmark))
            train_s = float(pd.read_csv(tlog, sep="\t")["seconds"].iloc[-1]) if tlog else np.nan
            rows.append({"method": key["method"], "patient": key["patient"], "landmark": r.landmark, "train_s": train_s,
                         "inference_s": getattr(r, "seconds", np.nan)})
    return pd.DataFrame(rows, columns=["method", "patient", "landmark", "train_s", "inference_s"])


def _pin_section(summ: pd.DataFrame, inputs: ReportInputs) -> list:
    times = search_timings(inputs)
    if times.empty or "pin" not in set(times["method"]):
        return [note("Not part of this run (the PIN stage is not active).")]
    t = times.groupby("method", as_index=False).agg(landmarks=("landmark", "size"), train_s_per_landmark=("train_s", "mean"),
                                                    inference_s_per_landmark=("inference_s", "mean"))
    if not summ.empty:
        t = t.merge(summ[["method", "mean_mm", "median_mm", "robustness", "spread_mm"]], on="method", how="left")
    t = sort_methods(t)
    out = []
    if (rob := experimental(summ, "pin")) is not None:
        out.append(warn(f"PIN is experimental: it improved on the rigidly aligned position for only {100 * rob:.0f}% of "
                        "the landmarks here (the target is 90%). The consensus gives it no weight unless "
                        "consensus.methods lists it."))
    return out + [note("The supervised PIN (one network per landmark, regression and direction classification, "
                       "rule C from the same 20 start points) against the reinforcement-learning agents, on the same "
                       "patients: accuracy (mm, robustness = share of landmarks improved over the initial error), training "
                       "time per landmark (the training loop, without the job's start-up) and inference time per landmark "
                       "(all starts)."), table(t)]


def _rigid_section(inputs: ReportInputs, warnings: list) -> list:
    if inputs.rigid_fit is None or inputs.rigid_residuals is None:
        return [note("(not computed)")]
    fits = pd.read_csv(inputs.rigid_fit, sep="\t")
    res = pd.read_csv(inputs.rigid_residuals, sep="\t", dtype={"landmark": str})
    for r in fits[fits["status"] != "ok"].itertuples():
        warnings.append(f"rigid fit, {r.patient} {r.method}: {r.status}")
    for r in res[res["flagged"] == 1].itertuples():
        if r.method not in ("identity", "truth"):
            spread = f", spread {r.spread_mm:.1f} mm" if np.isfinite(r.spread_mm) else ""
            warnings.append(f"{r.patient} landmark {r.landmark}: {r.method} is {r.residual_mm:.1f} mm off the rigid fit of its landmarks{spread}")
    if res.empty:
        return [table(fits)]
    wide = res.pivot_table(index=["patient", "landmark"], columns="method", values="residual_mm").reset_index()
    spread = res.dropna(subset=["spread_mm"]).pivot_table(index=["patient", "landmark"], columns="method", values="spread_mm")
    spread.columns = [f"spread {c}" for c in spread.columns]
    wide = wide.merge(spread.reset_index(), on=["patient", "landmark"], how="left") if len(spread) else wide
    return [note("Least-squares rigid fit (SVD, Arun et al. 1987) of the post-op landmarks onto each method's pre-op "
                 "positions (and onto the ground truth, ", Code("truth"), "). rms/max residual: how far the landmarks are "
                 "from moving rigidly together; a landmark far off the fit is suspect (flagged, see Warnings), its agent "
                 "spread beside it. rotation/shift vs image: the rotation angle of the residual transform between this fit "
                 "and the preprocessing's image-based rigid registration, and the mean distance of the landmarks under the "
                 "two. ", Code("identity"), " is the image-based registration itself (0 by construction)."),
            table(fits), Heading("Residual per landmark (mm) and spread"), table(wide)]


# ----------------------------------------------------------------------------- sections: lists of blocks (.pages)
#: the summary's columns as the report shows them (the TSV keeps the short names), with what each means
COLUMNS = {
    "n": ("landmarks with truth", "landmarks with pre-op ground truth (the errors are over these)"),
    "mean_mm": ("mean error (mm)", "mean distance to the ground truth"),
    "median_mm": ("median error (mm)", "median distance to the ground truth"),
    "std_mm": ("sd of error (mm)", "standard deviation of the distance to the ground truth"),
    "norm_mean": ("mean error / initial", "mean over landmarks of error / initial error (paper, Table 1); below 1 is better "
                                          "than the rigidly aligned position"),
    "norm_median": ("median error / initial", "median over landmarks of error / initial error"),
    "robustness": ("share improved", "share of landmarks whose error is below their initial error"),
    "over_5mm": ("share over 5 mm", "share of errors above 5 mm"),
    "landmarks": ("landmarks", "landmarks predicted"),
    "median_shift_mm": ("median shift (mm)", "how far the method moves the landmarks from the rigidly aligned post-op "
                                             "position (needs no ground truth)"),
    "median_disagreement_mm": ("median disagreement (mm)", "distance to the median of the other methods' predictions "
                                                           "(needs no ground truth)"),
    "spread_mm": ("agent spread (mm)", "mean distance of the agents' 20 end points to their centre"),
    "fallbacks": ("fallbacks", "implausible predictions replaced by the rigidly aligned position (how many, or "
                               "which methods' for one landmark)"),
    "nonpositive_jacobian": ("folding share", "share of voxels where the deformation folds (Jacobian determinant <= 0)"),
    "flagged": ("flagged", "the consensus's landmarks to check by eye"),
    "flag_catch": ("large errors flagged", "share of the consensus's errors above the flag distance "
                                           "(consensus.flag_error_mm) that are flagged"),
    "flag_false_alarm": ("flags without a large error", "share of the flagged landmarks whose error is below it"),
    # the landmarks to check (landmarks_to_check.tsv)
    "methods": ("methods", "methods with a prediction for the landmark"),
    "max_disagreement_mm": ("largest disagreement (mm)", "the largest distance of a method's prediction to the median "
                                                         "of the others'"),
    "farthest_method": ("farthest method", "the method with the largest disagreement"),
    "off_rigid_fit": ("off the rigid fit", "methods whose prediction lies far off the landmark-based rigid fit"),
    "warning_signs": ("warning signs", "fallbacks, predictions off the rigid fit and a median disagreement above the "
                                       "rigid-fit flag distance, counted"),
}


def _readable(df: pd.DataFrame) -> pd.DataFrame:
    """The summary's columns under their plain names (:data:`COLUMNS`)."""
    return df.rename(columns={key: name for key, (name, _) in COLUMNS.items()})


def _glossary(df: pd.DataFrame) -> Details:
    return Details("What the columns mean", [table(pd.DataFrame(
        [{"column": COLUMNS[c][0], "meaning": COLUMNS[c][1]} for c in df.columns if c in COLUMNS]))])


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("landmarkflow", "numpy", "scipy", "pandas", "SimpleITK", "antspyx", "torch", "nibabel", "nilearn", "pyradiomics", "snakemake"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _anchor(patient: str, landmark: str) -> str:
    return f"landmark-{patient}-{landmark}"


def _landmark_figures(m, pred: pd.DataFrame, truth: dict, inputs: ReportInputs, figures_dir: Path) -> dict:
    """Fig. 5 of every landmark as a data URI (also saved under ``figures_dir``), keyed by (patient, landmark)."""
    tables = {kind: {(k["patient"], k["method"]): pd.read_csv(f, sep="\t", dtype={"landmark": str}) for k, f in inputs.of_kind(kind)}
              for kind in ("endpoints", "trajectories")}
    folders = inputs.folders()
    out = {}
    for patient in m.patients:
        if patient not in folders:
            continue
        ends = {method: df for (p, method), df in tables["endpoints"].items() if p == patient}
        trajs = {method: df for (p, method), df in tables["trajectories"].items() if p == patient}
        images = figures.load_views(folders[patient])
        for landmark in sorted(pred[pred["patient"] == patient]["landmark"].unique(), key=str):
            e = {method: df[df["landmark"] == landmark][["x", "y", "z"]].to_numpy() for method, df in ends.items()}
            t = {}
            for method, df in trajs.items():
                sub = df[df["landmark"] == landmark]
                t[method] = [g[["x", "y", "z"]].to_numpy() for _, g in sub.groupby("start")]
            fig = figures.landmark_figure(images, patient, landmark, pred, truth.get((patient, landmark)), e, t)
            out[(patient, landmark)] = png_uri(fig, figures_dir / f"landmark_{patient}_{landmark}.png")
    return out


#: how many landmarks the summary shows with their Fig. 5 view, the one to check first on top
CHECK_FIGURES = 3


def _bands_table(bands: pd.DataFrame | None) -> list:
    """The errors by distance to the cavity: one row per method, mean error (and landmarks) per band."""
    if bands is None or bands.empty:
        return []
    cells = bands.assign(cell=[f"{r.mean_mm:.2f} ({int(r.n)})" for r in bands.itertuples()])
    wide = cells.pivot_table(index="method", columns="band", values="cell", aggfunc="first", sort=False).reset_index()
    wide = sort_methods(wide)[["method"] + list(dict.fromkeys(bands["band"]))]
    wide.columns = ["method"] + [f"{band} from the cavity" for band in wide.columns[1:]]
    return [Heading("Error by distance to the cavity"),
            note("Mean error in mm (landmarks) per band of the post-op landmark's distance to the resection cavity (the "
                 "given mask, or the derived one where none was given): registration is least reliable near it."),
            table(wide)]


def _summary_section(m, summ: pd.DataFrame, err: pd.DataFrame, check: pd.DataFrame | None, fig5: dict,
                     bands: pd.DataFrame | None = None, pages: str | None = None) -> list:
    """The summary: the error table where there is ground truth, plainly said where there is none, what is
    known without it (shift, disagreement, spread, fallbacks, Jacobian), and the landmarks to check first."""
    with_truth = set(err["patient"]) if len(err) else set()
    without = [p for p in m.patients if p not in with_truth]
    if not with_truth:
        body = [warn("No pre-operative ground truth: no patient has pre-op landmarks of the post-op annotator, so no "
                     "error can be measured. The table shows what is known without it: how far each method moves the "
                     "landmarks from the rigidly aligned post-op position (median_shift_mm), how far its predictions are "
                     "from the other methods' (median_disagreement_mm), the agents' spread, the fallbacks to the rigid "
                     "position and, for deformations, the share of folding voxels. Check the landmarks listed below by "
                     "eye first."),
                table(_readable(summ.drop(columns=[c for c in ERROR_COLUMNS if c in summ.columns]))),
                _glossary(summ.drop(columns=[c for c in ERROR_COLUMNS if c in summ.columns]))]
    else:
        body = []
        if without:
            body.append(warn(f"Pre-operative ground truth for {len(with_truth)} of {len(m.patients)} patients: errors "
                             f"(n, mean ... over_5mm) are over those; {', '.join(without)} count in the columns that "
                             "need no ground truth only."))
        body += [table(_readable(summ)),
                 note("consensus (first row) is the workflow's recommended landmark: the registration's where the "
                      "agents confirm it, the agents' where they agree among themselves far from it (README, "
                      "\"Consensus\")."),
                 _glossary(summ)]
        body += _bands_table(bands)
    if check is None or check.empty:
        return body
    rows = check.copy()
    page = (lambda p: f"{pages}/{p}.html") if pages else (lambda p: "")  # large cohorts: the views are on the patient pages
    rows.insert(0, "view", [Link(f"{page(p)}#{_anchor(p, lm)}", "Fig. 5") if (p, lm) in fig5 else ""
                            for p, lm in zip(rows["patient"], rows["landmark"])])
    body += [Heading("Landmarks to check first"),
             note("Every landmark, the most doubtful on top: warning signs are a fallback, a method off the "
                  "landmark-based rigid fit, and a median disagreement above the rigid-fit flag distance. The first "
                  f"{CHECK_FIGURES} with their slices below the table."),
             table(_readable(rows)), _glossary(rows)]
    body += [Figure(fig5[(r.patient, r.landmark)], f"check first: {r.patient} landmark {r.landmark}")
             for r in rows.head(CHECK_FIGURES).itertuples() if (r.patient, r.landmark) in fig5]
    return body


def _errors_section(err: pd.DataFrame, figures_dir: Path) -> list | None:
    if err.empty:
        return None
    err = err.copy()
    err["norm_error"] = err["error_mm"] / err["initial_mm"]
    return [
        Figure(png_uri(figures.error_figure(err), figures_dir / "errors.png"), "error per method"),
        Figure(png_uri(figures.error_figure(err, "norm_error", "error / initial error"), figures_dir / "normalised_errors.png"),
               "normalised error per method"),
        Figure(png_uri(figures.initial_figure(err), figures_dir / "error_vs_initial.png"), "error against initial error"),
        Details("per landmark", [table(err.drop(columns="norm_error"))]),
    ]


def _predictions_section(pred: pd.DataFrame) -> list:
    dis = pred.dropna(subset=["disagreement_mm"])
    if len(dis):
        dis = dis.pivot_table(index=["patient", "landmark"], columns="method", values="disagreement_mm").reset_index()
        dis = dis[["patient", "landmark"] + sorted(dis.columns[2:], key=sort_key)]
    return [note("Per landmark and method: the distance (mm) of the prediction to the median of the other methods' "
                 "predictions (identity and raters are not counted among the others). Every prediction with its shift "
                 "from the rigidly aligned post-op position and its spread is in the table below."),
            table(dis), Details("every prediction", [table(pred)])]


def _landmarks_section(fig5: dict) -> list:
    body = [Figure(uri, f"{patient} landmark {landmark}", _anchor(patient, landmark)) for (patient, landmark), uri in fig5.items()]
    return body or [note("(none)")]


def _training_section(m, inputs: ReportInputs, figures_dir: Path) -> list:
    logs = {}
    for key, path in inputs.of_kind("training"):
        logs.setdefault(key["patient"], {}).setdefault(key["method"] == "pin", {})[
            f"{key['landmark']}_{key['method'].removeprefix('agent_')}"] = pd.read_csv(path, sep="\t")
    body = []
    for patient in m.patients:
        agents, pins = logs.get(patient, {}).get(False), logs.get(patient, {}).get(True)
        if agents:
            body += [Heading(patient), Figure(png_uri(figures.training_figure(dict(sorted(agents.items()))),
                                                      figures_dir / f"training_{patient}.png"), f"training {patient}")]
        if pins:
            body.append(Figure(png_uri(figures.pin_training_figure(dict(sorted(pins.items()))),
                                       figures_dir / f"training_pin_{patient}.png"), f"PIN training {patient}"))
    return body or [note("(nothing trained)")]


def _qc_section(m, inputs: ReportInputs) -> list:
    body = []
    folders = inputs.folders()
    for patient in m.patients:
        folder = folders.get(patient)
        if folder is not None and folder.qc_path.exists():
            body += [Heading(patient),
                     note(f"rigid post-op to pre-op: rotation {folder.rotation_deg:.2f} deg; preprocessing "
                          f"{folder.timings_s.get('total', float('nan')):.0f} s"),
                     Figure(png_file_uri(folder.qc_path), f"QC {patient}")]
            body += _lesions_note(patient, folder)
    return body or [note("(none)")]


def _lesions_note(patient: str, folder: PreprocFolder) -> list:
    """Which lesion masks a patient had (given, derived, none) and, where one is derived, its QC figure."""
    info = None if folder.lesions is None else read_lesions_info(folder.lesions)
    if info is None:
        return []
    body = [note(f"lesion masks: {describe_lesions(info)}")]
    qc = folder.lesions / "qc.png"
    if any(info[tp]["source"] == "derived" for tp in TIMEPOINTS) and qc.exists():
        body.append(Figure(png_file_uri(qc), f"derived lesions {patient}"))
    return body


#: the differential changes the report lists per landmark (the largest distinguishable ones)
TOP_CHANGES = 5


def _radiomics_section(inputs: ReportInputs, figures_dir: Path) -> list:
    if inputs.radiomics_summary is None:
        return [note("Not part of this run (the radiomics stage is not active).")]
    body = _changes_blocks(inputs, figures_dir)
    rdf = pd.read_csv(inputs.radiomics_summary, sep="\t")
    if rdf.empty:
        return body + [note("No pre-operative ground truth: the features at the redetected positions are not compared "
                            "with those at the true position.")]
    piv = rdf.pivot_table(index="method", columns="feature_class", values="median_deviation", aggfunc="mean").reset_index()
    piv = sort_methods(piv)
    return body + [Heading("Against the ground truth"),
                   note("How much the redetected position changes the differential features (post - pre) against those "
                        "measured at the ground-truth position: median of |delta(method) - delta(truth)| / sd(feature), "
                        "per feature class (mean over modalities and radii). 0 = the same differential features as at "
                        "the true position."), table(piv), Details("per modality and radius", [table(rdf)])]


def _changes_blocks(inputs: ReportInputs, figures_dir: Path) -> list:
    """The consensus's differential changes (radiomics_changes.tsv): a heatmap of landmarks against feature classes
    and, per landmark, the largest changes that its uncertainty cannot explain."""
    if inputs.radiomics_changes is None:
        return []
    ch = pd.read_csv(inputs.radiomics_changes, sep="\t", dtype={"landmark": str})
    if ch.empty:
        return [note("No differential changes: the consensus is not part of this run (radiomics at its landmarks only).")]
    ch["row"] = ch["patient"] + " " + ch["landmark"]
    ch["size"] = ch["z"].abs()
    size = ch.pivot_table(index="row", columns="feature_class", values="size", aggfunc="median", sort=False)
    known = ch.dropna(subset=["distinguishable"])
    share = known.pivot_table(index="row", columns="feature_class", values="distinguishable", aggfunc="mean", sort=False)
    body = [note("The differential change (post - pre) of every feature around the recommended (consensus) landmarks, "
                 "with or without ground truth. z = the change in units of the feature's spread over the cohort's "
                 "landmarks; pre_spread = how much the pre-operative value changes when the landmark moves by its "
                 "uncertainty (uncertainty_mm, in each axis direction). A change no larger than pre_spread cannot be "
                 "told apart from where the landmark is: it is left out of the lists below. Every value: ",
                 Code("results/cohort/radiomics_changes.tsv"), "."),
            Figure(png_uri(figures.changes_figure(share, size), figures_dir / "radiomics_changes.png"),
                   "differential radiomics: landmarks against feature classes")]
    shown = ["modality", "radius_mm", "feature", "pre", "post", "delta", "z", "pre_spread"]
    for (patient, landmark), g in ch.groupby(["patient", "landmark"], sort=False):
        big = g[g["distinguishable"] == 1].head(TOP_CHANGES)
        n_known = int(g["distinguishable"].notna().sum())
        body.append(Heading(f"{patient} landmark {landmark}"))
        if n_known == 0:
            body += [note("The landmark's uncertainty is unknown: the largest changes, not checked against it."),
                     table(g.head(TOP_CHANGES)[shown], 3)]
        else:
            body += [note(f"{int((g['distinguishable'] == 1).sum())} of {n_known} changes are larger than the "
                          f"landmark's uncertainty explains; the {len(big)} largest:"),
                     table(big[shown], 3)]
    return body


def _benchmarks_section(inputs: ReportInputs) -> list:
    bdf = read_benchmarks(path for _, path in inputs.of_kind("benchmark"))
    if bdf.empty:
        return [note("(no benchmarks)")]
    agg = summarise_benchmarks(bdf)[["rule", "jobs", "mean_s", "max_s", "max_rss_mb"]]
    return [table(agg, 1), Details("every job", [table(bdf[["rule", "job", "seconds", "max_rss_mb"]], 1)])]


def _warnings_section(m, inputs: ReportInputs, pred: pd.DataFrame, more: list) -> list:
    warns = []
    if inputs.warnings:
        warns += pd.read_csv(inputs.warnings, sep="\t")["warning"].dropna().tolist()
    folders = inputs.folders()
    for patient in m.patients:
        if patient in folders:
            warns += [f"{patient}: {w}" for w in folders[patient].warnings]
            info = None if folders[patient].lesions is None else read_lesions_info(folders[patient].lesions)
            warns += [f"{patient}: {w}" for w in (info or {}).get("warnings", [])]
    warns += more
    for kind in ("trained", "registration"):  # the PyTorch jobs' devices: a GPU visible but not used
        for key, folder in inputs.of_kind(kind):
            if warning := read_device_warning(folder):
                inside = Path(folder).as_posix().rsplit(f"/{key['patient']}/", 1)[-1]  # agents/trained, svf
                warns.append(f"{key['patient']}, {inside}: {warning}; the job ran on the CPU")
    fb = pred[pred["fallback"] == 1] if "fallback" in pred else pred.iloc[:0]
    warns += [f"{r.patient} landmark {r.landmark}: {r.method} fell back to the rigidly aligned position" for r in fb.itertuples()]
    return [warn(str(w)) for w in warns] or [note("none")]


def _config_section(config: dict) -> list:
    import yaml

    return [Heading("config"), Pre(yaml.safe_dump(config, sort_keys=False)), Heading("versions"),
            table(pd.DataFrame([_versions()]))]


#: above this many patients the cohort page links to the patient pages instead of showing every landmark's views
LARGE_COHORT = 10


def _consensus_tables(inputs: ReportInputs) -> dict:
    """The consensus landmarks of every patient that has them (the recommended file, with labels if any)."""
    return {k["patient"]: read_landmarks(f) for k, f in inputs.of_kind("landmarks") if k["method"] == "consensus"}


def _patient_page(patient: str, consensus, check: pd.DataFrame | None, pred: pd.DataFrame, fig5: dict) -> str:
    """One patient's page: the recommended landmarks with uncertainty and flag first, then the flagged ones
    (or, without a consensus, those with warning signs) with their three views, then every prediction."""
    mine = pred[pred["patient"] == patient]
    if consensus is not None:
        cols = [c for c in ("landmark", "label", "x", "y", "z", "uncertainty_mm", "flag", "rule", "methods") if c in consensus]
        recommended = [table(consensus[cols], 2)]
        flagged = [str(lm) for lm, f in zip(consensus["landmark"], consensus["flag"]) if str(f) == "1"]
        why = "flagged by the consensus (check them by eye)"
    else:
        recommended = [note("The consensus is not part of this run (consensus.activate: false).")]
        rows = check[check["patient"] == patient] if check is not None else pd.DataFrame()
        flagged = [str(lm) for lm, w in zip(rows.get("landmark", []), rows.get("warning_signs", [])) if w > 0]
        why = "with warning signs (landmarks_to_check.tsv)"
    listed = [warn(f"{len(flagged)} landmark(s): {', '.join(flagged)}")] if flagged else [note("none")]

    def views(landmarks):
        out = []
        for lm in landmarks:
            if (patient, lm) in fig5:
                out += [Heading(f"landmark {lm}"), Figure(fig5[(patient, lm)], f"{patient} landmark {lm}", _anchor(patient, lm))]
        return out

    others = [lm for (p, lm) in fig5 if p == patient and lm not in flagged]
    sections = [
        Section("recommended", "Recommended landmarks (consensus.csv)", recommended),
        Section("flagged", f"Landmarks {why}", listed + views(flagged)),
        Section("others", "The other landmarks", views(others) or [note("none")]),
        Section("predictions", "Every method's prediction", [table(mine.drop(columns="patient"))]),
    ]
    return render_page(f"{patient}: landmark redetection", f"Patient {patient}", f"{mine['landmark'].nunique()} landmark(s)",
                       sections, before=[note(Link("../report.html", "the cohort report"))])


def _patients_section(m, consensus: dict, check: pd.DataFrame | None, folder: str) -> list:
    """A row per patient: its landmarks, flagged ones, warning signs, and the link to its page."""
    rows = []
    for patient in m.patients:
        c = consensus.get(patient)
        w = check[check["patient"] == patient] if check is not None else pd.DataFrame()
        rows.append({"patient": Link(f"{folder}/{patient}.html", patient),
                     "landmarks": len(c) if c is not None else (len(w) or ""),
                     "flagged": int(c["flag"].astype(int).sum()) if c is not None else "",
                     "with warning signs": int((w["warning_signs"] > 0).sum()) if len(w) else 0})
    return [note("Each patient's page: the recommended landmarks with their uncertainty and flag, and the flagged ones "
                 "with their three views."), table(pd.DataFrame(rows))]


def build_report(m, config: dict, inputs: ReportInputs, out_html, figures_dir, patients_dir=None) -> None:
    """Write the cohort report (and its figures as PNG files under ``figures_dir``) from exactly ``inputs``,
    and, with ``patients_dir``, a page per patient there (``<patient>.html``), linked from the cohort page.
    Above :data:`LARGE_COHORT` patients the cohort page links to them instead of showing every landmark.
    The pages are rendered by :mod:`.pages` (every value escaped, no script but the render check)."""
    figures_dir = Path(figures_dir)
    summ = pd.read_csv(inputs.summary, sep="\t")
    err = pd.read_csv(inputs.errors, sep="\t", dtype={"landmark": str})
    pred = pd.read_csv(inputs.predictions, sep="\t", dtype={"landmark": str})
    check = pd.read_csv(inputs.check, sep="\t", dtype={"landmark": str}) if inputs.check else None
    bands = pd.read_csv(inputs.bands, sep="\t") if inputs.bands else None
    truth = {(r.patient, str(r.landmark)): np.array([r.x, r.y, r.z]) for r in ground_truth(m).itertuples()}
    fig5 = _landmark_figures(m, pred, truth, inputs, figures_dir)
    consensus = _consensus_tables(inputs)
    large = patients_dir is not None and len(m.patients) > LARGE_COHORT
    folder = Path(patients_dir).name if patients_dir is not None else None
    rigid_warnings: list[str] = []
    sections = []
    if patients_dir is not None:  # first: each patient's page leads with the recommended landmarks
        sections.append(Section("patients", "Patients", _patients_section(m, consensus, check, folder)))
    sections.append(Section("summary", "Summary", _summary_section(m, summ, err, check, fig5, bands, folder if large else None)))
    if (errors := _errors_section(err, figures_dir)) is not None:
        sections.append(Section("errors", "Errors per method (Fig. 4)", errors))
    landmarks = ([note(f"{len(m.patients)} patients: every landmark's views are on the patient pages (section "
                       "\"Patients\"); the figures are also in ", Code("figures/"), ".")] if large
                 else _landmarks_section(fig5))
    sections += [
        Section("predictions", "Predictions and disagreement (pre-op world, RAS mm)", _predictions_section(pred)),
        Section("landmarks", "Landmarks: slices, predictions, end points and trajectories of agents and PIN (Fig. 5)", landmarks),
        Section("training", "Training curves (agents and PIN)", _training_section(m, inputs, figures_dir)),
        Section("pin", "PIN against the agents", _pin_section(summ, inputs)),
        Section("rigid", "Landmark-based rigid fit", _rigid_section(inputs, rigid_warnings)),
        Section("qc", "Preprocessing quality control", _qc_section(m, inputs)),
        Section("radiomics", "Differential radiomics", _radiomics_section(inputs, figures_dir)),
        Section("benchmarks", "Run time and memory per rule", _benchmarks_section(inputs)),
        Section("warnings", "Warnings", _warnings_section(m, inputs, pred, rigid_warnings)),
        Section("config", "Configuration and software", _config_section(config)),
    ]
    if patients_dir is not None:
        with atomic_dir(patients_dir) as tmp:
            for patient in m.patients:
                (Path(tmp) / f"{patient}.html").write_text(
                    _patient_page(patient, consensus.get(patient), check, pred, fig5), encoding="utf-8")
    manifest_name = str(config.get("cohort", m.source))
    page = render_page("Landmark redetection report", "Landmark redetection: cohort report",
                       f"{len(m.patients)} patient(s), manifest {manifest_name}", sections)
    with atomic_path(out_html) as tmp:
        Path(tmp).write_text(page, encoding="utf-8")
