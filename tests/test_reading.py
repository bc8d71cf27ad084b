"""Parsing received bytes (radpilot.dicom.reading.parse_bytes): large values stay unread
but complete, and cut data is refused as before."""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement

from radpilot.dicom.reading import InvalidInstanceError, identify, parse_bytes

_PIXEL_DATA = 0x7FE00010


def _bytes(name: str) -> bytes:
    return Path(str(get_testdata_file(name))).read_bytes()


def test_native_pixel_data_is_left_in_the_buffer_and_read_on_demand() -> None:
    small = _bytes("MR_small.dcm")  # 8 KiB of pixel data: under the deferral size
    frames = _bytes("emri_small.dcm")  # 10 frames, 80 KiB
    implicit = _bytes("rtdose.dcm")  # Implicit VR Little Endian
    for raw_bytes in (small, frames, implicit):
        reference = pydicom.dcmread(pydicom.filebase.DicomBytesIO(raw_bytes))
        ds = parse_bytes(raw_bytes)
        assert ds.PixelData == reference.PixelData
        assert ds.SOPInstanceUID == reference.SOPInstanceUID
    ds = parse_bytes(_bytes("SC_rgb_16bit_2frame.dcm"))  # 117 KiB of pixel data
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    assert isinstance(raw, RawDataElement) and raw.value is None  # not copied at parse
    expected = pydicom.dcmread(get_testdata_file("SC_rgb_16bit_2frame.dcm")).PixelData
    assert ds.PixelData == expected  # read from the buffer when asked for


def test_cut_native_pixel_data_is_refused_though_it_is_not_read() -> None:
    data = _bytes("SC_rgb_16bit_2frame.dcm")
    with pytest.raises(InvalidInstanceError, match=r"\(7FE0,0010\) declares 120000 bytes"):
        parse_bytes(data[:-100])


def test_encapsulated_pixel_data_without_its_delimiter_is_refused() -> None:
    data = _bytes("examples_jpeg2k.dcm")  # encapsulated, larger than the deferral size
    assert parse_bytes(data).file_meta.TransferSyntaxUID.is_compressed
    with warnings.catch_warnings():
        # pydicom warns about the missing delimiter and reads on (the test run turns
        # warnings into errors; a server does not): radpilot must refuse it itself.
        warnings.simplefilter("ignore")
        with pytest.raises(InvalidInstanceError, match="no sequence delimiter"):
            parse_bytes(data[:-4])  # the delimiter's tag is there, its length is not
        for cut in (8, 1000):  # pydicom gives up on the whole data set: refused as such
            with pytest.raises(InvalidInstanceError, match="no element could be read"):
                parse_bytes(data[:-cut])


def test_deflated_data_sets_are_read_whole() -> None:
    data = _bytes("image_dfl.dcm")
    ds = parse_bytes(data)
    assert ds.PixelData == pydicom.dcmread(get_testdata_file("image_dfl.dcm")).PixelData


def test_identify_checks_deferred_pixel_data_without_reading_it() -> None:
    name = "SC_rgb_16bit_2frame.dcm"
    ds = parse_bytes(_bytes(name))
    assert identify(ds).sop_instance_uid == ds.SOPInstanceUID
    raw = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    assert isinstance(raw, RawDataElement) and raw.value is None  # still in the buffer

    taller = pydicom.dcmread(get_testdata_file(name))
    taller.Rows += 1  # the complete value is now one row short of what the header says
    buffer = pydicom.filebase.DicomBytesIO()
    taller.save_as(buffer)
    with pytest.raises(InvalidInstanceError, match="pixel data truncated: 120000 bytes"):
        identify(parse_bytes(buffer.getvalue()))
