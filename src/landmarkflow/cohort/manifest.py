"""The cohort manifest: one tab-separated row per file.

Columns ``patient, timepoint, kind, name, path`` (see ``config/README.md``).
:func:`load_manifest` checks the table itself (columns, values, duplicates,
what every patient needs, that files exist) and :func:`validate_contents`
opens the files (readable images, finite voxels, masks on their image's grid
and neither empty nor full, landmark files well formed, inside their image and
outside the resection mask; :mod:`.validation`). Both collect every problem and
raise one :class:`~landmarkflow.core.errors.InputError` that lists them, each
with its row and file, so a user fixes the manifest in one pass.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Callable

import pandas as pd

from ..core import layout
from ..core.errors import InputError
from ..core.files import broken_link, wide_encoding_problem

log = logging.getLogger(__name__)

COLUMNS = ["patient", "timepoint", "kind", "name", "path"]
TIMEPOINTS = ("pre", "post")
KINDS = ("image", "mask", "landmarks")
#: the lesion of each time point: the post-op resection cavity and the pre-op tumour
LESIONS = {"post": "resection", "pre": "tumor"}
MASK_NAMES = {**{name: tp for tp, name in LESIONS.items()}, "brain": None}  # name -> required timepoint
ID_RE, MAX_ID = layout.ID_RE, layout.MAX_ID  # the identifier rule is the layout's (file names)
DEFAULT_MODALITY_PREFERENCE = ("t1ce", "t1", "t2", "flair")
#: the names modalities go by (BIDS suffixes, scanner and challenge names), case aside, for each canonical one
MODALITY_ALIASES = {
    "t1ce": ("t1ce", "t1c", "t1gd", "t1-gd", "t1_gd", "t1post", "t1wce", "t1w-ce", "cet1", "ce-t1", "t1contrast"),
    "t1": ("t1", "t1w"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2flair", "t2-flair", "t2_flair", "t2wflair"),
}
_CANONICAL = {alias: name for name, aliases in MODALITY_ALIASES.items() for alias in aliases}


def canonical_modality(name: str) -> str:
    """The canonical name of a modality (``T1Gd``, ``T1c`` -> ``t1ce``; ``T1w`` -> ``t1``; ``T2w`` -> ``t2``;
    ``FLAIR`` -> ``flair``), or the name in lower case when it is none of :data:`MODALITY_ALIASES`."""
    return _CANONICAL.get(str(name).lower(), str(name).lower())


def identifier_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot be an identifier (patient, modality, annotator, landmark), or None."""
    if not ID_RE.match(value):
        return f"{what} {value!r} must match [A-Za-z0-9_-]+"
    if len(value) > MAX_ID:
        return f"{what} {value[:20]!r}... has {len(value)} characters; at most {MAX_ID} (it becomes part of file names)"
    return None


