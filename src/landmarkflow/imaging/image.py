"""Images: the :class:`Image` type (a voxel array and its RAS affine) and its files.

Images are read with SimpleITK (NIfTI, NRRD, MHA, ...), NIfTI files checked before their voxels are read
(:func:`read_image`); writers are atomic (:mod:`..core.files`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.files import atomic_path, existing_file, first_line
from . import spatial

log = logging.getLogger(__name__)

@dataclass
class Image:
    """A 3D scalar image: ``data[i, j, k]`` and the voxel-to-RAS ``affine``."""

    data: np.ndarray
    affine: np.ndarray
    #: what the reader changed to make the file's array this 3D image (dropped axes of length 1), else ""
    note: str = field(default="", compare=False, repr=False)

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

    path = existing_file(path, "image")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise InputError(f"{path}: not a readable image ({first_line(err)})") from None
    size = reader.GetSize()
    if len(size) < 3 or any(n != 1 for n in size[3:]):
        raise InputError(f"{path}: expected a 3D image, got size {size}{_extra_axes_hint(size)}")
    components = reader.GetNumberOfComponents()
    if components != 1:
        raise InputError(f"{path}: expected a 3D scalar (grey-value) image, got {components} components per voxel "
                         f"(a colour or vector image); save the MRI itself, one value per voxel")
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

    path = existing_file(path, "image")
    if _is_nifti(path):
        nii = _read_nifti(path)
        shape, affine = read_header(path)
        try:
            data = np.asanyarray(nii.dataobj)
        except Exception as err:  # nibabel raises several types for corrupt files
            raise InputError(f"{path}: not a readable NIfTI image ({first_line(err)})") from None
        if data.dtype.names:  # RGB(A) NIfTI: one record of channels per voxel
            raise InputError(f"{path}: expected a 3D scalar (grey-value) image, got a colour image with channels "
                             f"{', '.join(data.dtype.names)} per voxel; save the MRI itself, one value per voxel")
        note = _squeeze_note(path, data.shape)
        data = data.reshape(data.shape[:3]) if note else data
        if data.ndim != 3:
            raise InputError(f"{path}: expected a 3D scalar image, got an array of shape {data.shape}{_extra_axes_hint(data.shape)}")
        if not np.allclose(nii.affine, affine, atol=1e-3):
            raise InputError(
                f"{path}: the NIfTI qform and sform disagree (nibabel and ITK read different geometries); "
                f"rewrite the header with one consistent affine"
            )
    else:
        try:
            img = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise InputError(f"{path}: not a readable image ({first_line(err)})") from None
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"{path}: expected a scalar image, got {img.GetNumberOfComponentsPerPixel()} components per voxel")
        note = _squeeze_note(path, img.GetSize()) if img.GetDimension() > 3 else ""
        while note and img.GetDimension() > 3:
            img = img[(slice(None),) * (img.GetDimension() - 1) + (0,)]
        if img.GetDimension() != 3:
            raise InputError(f"{path}: expected a 3D image, got {img.GetDimension()}D of size {img.GetSize()}")
        data = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
        affine = spatial.affine_from_itk(img.GetSpacing(), img.GetOrigin(), img.GetDirection())
        _check_spacing(path, spatial.spacing_of(affine), "voxel size")
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    if note:
        log.info(note)
    return Image(np.ascontiguousarray(data), affine, note)


def _squeeze_note(path, shape) -> str:
    """The note for an array of more than 3 axes whose extra axes all have length 1 (a 3D image as some
    converters write it), else ""."""
    shape = tuple(int(n) for n in shape)
    if len(shape) <= 3 or any(n != 1 for n in shape[3:]):
        return ""
    return f"{path}: stored with shape {shape}; read as the 3D image of shape {shape[:3]} (its extra axes have length 1)"


def _extra_axes_hint(shape) -> str:
    """What the axes beyond the third of an image that is not 3D probably are."""
    shape = tuple(int(n) for n in shape)
    if len(shape) < 3:
        return f" ({len(shape)}D)"
    if len(shape) == 4:
        return f" (a 4D series of {shape[3]} volumes; give one volume per file)"
    return f" (a {len(shape)}D array: {int(np.prod(shape[3:]))} values per voxel, e.g. a vector or colour image)"


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
    import nibabel as nib

    gz = str(path).lower().endswith(".gz")
    klass, hdr, shape, declared = _nifti_header(path, gz)
    what = f"{'x'.join(map(str, shape))} voxels of {hdr.get_data_dtype()}"
    _check_spacing(path, np.asarray(hdr["pixdim"][1:4], dtype=float)[: max(1, min(3, len(shape)))], "voxel size (pixdim)")
    data = _gzip_stream(path, what, declared) if gz else None
    total = len(data) if gz else os.path.getsize(path)
    if total < declared:
        raise InputError(f"{path}: the header declares {what} ({declared:,} bytes with the header) but the file holds "
                         f"{total:,} bytes{' uncompressed' if gz else ''}: a truncated file or a wrong header")
    try:
        nii = klass.from_bytes(data) if gz else nib.load(str(path))
    except Exception as err:  # nibabel raises several types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI image ({first_line(err)})") from None
    _check_qform_sform(path, nii, shape)
    return nii


def _nifti_header(path: Path, gz: bool):
    """(image class, header as written, data shape, declared size in bytes with the header) of a NIfTI file."""
    import gzip
    import zlib

    import nibabel as nib

    try:
        with (gzip.open if gz else open)(path, "rb") as fh:
            head = fh.read(540)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path}: not a readable image ({first_line(err)})") from None
    size_field = int.from_bytes(head[:4], "little") if len(head) >= 4 else 0
    if size_field not in (348, 540):
        size_field = int.from_bytes(head[:4], "big") if len(head) >= 4 else 0
    klass = {348: nib.Nifti1Image, 540: nib.Nifti2Image}.get(size_field)
    if klass is None:
        raise InputError(f"{path}: not a NIfTI file (header size {size_field}, expected 348 or 540)")
    try:
        hdr = klass.header_class.from_fileobj(BytesIO(head), check=False)  # as written: no silent fixes
        shape = tuple(int(n) for n in hdr.get_data_shape())
        declared = int(hdr.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * hdr.get_data_dtype().itemsize
    except Exception as err:  # nibabel's header errors
        raise InputError(f"{path}: not a readable NIfTI header ({first_line(err)})") from None
    return klass, hdr, shape, declared


def _gzip_stream(path: Path, what: str, declared: int) -> bytes:
    """The whole decompressed stream (its CRC and length verified by gzip), or an error that says how it is damaged."""
    import gzip
    import zlib

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
        raise InputError(f"{path}: damaged gzip stream ({first_line(err)}): the file is corrupt; copy or export it again") from None
    return b"".join(chunks)


def _check_qform_sform(path: Path, nii, shape) -> None:
    qform, qcode = nii.get_qform(coded=True)
    sform, scode = nii.get_sform(coded=True)
    if qcode and scode and qform is not None and sform is not None:
        corners = np.array(np.meshgrid(*[[0, max(n - 1, 0)] for n in shape[:3]], indexing="ij")).reshape(3, -1).T
        gap = float(np.max(np.linalg.norm(spatial.voxel_to_world(corners, qform) - spatial.voxel_to_world(corners, sform), axis=1)))
        if gap > QFORM_SFORM_TOL_MM:
            raise InputError(f"{path}: the NIfTI qform and sform disagree (codes {int(qcode)} and {int(scode)}): they place "
                             f"the image's corners up to {gap:.1f} mm apart; rewrite the header with one affine (or set "
                             f"one of the two codes to 0)")


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


def _dir3(direction, dim: int) -> np.ndarray:
    d = np.asarray(direction, dtype=float).reshape(dim, dim)
    return d[:3, :3]
