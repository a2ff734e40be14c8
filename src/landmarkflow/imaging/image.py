"""Images: the :class:`Image` type (a voxel array and its RAS affine) and its files.

Images are read with SimpleITK (NIfTI, NRRD, MHA, ...), NIfTI files checked before their voxels are read
(:func:`read_image`); writers are atomic (:mod:`..core.files`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
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


def _image_information(path):
    """SimpleITK's reader of ``path`` with the header read (no voxels), or an :class:`InputError`."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise InputError(f"{path}: not a readable image ({first_line(err)})") from None
    return reader


def read_header(path) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and RAS affine of an image file, without reading its voxels."""
    path = existing_file(path, "image")
    reader = _image_information(path)
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

    No read holds more than the header declares: a NIfTI file (or its gzip stream) is read up to its declared
    size plus :data:`NIFTI_SLACK` and no further; other formats are refused, before any voxel buffer is
    made, when the header declares more than :data:`MAX_INFLATION` times the bytes on disk
    (:func:`_check_declared_size`).
    """
    import SimpleITK as sitk

    path = existing_file(path, "image")
    if _is_nifti(path):
        with _quiet_nibabel():
            nii, qfac = _read_nifti(path)
            shape, affine = read_header(path)
            try:
                data = np.asanyarray(nii.dataobj)
            except Exception as err:  # nibabel raises several types for corrupt files
                raise InputError(f"{path}: not a readable NIfTI image ({first_line(err)})") from None
            nii_affine = nii.affine
        del nii  # and, for .gz, the decompressed stream it holds: its voxels are in data now
        if data.dtype.names:  # RGB(A) NIfTI: one record of channels per voxel
            raise InputError(f"{path}: expected a 3D scalar (grey-value) image, got a colour image with channels "
                             f"{', '.join(data.dtype.names)} per voxel; save the MRI itself, one value per voxel")
        note = _squeeze_note(path, data.shape)
        data = data.reshape(data.shape[:3]) if note else data
        if qfac not in (1.0, -1.0):  # said once per file (the validation's warning), not by nibabel at every read
            note = "; ".join(filter(None, [note, f"{path}: pixdim[0] (qfac) is {qfac:g}, not 1 or -1: read as 1 (no "
                                                 "flip of the third axis), as nibabel and ITK read it"]))
        if data.ndim != 3:
            raise InputError(f"{path}: expected a 3D scalar image, got an array of shape {data.shape}{_extra_axes_hint(data.shape)}")
        if not np.allclose(nii_affine, affine, atol=1e-3):
            raise InputError(
                f"{path}: the NIfTI qform and sform disagree (nibabel and ITK read different geometries); "
                f"rewrite the header with one consistent affine"
            )
    else:
        _check_declared_size(path)
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
        data = data.astype(dtype, order="C", copy=False)  # one copy, not a converted one and then a C-ordered one
    if note:
        log.info(note)
    return Image(np.ascontiguousarray(data), affine, note)


@contextlib.contextmanager
def _quiet_nibabel():
    """nibabel's own INFO messages (``pixdim[0] (qfac) should be 1 (default) or -1``, printed at every read of such
    a file) held back while a NIfTI file is read: :func:`read_image` says it once, in the image's note."""
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


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
#: bytes a NIfTI file (or its decompressed gzip stream) may hold past the size its header declares (data offset +
#: voxels x bytes per voxel) before reading stops with an error. Writers put nothing there (nibabel, ITK and dcm2niix
#: write exactly the declared size), but a few tools pad the data to a block (512 bytes, a 4-64 KiB file-system or
#: tape block) or leave a short trailer, and such a file is still the image its header describes. 64 KiB tolerates
#: any such padding while bounding what a read holds by its declared size, whatever the stream inflates to.
NIFTI_SLACK = 64 << 10
#: largest ratio of the bytes a header declares (voxels x components x bytes) to the bytes stored on disk that is
#: read with SimpleITK: deflate (gzip/zlib: NRRD, MHA, PNG) cannot compress more than 1032:1 (a 258-byte match in
#: 2 bits), so a header that declares more than that is wrong, or the file is a decompression bomb
MAX_INFLATION = 1100
_CHUNK = 1 << 24
#: NIfTI datatype codes of scalar voxels, named in the message about an unknown code
_NIFTI_SCALAR_CODES = "2 uint8, 4 int16, 8 int32, 16 float32, 64 float64, 256 int8, 512 uint16, 768 uint32, 1024 int64, 1280 uint64"