def _suggest(value: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class Manifest:
    """A validated manifest. ``table`` has the columns of :data:`COLUMNS` plus ``row``
    (the 1-based line number in the file, header = line 1) with ``path`` resolved
    (relative to the working directory when inside it, else absolute)."""

    table: pd.DataFrame
    source: Path
    warnings: list[str] = field(default_factory=list)
    annotator: str | None = None  # the configured primary annotator (None: each patient's only post-op one)
    preference: tuple = DEFAULT_MODALITY_PREFERENCE  #: the configured reference_modality preference

    @property
    def patients(self) -> list[str]:
        return list(dict.fromkeys(self.table["patient"]))

    def rows(self, patient, timepoint=None, kind=None, name=None) -> pd.DataFrame:
        t = self.table[self.table["patient"] == patient]
        for col, val in (("timepoint", timepoint), ("kind", kind), ("name", name)):
            if val is not None:
                t = t[t[col] == val]
        return t

    def path(self, patient, timepoint, kind, name) -> str | None:
        t = self.rows(patient, timepoint, kind, name)
        return None if t.empty else t["path"].iloc[0]

    def images(self, patient, timepoint) -> dict[str, str]:
        t = self.rows(patient, timepoint, "image")
        return dict(zip(t["name"], t["path"]))

    def common_modalities(self, patient) -> list[str]:
        pre, post = self.images(patient, "pre"), self.images(patient, "post")
        return [m for m in pre if m in post]

    def check_modalities(self, settings: dict[str, list]) -> None:
        """Raise an :class:`InputError` when a configured list of modalities (``{"agent.modalities":
        [...], ...}``) names one that a patient lacks at either time point; one line per patient and key."""
        problems = []
        for key, mods in settings.items():
            for patient in self.patients:
                common = self.common_modalities(patient)
                missing = [m for m in mods or [] if m not in common]
                if missing:
                    problems.append(f"{key} {missing}: patient {patient} has {', '.join(common) or 'no modality'} "
                                    f"at both time points (set {key} to a subset of those, or [] for the reference modality)")
        if problems:
            raise InputError(f"{self.source}: the config asks for modalities the manifest does not have:\n  "
                             + "\n  ".join(problems))

    def reference_modality(self, patient, preference=None) -> str:
        """The modality that skull stripping and both registrations run on: the first of ``preference`` that the
        patient has at both time points, names compared case aside and through their aliases
        (:func:`canonical_modality`: a manifest's ``T1w``, ``T1Gd``, ``FLAIR``), else the first by name."""
        return self.reference_choice(patient, preference)[0]

    def reference_choice(self, patient, preference=None) -> tuple[str, str]:
        """(the reference modality, why it is the one): see :meth:`reference_modality` (``preference`` None: the
        manifest's, :attr:`preference`)."""
        preference = tuple(self.preference if preference is None else preference)
        common = self.common_modalities(patient)
        wanted = ", ".join(preference)
        for m in preference:
            match = [c for c in common if canonical_modality(c) == canonical_modality(m)]
            if match:
                alias = f" (as {m})" if match[0] != m else ""
                return match[0], (f"{match[0]}{alias}: the first of the preference {wanted} (config reference_modality) "
                                  "that the patient has at both time points")
        first = sorted(common)[0]
        return first, (f"{first}: none of the preference {wanted} (config reference_modality) is among the patient's "
                       f"modalities at both time points ({', '.join(common)}), so the first by name; set "
                       "reference_modality in the config to choose it")

    def annotators(self, patient, timepoint) -> list[str]:
        return list(self.rows(patient, timepoint, "landmarks")["name"])

    def primary_annotator(self, patient) -> str:
        """The annotator whose post-op landmarks are redetected (and whose pre-op file is the ground truth):
        the configured one, or the patient's only post-op annotator (:func:`load_manifest` checks both)."""
        return self.annotator or self.annotators(patient, "post")[0]

    def files(self) -> list[str]:
        return list(self.table["path"])


def load_manifest(path, check_files: bool | Callable[[Path], bool] = True, annotator: str | None = None,
                  preference=DEFAULT_MODALITY_PREFERENCE) -> Manifest:
    """Read and check a manifest; raise :class:`InputError` listing every problem.

    ``check_files`` may be ``False`` to skip the existence check, or a function
    of a path that says whether that file must exist now (the workflow defers
    the files its own rules create, such as the demo cohort);
    :func:`.validation.validate_contents` must then run once they exist. ``annotator``
    (config ``landmarks.annotator``) names the post-op annotator whose landmarks
    are redetected; without it every patient must have exactly one. Lines
    starting with ``#`` are comments. Warnings are collected in
    ``Manifest.warnings`` for the caller to report (once).
    """
    path = Path(path)
    df = _read_table(path)
    problems: list[str] = []
    df["path"] = _resolve_rows(df, path, check_files, problems)
    problems += _name_collisions(df, path)
    problems += _duplicates(df, path)
    for patient, grp in df.groupby("patient", sort=False):
        rows = ", ".join(str(x) for x in grp["row"])
        problems += _patient_problems(grp, f"{path}, patient {patient} (rows {rows})", annotator)
    m = Manifest(df.reset_index(drop=True), path, annotator=annotator, preference=tuple(preference))
    for patient in m.patients:  # one scan given twice (the aliases of one file are named above)
        problems += [f"{path}, rows {a.row} and {b.row}: {a.path} and {b.path} have identical contents: the same scan "
                     f"given twice? (the {a.timepoint}-operative {a.name} and the {b.timepoint}-operative {b.name} image; "
                     "two scans never hold the same bytes)" for a, b in identical_images(m, patient)]
    if problems:
        raise InputError(problem_list(problems))
    for patient in m.patients:
        m.warnings += patient_warnings(m, patient)
    return m


def _read_table(path: Path) -> pd.DataFrame:
    """The manifest's rows (comments and empty lines dropped), stripped, with their line numbers (``row``)."""
    if not path.is_file():
        link = None if path.exists() else broken_link(path)
        raise InputError(f"{path}: the manifest is {link}" if link else f"{path}: manifest not found")
    if problem := wide_encoding_problem(path, "the manifest"):
        raise InputError(problem)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a text file ({err})") from None
    kept = [(n, line) for n, line in enumerate(lines, start=1) if line.strip() and not line.lstrip().startswith("#")]
    if not kept:
        raise InputError(f"{path}: the manifest has no header and no rows")
    try:
        df = pd.read_csv(StringIO("\n".join(line for _, line in kept)), sep="\t", dtype=str, keep_default_na=False)
    except pd.errors.ParserError as err:
        raise InputError(f"{path}: not a tab-separated table ({err})") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        hint = " (is the file tab separated?)" if len(df.columns) == 1 else ""
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}{hint}")
    df = df[COLUMNS].apply(lambda s: s.str.strip())
    df.insert(0, "row", [n for n, _ in kept[1:]])  # the file's own line numbers
    df = df[(df[COLUMNS] != "").any(axis=1)]  # lines of tabs only
    if df.empty:
        raise InputError(f"{path}: the manifest has no rows")
    return df


