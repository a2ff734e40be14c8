"""3D Slicer's landmark files: markups JSON (``.mrk.json``), the legacy fiducial CSV (``.fcsv``) and the
control-point table the Markups module exports as CSV (``label,r,a,s`` or ``label,l,p,s``).

Each states its coordinate system: LPS in files of Slicer 5 and later, RAS in older ones (an
``.fcsv`` without a ``CoordinateSystem`` line is RAS, ``0`` means RAS and ``1`` LPS; the table by its
column names). Points are
converted to the project's world RAS mm by :mod:`.spatial`, the control-point labels become the
landmark identifiers. :func:`landmarkflow.io.landmarks.read_landmarks` reads these files as it reads the
project's CSV, so a manifest may name them directly; :func:`write_markups` writes a landmark table as one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.files import atomic_path
from ..imaging import spatial

SCHEMA = "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/markups-schema-v1.0.3.json#"
SUFFIXES = (".mrk.json", ".fcsv")
#: markups types whose control points are landmarks (Slicer 5 writes point lists as "Fiducial")
POINT_TYPES = ("Fiducial", "PointList")


class MarkupsError(ValueError):
    """A markups file that cannot be read as landmarks (the caller adds the file's name)."""


def is_markups(path) -> bool:
    return str(path).lower().endswith(SUFFIXES)


def _to_ras(xyz: np.ndarray, system: str) -> np.ndarray:
    system = str(system).strip().upper()
    if system in ("LPS", "1"):
        return spatial.lps_to_ras(xyz)
    if system in ("RAS", "0"):
        return np.asarray(xyz, dtype=float)
    raise MarkupsError(f"coordinate system {system!r}: expected LPS or RAS")


def read_markups(path) -> pd.DataFrame:
    """A ``.mrk.json`` or ``.fcsv`` file as a landmark table (``landmark`` = the label, ``x, y, z`` world RAS mm,
    as strings, for the caller's checks); raises :class:`MarkupsError`."""
    name = str(path).lower()
    if name.endswith(".mrk.json"):
        return _read_json(Path(path))
    if name.endswith(".fcsv"):
        return _read_fcsv(Path(path))
    raise MarkupsError(f"not a markups file (expected {' or '.join(SUFFIXES)})")


def _frame(labels, xyz) -> pd.DataFrame:
    xyz = np.asarray(xyz, dtype=float).reshape(-1, 3)
    return pd.DataFrame({"landmark": [str(lab) for lab in labels], "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}).astype(str)


def _read_json(path: Path) -> pd.DataFrame:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MarkupsError(f"not a readable markups JSON file ({err})") from None
    nodes = [n for n in doc.get("markups", []) if isinstance(n, dict)] if isinstance(doc, dict) else []
    points = [n for n in nodes if n.get("type") in POINT_TYPES]
    if not points:
        types = ", ".join(sorted({str(n.get("type")) for n in nodes})) or "none"
        raise MarkupsError(f"no point list in the file (markups types: {types}); expected a Fiducial/point list")
    if len(points) > 1:
        raise MarkupsError(f"{len(points)} point lists in one file; expected one (save each list to its own file)")
    node = points[0]
    units = node.get("coordinateUnits", "mm")
    if units != "mm":
        raise MarkupsError(f"coordinateUnits {units!r}; expected mm")
    labels, xyz = [], []
    for k, cp in enumerate(node.get("controlPoints", []), start=1):
        if cp.get("positionStatus", "defined") != "defined":
            continue  # a point that was never placed
        pos = cp.get("position")
        if not (isinstance(pos, list) and len(pos) == 3):
            raise MarkupsError(f"control point {k} ({cp.get('label', '?')}): position {pos!r}; expected [x, y, z]")
        labels.append(cp.get("label") or cp.get("id") or str(k))
        xyz.append(pos)
    if not labels:
        raise MarkupsError("the point list has no placed control points")
    try:
        ras = _to_ras(np.asarray(xyz, dtype=float), node.get("coordinateSystem", "LPS"))
    except (TypeError, ValueError) as err:
        raise MarkupsError(f"control point positions are not numbers ({err})") from None
    return _frame(labels, ras)


def _read_fcsv(path: Path) -> pd.DataFrame:
    """Slicer's fiducial CSV: ``#`` header lines (coordinate system, columns), then one CSV row per point,
    read with a CSV parser (Slicer quotes a label or description that holds a comma)."""
    import csv

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise MarkupsError("not a text file") from None
    system = "RAS"  # files of Slicer before 4.11 had no CoordinateSystem line and were RAS
    columns = ["id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID"]
    labels, xyz = [], []
    for n, line in enumerate(lines, start=1):
        if line.startswith("#"):
            key, _, value = line[1:].partition("=")
            if key.strip().lower() == "coordinatesystem":
                system = value.strip()
            elif key.strip().lower() == "columns":
                columns = [c.strip() for c in value.split(",")]
            continue
        if not line.strip():
            continue
        try:
            fields = next(csv.reader([line], skipinitialspace=False, strict=True))
        except csv.Error as err:
            raise MarkupsError(f"line {n}: not a CSV row ({err})") from None
        if len(fields) > len(columns):
            raise MarkupsError(f"line {n}: {len(fields)} fields, more than the {len(columns)} columns "
                               f"{', '.join(columns)} (an unquoted comma in a label?)")
        row = dict(zip(columns, fields))
        if not {"x", "y", "z"} <= set(row):
            raise MarkupsError(f"line {n}: {len(fields)} fields; expected the columns {', '.join(columns)}")
        labels.append(row.get("label") or row.get("id") or str(len(labels) + 1))
        try:
            xyz.append([float(row[c]) for c in ("x", "y", "z")])
        except ValueError:
            raise MarkupsError(f"line {n}: x, y, z = {row['x']!r}, {row['y']!r}, {row['z']!r} are not numbers") from None
    if not labels:
        raise MarkupsError("no control points")
    return _frame(labels, _to_ras(np.asarray(xyz, dtype=float), system))


#: the first columns of Slicer's control-point table (Markups module, "Export to table", saved as CSV), by system
TABLE_HEADERS = {("label", "r", "a", "s"): "RAS", ("label", "l", "p", "s"): "LPS"}


def table_system(header) -> str | None:
    """The coordinate system of a CSV whose header is Slicer's control-point table, else None."""
    return TABLE_HEADERS.get(tuple(h.strip().lower() for h in header[:4]))


def read_table(path: Path, system: str) -> pd.DataFrame:
    """Slicer's control-point table as a landmark table (labels as identifiers, world RAS mm, as strings)."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip().lower() for c in df.columns]
    cols = ["r", "a", "s"] if system == "RAS" else ["l", "p", "s"]
    try:
        xyz = df[cols].astype(float).to_numpy()
    except ValueError:
        bad = next(i for i, r in df.iterrows() if not all(_is_number(r[c]) for c in cols))
        raise MarkupsError(f"line {int(bad) + 2}: {', '.join(cols)} = {', '.join(repr(df.loc[bad, c]) for c in cols)} "
                           f"are not numbers") from None
    if not len(df):
        raise MarkupsError("no control points (the table has a header and no rows)")
    return _frame(df["label"], _to_ras(xyz, system))


def _is_number(value) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False


def markups_document(ids, xyz_ras, description: str = "", colour=(1.0, 0.5, 0.5), coordinate_system: str = "LPS",
                     locked: bool = True, descriptions=None, selected=None, selected_colour=None) -> dict:
    """A markups JSON document (one point list) of landmarks given in world RAS mm, written in
    ``coordinate_system`` (LPS, as Slicer 5 writes, or RAS), labelled with the identifiers. ``locked``: whether
    the points can be moved in Slicer; ``descriptions``: one text per point (else ``description`` for all);
    ``selected``: per point, whether Slicer shows it selected, in ``selected_colour`` (else every point is
    selected, in ``colour``)."""
    xyz_ras = np.asarray(xyz_ras, dtype=float).reshape(-1, 3)
    if coordinate_system == "LPS":
        pts = spatial.ras_to_lps(xyz_ras)
    elif coordinate_system == "RAS":
        pts = xyz_ras
    else:
        raise ValueError(f"coordinate_system {coordinate_system!r}: expected LPS or RAS")
    ids = list(ids)
    texts = [str(d) for d in descriptions] if descriptions is not None else [description] * len(ids)
    chosen = [bool(x) for x in selected] if selected is not None else [True] * len(ids)
    colour = [float(c) for c in colour]
    chosen_colour = [float(c) for c in selected_colour] if selected_colour is not None else colour
    return {
        "@schema": SCHEMA,
        "markups": [{
            "type": "Fiducial",
            "coordinateSystem": coordinate_system,
            "coordinateUnits": "mm",
            "locked": bool(locked),
            "labelFormat": "%N-%d",
            "controlPoints": [
                {"id": str(k), "label": str(lid), "description": text, "position": [float(v) for v in p],
                 "positionStatus": "defined", "selected": sel, "locked": bool(locked), "visibility": True}
                for k, (lid, p, text, sel) in enumerate(zip(ids, pts, texts, chosen), start=1)
            ],
            "display": {"visibility": True, "color": colour, "selectedColor": chosen_colour, "pointLabelsVisibility": True,
                        "glyphType": "Sphere3D", "glyphScale": 2.0, "textScale": 2.5},
        }],
    }


def write_markups(df: pd.DataFrame, path, description: str = "", colour=(1.0, 0.5, 0.5), coordinate_system: str = "LPS",
                  **options) -> None:
    """Write a landmark table (world RAS mm) atomically as a 3D Slicer markups JSON file (``.mrk.json``), one
    point list labelled with the identifiers, in ``coordinate_system`` (LPS, as Slicer 5 writes, or RAS);
    ``options``: those of :func:`markups_document` (locked, descriptions, selected, selected_colour)."""
    xyz = df[["x", "y", "z"]].to_numpy(dtype=float)
    doc = markups_document(df["landmark"].astype(str), xyz, description, colour, coordinate_system, **options)
    with atomic_path(path, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=2))
