"""Issue: bounded reading. No image read holds more than its header declares: a gzip stream that inflates past
the declared size (a decompression bomb), a plain NIfTI longer than declared and an NRRD/MHA whose header declares
far more than any compression of its file can hold are each one clear error, with memory bounded; an unknown NIfTI
datatype code is named. Each memory bound is measured in a child process (its peak resident size)."""

import gzip
import io
import shutil
import struct
import subprocess
import sys
import zlib

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from testdata import make_image, oblique_affine
from landmarkflow.core.errors import InputError
from landmarkflow.imaging.image import MAX_INFLATION, NIFTI_SLACK, read_image

#: what a child process that imports the readers (numpy, nibabel, SimpleITK) and reads a small image peaks at is
#: about 170-250 MB; the old reader held the whole inflated stream twice (2.2 GB for the 1 GiB bomb below)
PEAK_MB = 450
BOMB_BYTES = 1 << 30  # what the bomb's gzip stream inflates to (a 4.6 MB file)
SHAPE = (16, 16, 16)  # what the bomb's header declares (int16: 8 KiB of voxels)


def _header(shape=SHAPE, dtype=np.int16, klass=nib.Nifti1Image) -> bytes:
    """A NIfTI header (with its 4 extension bytes, or none for NIfTI-2) as nibabel writes it, data at 352 / 544."""
    img = klass(np.zeros(shape, dtype), oblique_affine())
    hdr = img.header.copy()
    hdr.set_data_offset(352 if klass is nib.Nifti1Image else 544)
    return hdr.binaryblock + b"\0" * 4


def _write_gz_stream(path, head: bytes, n_zeros: int):
    """A .nii.gz whose stream is ``head`` then ``n_zeros`` zero bytes, compressed as it is written (small in memory)."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip member, with its CRC and length
    block = bytes(1 << 24)
    with open(path, "wb") as f:
        f.write(comp.compress(head))
        for start in range(0, n_zeros, len(block)):
            f.write(comp.compress(block[: min(len(block), n_zeros - start)]))
        f.write(comp.flush())
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 4.6 MB .nii.gz whose header declares 16x16x16 int16 (8,544 bytes with the header) and whose gzip stream
    inflates to 1 GiB of zeros."""
    return _write_gz_stream(tmp_path_factory.mktemp("bomb") / "bomb.nii.gz", _header(), BOMB_BYTES)


_READ = """
import resource, sys
from landmarkflow.core.errors import InputError
from landmarkflow.imaging.image import read_image
try:
    img = read_image(sys.argv[1])
    print("read", img.shape)
except InputError as err:
    print("InputError:", err)
print("peak_mb", [int(x.split()[1]) // 1024 for x in open('/proc/self/status') if x.startswith('VmHWM:')][0])
"""