def _resolve_rows(df: pd.DataFrame, path: Path, check_files, problems: list) -> list[str]:
    """Each row's values checked (problems appended) and its path resolved from the manifest's folder."""
    def bad(row, msg):
        problems.append(f"{path}, row {row}: {msg}")

    base = path.resolve().parent
    resolved = []
    for r in df.itertuples(index=False):
        if problem := identifier_problem(r.patient, "patient"):
            bad(r.row, problem)
        if r.timepoint not in TIMEPOINTS:
            bad(r.row, f"timepoint {r.timepoint!r} is not one of {', '.join(TIMEPOINTS)}{_suggest(r.timepoint, TIMEPOINTS)}")
        if r.kind not in KINDS:
            bad(r.row, f"kind {r.kind!r} is not one of {', '.join(KINDS)}{_suggest(r.kind, KINDS)}")
        if problem := identifier_problem(r.name, "name"):
            bad(r.row, problem + " (a modality, mask name or annotator)")
        if r.kind == "mask":
            if r.name not in MASK_NAMES:
                bad(r.row, f"mask name {r.name!r} is not one of {', '.join(MASK_NAMES)}{_suggest(r.name, MASK_NAMES)}")
            elif MASK_NAMES[r.name] not in (None, r.timepoint):
                bad(r.row, f"a {r.name} mask belongs to the {MASK_NAMES[r.name]}-operative scan, not {r.timepoint!r}")
        if r.path == "":
            bad(r.row, "empty path")
            resolved.append("")
            continue
        p = Path(os.path.expanduser(r.path))
        p = Path(os.path.normpath(p if p.is_absolute() else base / p))
        if check_files is True or (callable(check_files) and check_files(p)):
            if not p.exists():
                link = broken_link(p)
                bad(r.row, f"{p} is {link}" if link else f"file {p} not found")
            elif not p.is_file():
                bad(r.row, f"{p} is not a file")
            elif not os.access(p, os.R_OK):
                bad(r.row, f"file {p} is not readable")
        resolved.append(display_path(p))
    return resolved


