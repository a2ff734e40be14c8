"""Reading and writing images and landmark files.

Images are read with SimpleITK (NIfTI, NRRD, MHA, ...) into an :class:`Image`:
a voxel array indexed ``[i, j, k]`` plus its RAS affine (see :mod:`.spatial`).
Every writer here is atomic: it writes a temporary file next to the target and
renames it, so an interrupted job never leaves a half-written output.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd

from . import spatial

LANDMARK_COLUMNS = ["landmark", "x", "y", "z"]
BRATS_COLUMNS = ["Landmark", "X", "Y", "Z"]


class InputError(ValueError):
    """Bad user input: a message that names the file, row or value and what was expected."""


# ----------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the full suffix (".nii.gz") so writers that look at the extension still work
    suffix = suffix if suffix is not None else "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside ``path``; rename it onto ``path`` (replacing an empty or absent
    folder) if the block succeeds, remove it otherwise: the folder appears whole or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_table(df: pd.DataFrame, path, sep: str = "\t", float_format: str | None = None) -> None:
    """Write a table atomically (TSV by default)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep=sep, index=False, float_format=float_format)


# ----------------------------------------------------------------------------- images
@dataclass
class Image:
    """A 3D scalar image: ``data[i, j, k]`` and the voxel-to-RAS ``affine``."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[:3])

    @property
    def spacing(self) -> np.ndarray:
        return spatial.spacing_of(self.affine)

    @property
    def origin(self) -> np.ndarray:
        """RAS world position of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """Unit voxel axes in RAS, as columns."""
        return self.affine[:3, :3] / self.spacing

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        org = ", ".join(f"{o:.1f}" for o in self.origin)
        return f"Image(shape={self.shape}, spacing=({sp}) mm, origin RAS=({org}) mm, dtype={self.data.dtype})"

    def same_grid(self, other: Image, atol: float = 1e-3) -> bool:
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)