def _read_in_child(path):
    """(stdout, stderr, peak resident MB) of ``read_image(path)`` in a child process."""
    done = subprocess.run([sys.executable, "-c", _READ, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    peak = int(done.stdout.rsplit("peak_mb", 1)[1])
    return done.stdout, done.stderr, peak


# ----------------------------------------------------------------------------- gzip NIfTI
def test_a_gzip_bomb_is_a_clear_error_with_memory_bounded_by_its_header(bomb):
    out, err, peak = _read_in_child(bomb)
    declared = 352 + 16 ** 3 * 2
    assert (f"InputError: {bomb}: the header declares 16x16x16 voxels of int16 ({declared:,} bytes with the header) "
            f"but the gzip stream holds more than {declared + NIFTI_SLACK:,} bytes; stopped reading there: a wrong "
            f"header (its dimensions or datatype) or a decompression bomb") in out, out + err
    assert "MemoryError" not in out + err and "Traceback" not in err
    assert peak < PEAK_MB, f"peak {peak} MB reading a bomb that declares 8 KiB"


def test_landmarkflow_validate_stops_at_the_bomb_with_exit_code_2(bomb, small_cohort):
    m_path, folder = small_cohort
    shutil.copyfile(bomb, folder / "p1" / "pre_t1.nii.gz")
    code = ("import resource, sys\nfrom landmarkflow.cli import main\nrc = main(['validate', sys.argv[1]])\n"
            "print('peak_mb', [int(x.split()[1]) // 1024 for x in open('/proc/self/status') if x.startswith('VmHWM:')][0])\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(m_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pre_t1.nii.gz: the header declares 16x16x16 voxels of int16" in done.stderr, done.stderr
    assert "stopped reading there" in done.stderr and "decompression bomb" in done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert int(done.stdout.rsplit("peak_mb", 1)[1]) < 1000  # validation imports pandas etc. on top of the readers


def test_a_stream_just_past_the_slack_is_an_error_and_one_within_it_reads_with_its_crc_checked(tmp_path):
    data = (np.arange(np.prod(SHAPE)) % 97).astype("<i2").reshape(SHAPE, order="F")
    head = _header() + data.tobytes(order="F")
    padded = tmp_path / "padded.nii.gz"
    padded.write_bytes(gzip.compress(head + bytes(NIFTI_SLACK)))  # exactly the slack: a padded file, still the image
    img = read_image(padded, dtype=None)
    assert img.shape == SHAPE and np.array_equal(img.data, data)
    raw = bytearray(padded.read_bytes())
    raw[-8] ^= 0x01  # its CRC: the stream that fits is read to its end, where gzip checks it
    padded.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"padded.nii.gz: damaged gzip stream \(.*CRC.*\)"):
        read_image(padded)
    over = tmp_path / "over.nii.gz"
    over.write_bytes(gzip.compress(head + bytes(NIFTI_SLACK + 1)))
    with pytest.raises(InputError, match=r"over.nii.gz: the header declares 16x16x16 voxels of int16 \(8,544 bytes with "
                                         rf"the header\) but the gzip stream holds more than {8544 + NIFTI_SLACK:,} bytes; "
                                         r"stopped reading there"):
        read_image(over)


# ----------------------------------------------------------------------------- plain NIfTI
def test_a_plain_nifti_far_longer_than_its_header_declares_is_a_clear_error(tmp_path):
    path = tmp_path / "long.nii"
    with open(path, "wb") as f:
        f.write(_header())
        f.truncate(BOMB_BYTES)  # 1 GiB, sparse: nothing of it is written
    out, err, peak = _read_in_child(path)
    assert (f"InputError: {path}: the file holds {BOMB_BYTES:,} bytes but its header declares 16x16x16 voxels of int16 "
            f"(8,544 bytes with the header), {BOMB_BYTES - 8544:,} bytes fewer: a wrong header") in out, out + err
    assert peak < PEAK_MB


def test_a_plain_nifti_with_padding_within_the_slack_still_reads(tmp_path):
    path = tmp_path / "pad.nii"
    data = np.full(SHAPE, 7, np.int16)
    path.write_bytes(_header() + data.tobytes() + bytes(512))
    assert read_image(path, dtype=None).data.sum() == 7 * data.size
    path.write_bytes(_header() + data.tobytes() + bytes(NIFTI_SLACK + 1))
    with pytest.raises(InputError, match=r"pad.nii: the file holds .* bytes but its header declares 16x16x16 voxels"):
        read_image(path)


# ----------------------------------------------------------------------------- other formats (SimpleITK)
_NRRD = ("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: 1024 1024 1024\n"
         "space directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (0,0,0)\nendian: little\n")
_MHA = ("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\nCompressedData = {c}\n"
        "DimSize = 1024 1024 1024\nElementSpacing = 1 1 1\nElementType = MET_FLOAT\nElementDataFile = {f}\n")


def _huge(tmp_path, kind):
    """A small file (or detached header and data file) whose header declares 1024^3 float32 voxels (4 GiB)."""
    if kind == "nrrd":
        path = tmp_path / "huge.nrrd"
        path.write_bytes((_NRRD + "encoding: gzip\n\n").encode() + gzip.compress(bytes(4096)))
    elif kind == "mha":
        path = tmp_path / "huge.mha"
        path.write_bytes(_MHA.format(c="True", f="LOCAL").encode() + zlib.compress(bytes(4096)))
    else:  # detached headers: the size checked is the data file's
        (tmp_path / "huge.raw").write_bytes(bytes(4096))
        path = tmp_path / f"huge.{kind}"
        path.write_text(_NRRD + "encoding: raw\ndata file: huge.raw\n" if kind == "nhdr" else _MHA.format(c="False", f="huge.raw"))
    return path


@pytest.mark.parametrize("kind", ["nrrd", "mha", "nhdr", "mhd"])
def test_a_header_declaring_more_than_any_compression_holds_is_refused_before_allocating(tmp_path, kind):
    """The old reader allocated the declared 4 GiB (NRRD: 4.2 GB peak then an ITK error; MHA: 8.3 GB peak and an
    image of zeros, read)."""
    path = _huge(tmp_path, kind)
    out, err, peak = _read_in_child(path)
    data = "" if kind in ("nrrd", "mha") else " (its data file huge.raw)"
    stored = path.stat().st_size if kind in ("nrrd", "mha") else 4096
    assert (f"InputError: {path}: the header declares 1024x1024x1024 voxels of 32-bit float (4,294,967,296 bytes) but "
            f"the file{data} holds {stored:,} bytes: more than {MAX_INFLATION} times what it holds") in out, out + err
    assert "a wrong header or a decompression bomb" in out
    assert peak < PEAK_MB


@pytest.mark.parametrize("ext", ["nrrd", "mha", "mhd"])
def test_clean_and_highly_compressed_itk_files_still_read(tmp_path, ext):
    """A constant image compresses with deflate close to its 1032:1 limit and still reads, as does a noisy one; the
    .mhd writes its voxels to a detached .raw (or .zraw) file."""
    const = make_image(tmp_path / f"zeros.{ext}", shape=(128, 128, 64), value=0.0)
    assert read_image(const).shape == (128, 128, 64)
    noisy = make_image(tmp_path / f"noisy.{ext}", affine=oblique_affine())
    img = read_image(noisy)
    assert img.shape == (12, 10, 8) and np.allclose(img.affine, oblique_affine(), atol=1e-3)
    assert np.allclose(img.data, sitk.GetArrayFromImage(sitk.ReadImage(str(noisy))).transpose(2, 1, 0))


# ----------------------------------------------------------------------------- NIfTI datatype codes
@pytest.mark.parametrize("klass, order, name", [(nib.Nifti1Image, "<", "one.nii.gz"), (nib.Nifti2Image, ">", "two.nii")])
def test_an_unknown_nifti_datatype_code_is_named(tmp_path, klass, order, name):
    """The raw code is read at offset 70 (NIfTI-1) or 12 (NIfTI-2) in the header's byte order; it used to be
    "not a readable NIfTI header (1234)"."""
    head = bytearray(_header(klass=klass))
    if order == ">":
        hdr = klass.header_class.from_fileobj(io.BytesIO(bytes(head))).as_byteswapped(">")
        head = bytearray(hdr.binaryblock + b"\0" * 4)
        assert head[:4] == (540).to_bytes(4, "big")
    at = 70 if klass is nib.Nifti1Image else 12
    head[at:at + 2] = struct.pack(order + "h", 1234)
    raw = bytes(head) + bytes(16 ** 3 * 2)
    path = tmp_path / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    with pytest.raises(InputError, match=rf"{name}: NIfTI datatype code 1234 is not one nibabel knows; expected one of "
                                         r"the standard codes \(2 uint8, 4 int16, 8 int32, 16 float32, 64 float64, "
                                         r"256 int8, 512 uint16, 768 uint32"):
        read_image(path)


def test_datatype_codes_none_and_binary_are_named_too(tmp_path):
    head = bytearray(_header())
    head[70:72] = struct.pack("<h", 1)
    path = tmp_path / "bits.nii"
    path.write_bytes(bytes(head) + bytes(16 ** 3 * 2))
    with pytest.raises(InputError, match=r"bits.nii: NIfTI datatype code 1 \(binary\) is not a voxel type nibabel reads; "
                                         r"expected one of the standard codes \(2 uint8"):
        read_image(path)