def _name_collisions(df: pd.DataFrame, path: Path) -> list[str]:
    """Patients whose folders results/<patient>/ collide: with the workflow's own folders there
    (:data:`.layout.RESERVED`) or, on a case-insensitive file system (macOS's, Windows'), with another
    patient's (``P001`` and ``p001``)."""
    out = []
    firsts = df.drop_duplicates("patient")
    for r in firsts.itertuples(index=False):
        if folder := layout.reserved(r.patient):
            rows = ", ".join(str(x) for x in df[df["patient"] == r.patient]["row"])
            out.append(f"{path}, row(s) {rows}: the patient {r.patient!r} has the name of the workflow's own folder "
                       f"{layout.RESULTS}/{folder}/ (reserved, in any case: {', '.join(layout.RESERVED)}); "
                       "rename the patient")
    folded = firsts.assign(folded=firsts["patient"].str.casefold())
    for _, grp in folded[folded.duplicated("folded", keep=False)].groupby("folded", sort=False):
        names = " and ".join(repr(p) for p in grp["patient"])
        out.append(f"{path}, rows {' and '.join(str(x) for x in grp['row'])}: the patients {names} differ only in case: "
                   f"their folders {layout.RESULTS}/<patient>/ are one folder on a case-insensitive file system "
                   "(macOS, Windows); spell one patient the same way in every row, or rename one")
    return out


def _duplicates(df: pd.DataFrame, path: Path) -> list[str]:
    """Rows that name one thing twice: the same entry, the same path, or one file by two paths (a symbolic or a
    hard link). Two files with the same bytes are named by :func:`load_manifest` (:func:`identical_images`)."""
    out = []
    key = ["patient", "timepoint", "kind", "name"]
    for _, grp in df[df.duplicated(key, keep=False)].groupby(key, sort=False):
        rows = ", ".join(str(x) for x in grp["row"])
        p, t, k, n = grp.iloc[0][key]
        out.append(f"{path}, rows {rows}: duplicate entry patient={p} timepoint={t} kind={k} name={n}")
    for _, grp in df[df.duplicated("path", keep=False) & (df["path"] != "")].groupby("path", sort=False):
        rows = ", ".join(str(x) for x in grp["row"])
        out.append(f"{path}, rows {rows}: the same file {grp.iloc[0]['path']} is listed more than once")
    return out + _aliases(df, path)


def _file_id(p: str) -> tuple[int, int] | None:
    """(device, inode) of an existing file (links followed), else None."""
    try:
        st = os.stat(p)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if os.path.isfile(p) else None


def _aliases(df: pd.DataFrame, path: Path) -> list[str]:
    """Rows whose different paths name one file: through a symbolic link or as hard links."""
    out = []
    ids = df["path"].map(lambda p: _file_id(p) if p else None)
    known = ids.notna()
    for _, grp in df[known].groupby(ids[known].map(str), sort=False):
        paths = list(dict.fromkeys(grp["path"]))
        if len(paths) < 2:
            continue  # one path listed twice: said above
        rows = ", ".join(str(x) for x in grp["row"])
        reals = {p: os.path.realpath(p) for p in paths}
        parts = [f"{p} is a symbolic link to {reals[p]}" for p in paths if os.path.islink(p)]
        if len(set(reals.values())) > 1:
            parts.append("hard links to one file")
        elif not parts:
            parts.append(f"the paths lead to {reals[paths[0]]} through a linked folder")
        how = "; ".join(parts)
        out.append(f"{path}, rows {rows}: {' and '.join(paths)} are one file ({how}): the same file is listed more "
                   "than once")
    return out


def identical_images(m: Manifest, patient: str) -> list[tuple]:
    """Pairs of a patient's image rows (named tuples of :data:`COLUMNS` and ``row``) whose different files hold
    the same bytes: two scans (two time points, or two modalities) cannot, so one scan was given twice. Cheap: only
    files of equal size are read, and only until they differ."""
    files = []
    for r in m.rows(patient, kind="image").itertuples(index=False):
        fid = _file_id(r.path) if r.path else None
        if fid is not None:
            files.append((r, fid, os.path.getsize(r.path)))
    return [(a, b) for i, (a, aid, asize) in enumerate(files) for b, bid, bsize in files[i + 1:]
            if aid != bid and asize == bsize and _same_bytes(a.path, b.path)]


def _same_bytes(a: str, b: str, chunk: int = 1 << 20) -> bool:
    """Do two files of equal size hold the same bytes? Read side by side, stopping at the first difference."""
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            while True:
                ca, cb = fa.read(chunk), fb.read(chunk)
                if ca != cb:
                    return False
                if not ca:
                    return True
    except OSError:
        return False


