"""The 3D Slicer review files of a patient: every method's landmarks as one point list each."""

from __future__ import annotations

from pathlib import Path

from ..core import layout, methods
from ..core.files import atomic_dir
from ..io.landmarks import read_landmarks
from ..io.markups import write_markups


def export_review(landmark_files, out_dir, truth_file=None) -> list[Path]:
    """One ``<method>.mrk.json`` per landmark file (``results/<patient>/landmarks/<method>.csv``) in ``out_dir``,
    and ``truth.mrk.json`` for the pre-op ground truth when given: each a point list in its method's colour,
    labelled with the landmark identifiers, to load over the pre-op scan in 3D Slicer. Written whole or not at all."""
    out_dir = Path(out_dir)
    named = [(layout.parse(f)["method"], f) for f in landmark_files]
    if truth_file is not None:
        named.append(("truth", truth_file))
    written = []
    with atomic_dir(out_dir) as tmp:
        for method, path in named:
            hexcol = methods.colour(method).lstrip("#")
            colour = tuple(int(hexcol[i:i + 2], 16) / 255 for i in (0, 2, 4))
            write_markups(read_landmarks(path), tmp / f"{method}.mrk.json", description=method, colour=colour)
            written.append(out_dir / f"{method}.mrk.json")
    return written