def _read_nifti(path: Path):
    """The NIfTI image of ``path`` (nibabel), checked before its voxels are read, and its ``pixdim[0]`` (qfac) as
    written (nibabel's header says 1 where the file has 0).

    - the header's data size (offset + voxels x bytes) against the file's size: a truncated file or a
      header that declares far more voxels than the file holds is named with both numbers, before any
      array of the declared size is made; so is a file that holds more than the declared size plus
      :data:`NIFTI_SLACK` (a wrong header, or for ``.gz`` a decompression bomb: reading stops there);
    - non-zero, finite voxel sizes (``pixdim``): readers silently use 1 mm for 0;
    - ``.gz``: the whole stream is decompressed once (into memory, up to the declared size plus
      :data:`NIFTI_SLACK`) and its CRC and length verified;
    - qform against sform, when both codes are set: they must place the image's corners within
      :data:`QFORM_SFORM_TOL_MM` of each other.
    """
    import nibabel as nib

    gz = str(path).lower().endswith(".gz")
    klass, hdr, shape, declared = _nifti_header(path, gz)
    what = f"{'x'.join(map(str, shape))} voxels of {hdr.get_data_dtype()}"
    _check_spacing(path, np.asarray(hdr["pixdim"][1:4], dtype=float)[: max(1, min(3, len(shape)))], "voxel size (pixdim)")
    stream = _gzip_stream(path, what, declared) if gz else None
    total = stream.getbuffer().nbytes if gz else os.path.getsize(path)
    if total < declared:
        raise InputError(f"{path}: the header declares {what} ({declared:,} bytes with the header) but the file holds "
                         f"{total:,} bytes{' uncompressed' if gz else ''}: a truncated file or a wrong header")
    if total > declared + NIFTI_SLACK:  # a .gz stream never gets here: _gzip_stream stops reading there
        raise InputError(f"{path}: the file holds {total:,} bytes but its header declares {what} ({declared:,} bytes "
                         f"with the header), {total - declared:,} bytes fewer: a wrong header (its dimensions or "
                         f"datatype); fix the header or export the image again")
    try:
        # the stream as nibabel's from_bytes would wrap it, without copying it into a second buffer
        nii = klass.from_file_map(klass.make_file_map({"image": stream, "header": stream})) if gz else nib.load(str(path))
    except Exception as err:  # nibabel raises several types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI image ({first_line(err)})") from None
    _check_qform_sform(path, nii, shape)
    return nii, float(hdr["pixdim"][0])


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
    code, codes = _nifti_datatype_code(head, size_field), nib.nifti1.data_type_codes
    if code is not None and (code not in codes.value_set("code") or code in (0, 1)):  # 0 none, 1 binary: no voxel type
        known = "is not one nibabel knows" if code not in (0, 1) else f"({codes.label[code]}) is not a voxel type nibabel reads"
        raise InputError(f"{path}: NIfTI datatype code {code} {known}; expected one of the standard codes "
                         f"({_NIFTI_SCALAR_CODES}, ...): a damaged header or one written with a tool's own codes")
    try:
        hdr = klass.header_class.from_fileobj(BytesIO(head), check=False)  # as written: no silent fixes
        shape = tuple(int(n) for n in hdr.get_data_shape())
        declared = int(hdr.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * hdr.get_data_dtype().itemsize
    except Exception as err:  # nibabel's header errors
        raise InputError(f"{path}: not a readable NIfTI header ({first_line(err)})") from None
    return klass, hdr, shape, declared


def _nifti_datatype_code(head: bytes, size_field: int) -> int | None:
    """The raw ``datatype`` field of a NIfTI-1 (offset 70) or NIfTI-2 (offset 12) header, in the byte order that
    makes ``sizeof_hdr`` read 348 or 540; None when the header is too short to hold it."""
    at = 70 if size_field == 348 else 12
    if len(head) < at + 2:
        return None
    order = "little" if int.from_bytes(head[:4], "little") == size_field else "big"
    return int.from_bytes(head[at:at + 2], order, signed=True)


def _gzip_stream(path: Path, what: str, declared: int) -> BytesIO:
    """The whole decompressed stream (its CRC and length verified by gzip) at position 0, or an error that says how
    it is damaged; a stream longer than ``declared`` + :data:`NIFTI_SLACK` bytes is an error as soon as reading passes
    that size, so that memory stays bounded by the declared size whatever the stream inflates to."""
    import gzip
    import zlib

    limit = declared + NIFTI_SLACK
    out, total = BytesIO(), 0  # one growing buffer (no list of chunks joined into a second copy)
    try:
        with gzip.open(path, "rb") as fh:
            # at most limit + 1 bytes in all: one byte past the limit says the stream is too long, and a stream
            # that fits is read to its end, where gzip checks its CRC and length
            while chunk := fh.read(min(_CHUNK, limit + 1 - total)):
                total += len(chunk)
                if total > limit:
                    raise InputError(
                        f"{path}: the header declares {what} ({declared:,} bytes with the header) but the gzip stream "
                        f"holds more than {limit:,} bytes; stopped reading there: a wrong header (its dimensions or "
                        f"datatype) or a decompression bomb (a small file that inflates to far more than its header "
                        f"says); check the file's origin, fix the header or export the image again")
                out.write(chunk)
    except EOFError:
        raise InputError(f"{path}: the gzip stream ends early, after {total:,} bytes; the header declares {what} "
                         f"({declared:,} bytes with the header): the file is truncated") from None
    except (OSError, zlib.error) as err:
        raise InputError(f"{path}: damaged gzip stream ({first_line(err)}): the file is corrupt; copy or export it again") from None
    out.seek(0)
    return out


def _check_declared_size(path: Path) -> None:
    """An :class:`InputError` when the header of an image read with SimpleITK declares more than
    :data:`MAX_INFLATION` times the bytes stored on disk (a wrong header or a decompression bomb), read from the
    header alone, before any voxel buffer of the declared size is allocated."""
    import SimpleITK as sitk

    reader = _image_information(path)
    stored = _stored_bytes(path)
    if stored is None:
        return
    nbytes, data_file = stored
    size = tuple(int(n) for n in reader.GetSize())
    pixel, per_voxel = _voxel_bytes(sitk, reader.GetPixelID(), int(reader.GetNumberOfComponents()))
    declared = math.prod(size) * per_voxel
    if declared > MAX_INFLATION * max(nbytes, 1):
        where = "" if data_file == path else f" (its data file {data_file.name})"
        raise InputError(
            f"{path}: the header declares {'x'.join(map(str, size))} voxels of {pixel} ({declared:,} bytes) but the "
            f"file{where} holds {nbytes:,} bytes: more than {MAX_INFLATION} times what it holds, a ratio no compression "
            f"reaches (deflate: at most 1032:1); a wrong header or a decompression bomb, not read. Fix the header or "
            f"export the image again")


def _voxel_bytes(sitk, pixel_id: int, components: int) -> tuple[str, int]:
    """(name, bytes per voxel) of a SimpleITK pixel type with ``components`` components per voxel, from a 1-voxel
    image of that type: its component size is that of one element for a vector type ("vector of 32-bit float"), of
    the whole value for a complex one (whose ``components`` the reader counts as 2); 1 byte per component where
    SimpleITK cannot make the type (a lower bound, so the size check never refuses a file for it)."""
    name = sitk.GetPixelIDValueAsString(pixel_id)
    try:
        one = sitk.Image([1, 1], pixel_id)
    except (RuntimeError, TypeError, ValueError):
        return f"{name} x{components}" if components > 1 else name, components
    vector = one.GetNumberOfComponentsPerPixel() > 1  # vector types are made with one component per dimension
    count = components if vector else 1
    return (f"{name} x{count}" if count > 1 else name), one.GetSizeOfPixelComponent() * count


#: the data-file field of a detached NRRD header ("data file: x.raw.gz", also "datafile:") and of a MetaImage
#: header ("ElementDataFile = x.raw", its last field)
_DATA_FILE = re.compile(r"^(?:data ?file\s*:|ElementDataFile\s*=)[ \t]*(\S.*?)\s*$", re.IGNORECASE | re.MULTILINE)


def _stored_bytes(path: Path) -> tuple[int, Path] | None:
    """(bytes on disk that hold the voxels of ``path``, that file): the file itself, or the one data file that a
    detached header names (NRRD ``data file:``, MetaImage ``ElementDataFile``; the ``.img`` or ``.img.gz`` of an
    Analyze/NIfTI pair ``.hdr``). None where that is not one file found simply (a list or numbered pattern of data
    files, or one that is missing: ITK then reports it): the size check is skipped for those."""
    name = path.name.lower()
    if name.endswith(".hdr"):
        pair = [p for p in (path.with_suffix(".img"), path.with_suffix(".img.gz")) if p.is_file()]
        return (pair[0].stat().st_size, pair[0]) if len(pair) == 1 else None
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    text = head.decode("latin-1")
    if head.startswith(b"NRRD"):
        text = re.split(r"\r?\n\r?\n", text, maxsplit=1)[0]  # the header ends at the first empty line
    elif not re.search(r"^\s*ElementDataFile\s*=", text, re.MULTILINE):
        return path.stat().st_size, path  # one file (MHA with LOCAL data, PNG, ...)
    match = _DATA_FILE.search(text)
    if match is None:
        return path.stat().st_size, path
    value = match.group(1)
    if value.upper() == "LOCAL":
        return path.stat().st_size, path
    if value.upper().startswith("LIST") or "%" in value or " " in value:  # several data files
        return None
    data_file = Path(value) if Path(value).is_absolute() else path.parent / value
    return (data_file.stat().st_size, data_file) if data_file.is_file() else None


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