def _patient_problems(grp: pd.DataFrame, where: str, annotator: str | None) -> list[str]:
    """What one patient's rows lack: images at both time points with a common modality, names that differ in
    case only, the post-op landmarks of one (or the configured) annotator."""
    out = []
    imgs = {t: set(grp[(grp.timepoint == t) & (grp.kind == "image")]["name"]) for t in TIMEPOINTS}
    out += [f"{where}: no {t}-operative image" for t in TIMEPOINTS if not imgs[t]]
    if imgs["pre"] and imgs["post"] and not imgs["pre"] & imgs["post"]:
        out.append(f"{where}: no modality common to both time points (pre: {', '.join(sorted(imgs['pre']))}; "
                   f"post: {', '.join(sorted(imgs['post']))})")
    for kind, what in (("image", "modality"), ("landmarks", "annotator")):
        names = {t: grp[(grp.timepoint == t) & (grp.kind == kind)] for t in TIMEPOINTS}
        for r in names["pre"].itertuples():
            twins = names["post"][(names["post"]["name"].str.lower() == r.name.lower()) & (names["post"]["name"] != r.name)]
            out += [f"{where}: {what} {r.name!r} (pre, row {r.row}) and {t.name!r} (post, row {t.row}) differ "
                    f"only in case; spell them the same (did you mean {t.name!r}?)" for t in twins.itertuples()]
    post_lm = grp[(grp.timepoint == "post") & (grp.kind == "landmarks")]
    if post_lm.empty:
        out.append(f"{where}: no post-operative landmark file (a row with timepoint=post, kind=landmarks)")
    elif annotator is not None and annotator not in set(post_lm["name"]):
        out.append(f"{where}: no post-operative landmarks of the annotator {annotator!r} (config landmarks.annotator)"
                   f"; the patient has {', '.join(post_lm['name'])}{_suggest(annotator, post_lm['name'])}")
    elif annotator is None and len(post_lm) > 1:
        listed = ", ".join(f"{r.name} (row {r.row})" for r in post_lm.itertuples())
        out.append(f"{where}: post-operative landmarks of {len(post_lm)} annotators, {listed}: set landmarks.annotator "
                   "in the config to the one whose landmarks are redetected (the others' pre-operative files are "
                   "then scored as raters)")
    return out


def patient_warnings(m: Manifest, patient: str) -> list[str]:
    """What a patient's rows allow but a user should know: unused modalities, no resection mask, no ground truth."""
    out = []
    if m.common_modalities(patient):
        ref, why = m.reference_choice(patient)
        if canonical_modality(ref) not in {canonical_modality(x) for x in m.preference}:  # chosen by name: never silently
            out.append(f"patient {patient}: reference modality {why}")
    pre, post = set(m.images(patient, "pre")), set(m.images(patient, "post"))
    only = sorted(pre ^ post)
    if only:
        out.append(f"patient {patient}: modalities {', '.join(only)} exist at one time point only and are not used")
    if m.path(patient, "post", "mask", "resection") is None:
        out.append(f"patient {patient}: no post-operative resection mask: one is derived from the svf registration "
                   "when lesions.derive and svf.activate are on (the defaults); otherwise the guided agent is skipped")
    primary = m.primary_annotator(patient)
    if m.annotators(patient, "pre") and primary not in m.annotators(patient, "pre"):
        out.append(
            f"patient {patient}: no pre-operative landmark file has the post-operative annotator's name "
            f"({primary}): there is no ground truth; pre-operative annotations are scored as methods"
        )
    return out


def patient_rows(m: Manifest, patient: str) -> list[dict]:
    """One patient's rows (``row`` and the columns, paths resolved): what its validation job is given, so that
    the job depends on this patient alone."""
    rows = m.rows(patient)[["row"] + COLUMNS]
    return [{k: (int(v) if k == "row" else str(v)) for k, v in r.items()} for r in rows.to_dict("records")]


def display_path(p: Path) -> str:
    """Relative to the working directory when inside it (so paths match Snakemake outputs), else absolute."""
    p = Path(os.path.abspath(p))
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def problem_list(problems: list[str]) -> str:
    head = f"{len(problems)} problem(s) in the cohort manifest:" if len(problems) > 1 else "problem in the cohort manifest:"
    return head + "\n  - " + "\n  - ".join(problems)