def read_header(path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and RAS affine of an image file, without reading its voxels."""
    import SimpleITK as sitk

    path = _existing(path, "image")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise InputError(f"{path}: not a readable image ({_first_line(err)})") from None
    size = reader.GetSize()
    if len(size) != 3 and not (len(size) == 4 and size[3] == 1):
        raise InputError(f"{path}: expected a 3D image, got size {size}")
    affine = spatial.affine_from_itk(reader.GetSpacing()[:3], reader.GetOrigin()[:3], _dir3(reader.GetDirection(), len(size)))
    return tuple(int(s) for s in size[:3]), affine


def read_image(path, dtype=np.float32) -> Image:
    """Read a 3D scalar image (NIfTI, NRRD, ...) into an :class:`Image`.

    NIfTI files are checked before their voxels are read (:func:`_read_nifti`: the declared data size
    against the file, positive voxel sizes, the whole gzip stream with its CRC, qform against sform when
    both are set) and their voxels are read with nibabel, because ITK's NIfTI reader turns NaN into 0 and
    would hide bad input; the geometry is ITK's (what ANTs uses), checked against nibabel's so that the
    two libraries never see two different spaces.
    """
    import SimpleITK as sitk

    path = _existing(path, "image")
    if _is_nifti(path):
        nii = _read_nifti(path)
        shape, affine = read_header(path)
        try:
            data = np.asanyarray(nii.dataobj)
        except Exception as err:  # nibabel raises several types for corrupt files
            raise InputError(f"{path}: not a readable NIfTI image ({_first_line(err)})") from None
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise InputError(f"{path}: expected a 3D scalar image, got an array of shape {data.shape}")
        if not np.allclose(nii.affine, affine, atol=1e-3):
            raise InputError(
                f"{path}: the NIfTI qform and sform disagree (nibabel and ITK read different geometries); "
                f"rewrite the header with one consistent affine"
            )
    else:
        try:
            img = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise InputError(f"{path}: not a readable image ({_first_line(err)})") from None
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"{path}: expected a scalar image, got {img.GetNumberOfComponentsPerPixel()} components per voxel")
        if img.GetDimension() == 4 and img.GetSize()[3] == 1:
            img = img[:, :, :, 0]
        if img.GetDimension() != 3:
            raise InputError(f"{path}: expected a 3D image, got {img.GetDimension()}D of size {img.GetSize()}")
        data = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
        affine = spatial.affine_from_itk(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
        _check_spacing(path, spatial.spacing_of(affine), "voxel size")
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return Image(np.ascontiguousarray(data), affine)


#: largest distance (mm) between the qform and the sform of a NIfTI file at its corners that is still one geometry
QFORM_SFORM_TOL_MM = 0.1
_CHUNK = 1 << 24


def _read_nifti(path: Path):
    """The NIfTI image of ``path`` (nibabel), checked before its voxels are read.

    - the header's data size (offset + voxels x bytes) against the file's size: a truncated file or a
      header that declares far more voxels than the file holds is named with both numbers, before any
      array of the declared size is made;
    - non-zero, finite voxel sizes (``pixdim``): readers silently use 1 mm for 0;
    - ``.gz``: the whole stream is decompressed once and its CRC and length verified;
    - qform against sform, when both codes are set: they must place the image's corners within
      :data:`QFORM_SFORM_TOL_MM` of each other.
    """
    import gzip
    import zlib

    import nibabel as nib

    gz = str(path).lower().endswith(".gz")
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(540)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path}: not a readable image ({_first_line(err)})") from None
    size_field = int.from_bytes(head[:4], "little") if len(head) >= 4 else 0
    if size_field not in (348, 540):
        size_field = int.from_bytes(head[:4], "big") if len(head) >= 4 else 0
    klass = {348: nib.Nifti1Image, 540: nib.Nifti2Image}.get(size_field)
    if klass is None:
        raise InputError(f"{path}: not a NIfTI file (header size {size_field}, expected 348 or 540)")
    try:
        hdr = klass.header_class.from_fileobj(BytesIO(head), check=False)  # as written: no silent fixes
        shape = tuple(int(n) for n in hdr.get_data_shape())
        itemsize = hdr.get_data_dtype().itemsize
        declared = int(hdr.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * itemsize
    except Exception as err:  # nibabel's header errors
        raise InputError(f"{path}: not a readable NIfTI header ({_first_line(err)})") from None
    what = f"{'x'.join(map(str, shape))} voxels of {hdr.get_data_dtype()}"
    _check_spacing(path, np.asarray(hdr["pixdim"][1:4], dtype=float)[: max(1, min(3, len(shape)))], "voxel size (pixdim)")
    if gz:
        chunks, total = [], 0
        try:
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    chunks.append(chunk)
                    total += len(chunk)
        except EOFError:
            raise InputError(f"{path}: the gzip stream ends early, after {total:,} bytes; the header declares {what} "
                             f"({declared:,} bytes with the header): the file is truncated") from None
        except (OSError, zlib.error) as err:
            raise InputError(f"{path}: damaged gzip stream ({_first_line(err)}): the file is corrupt; copy or export it again") from None
    else:
        total = os.path.getsize(path)
    if total < declared:
        raise InputError(f"{path}: the header declares {what} ({declared:,} bytes with the header) but the file holds "
                         f"{total:,} bytes{' uncompressed' if gz else ''}: a truncated file or a wrong header")
    try:
        nii = klass.from_bytes(b"".join(chunks)) if gz else nib.load(str(path))
    except Exception as err:  # nibabel raises several types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI image ({_first_line(err)})") from None
    qform, qcode = nii.get_qform(coded=True)
    sform, scode = nii.get_sform(coded=True)
    if qcode and scode and qform is not None and sform is not None:
        corners = np.array(np.meshgrid(*[[0, max(n - 1, 0)] for n in shape[:3]], indexing="ij")).reshape(3, -1).T
        gap = float(np.max(np.linalg.norm(spatial.voxel_to_world(corners, qform) - spatial.voxel_to_world(corners, sform), axis=1)))
        if gap > QFORM_SFORM_TOL_MM:
            raise InputError(f"{path}: the NIfTI qform and sform disagree (codes {int(qcode)} and {int(scode)}): they place "
                             f"the image's corners up to {gap:.1f} mm apart; rewrite the header with one affine (or set "
                             f"one of the two codes to 0)")
    return nii


def _check_spacing(path, spacing, what: str) -> None:
    spacing = np.asarray(spacing, dtype=float)
    bad = [i for i, s in enumerate(spacing) if not np.isfinite(s) or abs(s) < 1e-6]
    if bad:
        axes = ", ".join("ijk"[i] for i in bad)
        raise InputError(f"{path}: {what} {np.round(spacing, 4).tolist()} mm is zero or not a number along "
                         f"axis {axes}; expected positive voxel sizes in mm (fix the header)")


def _is_nifti(path) -> bool:
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def to_sitk(image: Image):
    """A SimpleITK image with the same voxels and geometry."""
    import SimpleITK as sitk

    out = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(image.data).transpose(2, 1, 0)))
    spacing, origin, direction = spatial.itk_from_affine(image.affine)
    out.SetSpacing(tuple(float(s) for s in spacing))
    out.SetOrigin(tuple(float(o) for o in origin))
    out.SetDirection(tuple(float(d) for d in direction.ravel()))
    return out


def write_image(image: Image, path, dtype=None) -> None:
    """Write an :class:`Image` atomically; the format follows the extension (.nii.gz, .nrrd, ...)."""
    import SimpleITK as sitk

    data = np.asarray(image.data)
    if dtype is not None:
        data = data.astype(dtype)
    with atomic_path(path) as tmp:
        sitk.WriteImage(to_sitk(Image(data, image.affine)), str(tmp), useCompression=True)


# ----------------------------------------------------------------------------- landmarks
def read_landmarks(path, image_shape=None, image_affine=None) -> pd.DataFrame:
    """Read a landmark CSV (``landmark,x,y,z``, world RAS mm), or a 3D Slicer markups file (``.mrk.json``,
    ``.fcsv``: its coordinate system read from the file, its labels as identifiers; :mod:`.markups`).

    Returns a DataFrame with a string ``landmark`` column and float ``x, y, z``
    (extra columns are kept as they are). Raises :class:`InputError` naming the
    file and the row for a wrong header, an empty file, a duplicated
    identifier or a value that is not a finite number. With ``image_shape`` and
    ``image_affine``, points outside that image are an error too.
    """
    path = _existing(path, "landmark file")
    from . import markups  # (it writes through this module)

    if markups.is_markups(path):
        try:
            df = markups.read_markups(path)
        except markups.MarkupsError as err:
            raise InputError(f"{path}: {err}") from None
        return _check_points(df, path, LANDMARK_COLUMNS, image_shape, image_affine)
    header = _csv_header(path)
    if [h.lower() for h in header[:4]] == [c.lower() for c in BRATS_COLUMNS] and header[:4] != LANDMARK_COLUMNS:
        raise InputError(
            f"{path}: header {','.join(header)} looks like a BraTS-Reg file (LPS, 'Landmark,X,Y,Z'); "
            f"expected 'landmark,x,y,z' in RAS mm. Convert it with `landmarkflow brats-manifest` "
            f"or landmarkflow.io.read_brats_landmarks"
        )
    missing = [c for c in LANDMARK_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: header {','.join(header) or '(empty)'} lacks column(s) {', '.join(missing)}; expected 'landmark,x,y,z'")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return _check_points(df, path, LANDMARK_COLUMNS, image_shape, image_affine)


def write_landmarks(df: pd.DataFrame, path, float_format: str = "%.4f") -> None:
    """Write ``landmark,x,y,z`` (+ any extra columns of ``df``) atomically."""
    missing = [c for c in LANDMARK_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"landmark table lacks column(s) {missing}")
    cols = LANDMARK_COLUMNS + [c for c in df.columns if c not in LANDMARK_COLUMNS]
    out = df[cols].copy()
    out["landmark"] = out["landmark"].astype(str)
    write_table(out, path, sep=",", float_format=float_format)


def write_markups(df: pd.DataFrame, path, description: str = "", colour=(1.0, 0.5, 0.5), coordinate_system: str = "LPS") -> None:
    """Write a landmark table (world RAS mm) atomically as a 3D Slicer markups JSON file (``.mrk.json``), one
    point list labelled with the identifiers, in ``coordinate_system`` (LPS, as Slicer 5 writes, or RAS)."""
    import json

    from .markups import markups_document

    doc = markups_document(df["landmark"].astype(str), points_of(df), description, colour, coordinate_system)
    with atomic_path(path, suffix=".json") as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=2))


def landmarks_frame(ids, xyz, **extra) -> pd.DataFrame:
    """Build a landmark table from identifiers and an (n, 3) array of RAS mm."""
    xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
    df = pd.DataFrame({"landmark": [str(i) for i in ids], "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    for key, val in extra.items():
        df[key] = val
    return df


def points_of(df: pd.DataFrame) -> np.ndarray:
    """The (n, 3) array of ``x, y, z`` of a landmark table."""
    return df[["x", "y", "z"]].to_numpy(dtype=float)


# BraTS-Reg: "Landmark,X,Y,Z" in ITK physical (LPS) mm; on their 240x240x155 grid
# (origin (0, -239, 0), identity direction) the voxel index is (X, Y + 239, Z).
def read_brats_landmarks(path) -> pd.DataFrame:
    """Read a BraTS-Reg landmark file (LPS) into the project's RAS landmark table."""
    path = _existing(path, "landmark file")
    header = _csv_header(path)
    if header[:4] != BRATS_COLUMNS:  # exact: the lower-case header is the project's RAS format
        raise InputError(f"{path}: header {','.join(header) or '(empty)'} is not a BraTS-Reg landmark header 'Landmark,X,Y,Z'")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    df = df.rename(columns={h: c for h, c in zip(df.columns[:4], LANDMARK_COLUMNS)})
    df = _check_points(df, path, LANDMARK_COLUMNS)
    df[["x", "y", "z"]] = spatial.lps_to_ras(points_of(df))
    return df


def write_brats_landmarks(df: pd.DataFrame, path, float_format: str = "%.4f") -> None:
    """Write a RAS landmark table as a BraTS-Reg file (``Landmark,X,Y,Z``, LPS)."""
    lps = spatial.ras_to_lps(points_of(df))
    out = pd.DataFrame({"Landmark": df["landmark"].astype(str), "X": lps[:, 0], "Y": lps[:, 1], "Z": lps[:, 2]})
    write_table(out, path, sep=",", float_format=float_format)


# ----------------------------------------------------------------------------- helpers
def _existing(path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    if not path.is_file():
        raise InputError(f"{path}: {what} is not a file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: {what} is not readable (permissions)")
    return path


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def _dir3(direction, dim: int) -> np.ndarray:
    d = np.asarray(direction, dtype=float).reshape(dim, dim)
    return d[:3, :3]


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            row = next(csv.reader(fh), [])
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file") from None
    return [h.strip() for h in row]


def _check_points(df: pd.DataFrame, path, cols, image_shape=None, image_affine=None) -> pd.DataFrame:
    df.columns = [c.strip() for c in df.columns]
    if len(df) == 0:
        raise InputError(f"{path}: no landmarks (the file has a header and no rows)")
    df["landmark"] = df["landmark"].astype(str).str.strip()
    for idx, row in df.iterrows():
        line = idx + 2  # 1-based, after the header
        if row["landmark"] == "":
            raise InputError(f"{path}, line {line}: empty landmark identifier")
        for c in cols[1:]:
            raw = str(row[c]).strip()
            try:
                val = float(raw)
            except ValueError:
                raise InputError(f"{path}, line {line}: {c}={raw!r} is not a number (landmark {row['landmark']})") from None
            if not np.isfinite(val):
                raise InputError(f"{path}, line {line}: {c}={raw!r} is not a finite number (landmark {row['landmark']})")
    dup = df["landmark"][df["landmark"].duplicated()]
    if len(dup):
        lines = [int(i) + 2 for i in df.index[df["landmark"] == dup.iloc[0]]]
        raise InputError(f"{path}: landmark {dup.iloc[0]!r} appears more than once (lines {lines})")
    for c in cols[1:]:
        df[c] = df[c].astype(float)
    if image_shape is not None and image_affine is not None:
        inside = spatial.inside_image(points_of(df), image_affine, image_shape)
        if not inside.all():
            bad = df[~inside].iloc[0]
            raise InputError(
                f"{path}: landmark {bad['landmark']} at RAS ({bad['x']:.1f}, {bad['y']:.1f}, {bad['z']:.1f}) mm lies outside "
                f"its image (shape {tuple(image_shape)}); are the coordinates voxel indices or LPS instead of RAS mm?"
            )
    return df.reset_index(drop=True)
