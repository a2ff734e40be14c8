"""The 3D Slicer review files of a patient: every method's landmarks as one point list each, and a scene that
opens them over both preprocessed scans in one step.

The consensus's points (the recommended landmarks) are the ones a reviewer corrects: unlocked, each described
by its uncertainty and rule, the flagged ones selected (shown in :data:`FLAG_COLOUR`). Every other list is
locked. ``scene.mrml`` names the images and point lists by paths relative to itself, so the folder can be
opened where it is, or copied together with ``../preproc``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from ..cohort.preproc_folder import PreprocFolder
from ..core import layout, methods
from ..core.files import atomic_dir
from ..io.landmarks import read_landmarks
from ..io.markups import write_markups

#: the scene file in the review folder
SCENE = "scene.mrml"
#: the colour of the consensus's flagged points (Slicer's selected colour)
FLAG_COLOUR = (1.0, 0.15, 0.1)
#: the list a reviewer corrects
REVIEWED = "consensus"


def _rgb(method: str) -> tuple:
    hexcol = methods.colour(method).lstrip("#")
    return tuple(int(hexcol[i:i + 2], 16) / 255 for i in (0, 2, 4))


def _consensus_options(df: pd.DataFrame) -> dict:
    """Unlocked points; per point its uncertainty and rule as the description; the flagged ones selected."""
    def text(r):
        flag = "flagged: check by eye" if str(r.get("flag", "0")) == "1" else "not flagged"
        u = pd.to_numeric(r.get("uncertainty_mm"), errors="coerce")  # empty where nothing confirmed the landmark
        uncertainty = f"uncertainty {u:.1f} mm" if pd.notna(u) else "uncertainty unknown (nothing confirms it)"
        return f"{uncertainty}; rule {r.get('rule', '?')}; {flag}"

    rows = df.to_dict("records")
    return {"locked": False, "descriptions": [text(r) for r in rows],
            "selected": [str(r.get("flag", "0")) == "1" for r in rows], "selected_colour": FLAG_COLOUR}


def export_review(landmark_files, out_dir, truth_file=None, preproc_dir=None) -> list[Path]:
    """One ``<method>.mrk.json`` per landmark file (``results/<patient>/landmarks/<method>.csv``) in ``out_dir``,
    and ``truth.mrk.json`` for the pre-op ground truth when given: each a point list in its method's colour,
    labelled with the landmark identifiers, to load over the pre-op scan in 3D Slicer; the consensus's list
    unlocked, its flagged points selected. With ``preproc_dir`` (the patient's preprocessed folder) also
    ``scene.mrml``: both scans and every list in one scene (:func:`scene`). Written whole or not at all."""
    out_dir = Path(out_dir)
    named = [(layout.parse(f)["method"], f) for f in landmark_files]
    if truth_file is not None:
        named.append(("truth", truth_file))
    written = []
    with atomic_dir(out_dir) as tmp:
        for method, path in named:
            df = read_landmarks(path)
            options = _consensus_options(df) if method == REVIEWED else {}
            write_markups(df, tmp / f"{method}.mrk.json", description=method, colour=_rgb(method), **options)
            written.append(out_dir / f"{method}.mrk.json")
        if preproc_dir is not None:
            folder = PreprocFolder(preproc_dir)
            images = [(f"{tp}_{mod}", folder.image_path(tp, mod)) for mod in folder.modalities for tp in ("pre", "post")]
            scene(tmp / SCENE, out_dir, images, [(method, f"{method}.mrk.json") for method, _ in named])
            written.append(out_dir / SCENE)
    return written


def scene(path, folder, images, point_lists) -> None:
    """A 3D Slicer scene (MRML) at ``path`` that opens ``images`` ([(name, file)], the first shown in the slice
    views, the second over it at half opacity) and ``point_lists`` ([(name, file name in ``folder``)]); every
    file named relative to ``folder``, where the scene will be."""
    root = ET.Element("MRML", version="Slicer4.4.0", userTags="")
    volume_ids = []
    for k, (name, file) in enumerate(images, start=1):
        vid, sid, did = f"vtkMRMLScalarVolumeNode{k}", f"vtkMRMLVolumeArchetypeStorageNode{k}", f"vtkMRMLScalarVolumeDisplayNode{k}"
        ET.SubElement(root, "Volume", id=vid, name=name, references=f"storage:{sid};display:{did};")
        ET.SubElement(root, "VolumeArchetypeStorage", id=sid, fileName=os.path.relpath(file, folder), useCompression="1")
        ET.SubElement(root, "VolumeDisplay", id=did, colorNodeID="vtkMRMLColorTableNodeGrey", autoWindowLevel="1")
        volume_ids.append(vid)
    for k, (name, file) in enumerate(point_lists, start=1):
        nid, sid = f"vtkMRMLMarkupsFiducialNode{k}", f"vtkMRMLMarkupsJsonStorageNode{k}"
        ET.SubElement(root, "MarkupsFiducial", id=nid, name=name, references=f"storage:{sid};")
        ET.SubElement(root, "MarkupsJsonStorage", id=sid, fileName=file)
    if volume_ids:
        for view in ("Red", "Yellow", "Green"):
            ET.SubElement(root, "SliceComposite", id=f"vtkMRMLSliceCompositeNode{view}", layoutName=view,
                          backgroundVolumeID=volume_ids[0], foregroundVolumeID=volume_ids[1] if len(volume_ids) > 1 else "",
                          foregroundOpacity="0.5" if len(volume_ids) > 1 else "0", linkedControl="1")
    ET.indent(root)
    Path(path).write_text('<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n",
                          encoding="utf-8")
