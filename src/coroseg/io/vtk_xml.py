"""Decoding the data arrays of VTK XML files (``.vtp``) without a VTK dependency.

What VTK, VMTK, ParaView and 3D Slicer write:

- ``format="ascii"``: numbers separated by white space;
- ``format="binary"``: base64 inside the element, a header (byte count, or the zlib block table
  ``[n_blocks, block_size, last_block_size, compressed_size_1..n]``) then the data; VTK encodes
  header and data separately, some writers together, and both are read;
- ``format="appended"``: the array lives in the file's ``<AppendedData>`` section at byte (raw)
  or character (base64) ``offset``, counted from just after the section's ``_`` marker, with
  the same header as a binary array. ``encoding="raw"`` (the default of ``vtkXMLWriter``,
  Slicer and ParaView) makes the file invalid XML, so the section is cut off before parsing.

Headers are ``UInt32`` or ``UInt64`` (``header_type``), data types ``Int8..64``, ``UInt8..64``,
``Float32/64`` (and the legacy names), either byte order (``byte_order``); compression is
``vtkZLibDataCompressor`` or none. String arrays (``<Array type="String">``, e.g. Slicer's
``SPACE`` field) are bytes with a 0 after each string (ascii: the byte values).

Every problem raises :class:`~coroseg.errors.InputError` naming the file and the array.
"""

from __future__ import annotations

import base64
import binascii
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np

from coroseg.errors import InputError

VTK_DTYPES = {
    "Int8": "i1", "UInt8": "u1", "Int16": "i2", "UInt16": "u2", "Int32": "i4", "UInt32": "u4",
    "Int64": "i8", "UInt64": "u8", "Float32": "f4", "Float64": "f8",
    # legacy names some writers use
    "Char": "i1", "UChar": "u1", "Short": "i2", "UShort": "u2", "Int": "i4", "UInt": "u4",
    "Long": "i8", "ULong": "u8", "Float": "f4", "Double": "f8", "vtkIdType": "i8",
}
_DECODE_ERRORS = (binascii.Error, ValueError, zlib.error, struct.error, OverflowError)


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing or unreadable file is an InputError naming it."""
    if not path.is_file():
        raise InputError("no such file", path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", path) from None


def read_vtk_xml(path: str | Path) -> tuple[ET.Element, XmlArrays]:
    """Parse a VTK XML file; return its root element and the decoder of its arrays.

    Raises
    ------
    InputError
        Missing or unreadable file, invalid XML, a bad ``<AppendedData>`` section or header.
    """
    path = Path(path)
    data = read_bytes(path)
    head, rest = data, b""
    start = data.find(b"<AppendedData")
    if start >= 0:
        close = data.find(b">", start)
        if close > 0 and data[close - 1: close] != b"/":
            # raw appended bytes are not XML: parse the part before them, close the elements
            head, rest = data[: close + 1] + b"</AppendedData></VTKFile>", data[close + 1:]
    try:
        root = ET.fromstring(head)
    except ET.ParseError as exc:
        raise InputError(f"not a valid VTK XML file ({exc})", path) from None
    return root, XmlArrays(path, root, rest)


class XmlArrays:
    """Decoding settings of one file (byte order, header type, compressor, appended data)."""

    def __init__(self, path: Path, root: ET.Element, appended: bytes = b""):
        self.path = path
        self.endian = ">" if root.get("byte_order", "LittleEndian") == "BigEndian" else "<"
        header = root.get("header_type", "UInt32")
        if header not in ("UInt32", "UInt64"):
            raise InputError(f"header_type must be UInt32 or UInt64, not {header!r}", path)
        self.hsize = 4 if header == "UInt32" else 8
        self.hfmt = self.endian + ("I" if self.hsize == 4 else "Q")
        comp = root.get("compressor")
        if comp not in (None, "", "vtkZLibDataCompressor"):
            raise InputError(f"unsupported compressor {comp!r}; expected vtkZLibDataCompressor "
                             "or none", path)
        self.zlib = comp == "vtkZLibDataCompressor"
        self._raw: bytes | None = None  # appended data, encoding="raw"
        self._b64: str | None = None  # appended data, encoding="base64"
        self._ends: list[int] = []  # sorted offsets of the base64 appended arrays, then the end
        section = root.find("AppendedData")
        if section is not None:
            self._appended(section, appended, root)

    def _appended(self, section: ET.Element, rest: bytes, root: ET.Element) -> None:
        encoding = section.get("encoding", "raw")
        if encoding not in ("raw", "base64"):
            raise InputError(f"<AppendedData encoding={encoding!r}> is not supported (expected raw or base64)",
                             self.path)
        if not rest:  # <AppendedData/> was parsed whole: no data (an array pointing there fails)
            rest = (section.text or "").encode("latin-1")
            if not rest.strip():
                return
        marker = rest.find(b"_")
        if marker < 0 or rest[:marker].strip():
            raise InputError("<AppendedData> must start with '_' before its data", self.path)
        if encoding == "raw":
            self._raw = rest[marker + 1:]
            return
        body = rest[marker + 1:]
        cut = body.find(b"</AppendedData>")
        try:
            self._b64 = (body if cut < 0 else body[:cut]).decode("ascii").rstrip()
        except UnicodeDecodeError:
            raise InputError("<AppendedData encoding='base64'> holds non-ASCII bytes", self.path) from None
        offsets = {self._offset(el) for el in root.iter() if el.get("format") == "appended"}
        self._ends = sorted(offsets | {len(self._b64)})

    # ---- public ----------------------------------------------------------------------------
    def array(self, el: ET.Element) -> np.ndarray:
        """The values of a ``<DataArray>`` as a flat ndarray of its type (native byte order)."""
        vtype = el.get("type")
        if vtype not in VTK_DTYPES:
            raise InputError(f"DataArray {_name(el)!r} has unsupported type {vtype!r}", self.path)
        return self._decode(el, np.dtype(self.endian + VTK_DTYPES[vtype]), vtype)

    def strings(self, el: ET.Element) -> list[str]:
        """The strings of a string array (``type="String"``) or of an array of character codes."""
        vtype = el.get("type")
        if vtype == "String":
            codes = self._decode(el, np.dtype("u1"), vtype)
        else:
            values = self.array(el)
            if values.size and (values.min() < 0 or values.max() > 255 or np.any(values != np.round(values))):
                raise InputError(f"array {_name(el)!r} does not hold text", self.path)
            codes = values.astype(np.uint8)
        text = codes.tobytes().decode("utf-8", "replace")
        parts = text.split("\0")
        return parts[:-1] if parts and parts[-1] == "" else parts

    # ---- decoding --------------------------------------------------------------------------
    def _decode(self, el: ET.Element, dtype: np.dtype, vtype: str) -> np.ndarray:
        name = _name(el)
        fmt = el.get("format", "ascii")
        if fmt == "ascii":
            tokens = (el.text or "").split()
            try:
                if dtype.kind == "f":
                    return np.array(tokens, dtype=dtype).astype(dtype.newbyteorder("="))
                return np.array(tokens, dtype=float).astype(dtype.newbyteorder("="))
            except (ValueError, OverflowError):
                raise InputError(f"DataArray {name!r}: non-numeric ASCII value", self.path) from None
        try:
            if fmt == "binary":
                raw = self._base64_block("".join((el.text or "").split()))
            elif fmt == "appended":
                raw = self._appended_block(el)
            else:
                raise InputError(f"DataArray {name!r}: format {fmt!r} is not supported (expected ascii, "
                                 "binary or appended)", self.path)
        except _DECODE_ERRORS as exc:
            raise InputError(f"DataArray {name!r}: corrupt or truncated binary data ({exc})", self.path) from None
        if len(raw) % dtype.itemsize:
            raise InputError(f"DataArray {name!r}: {len(raw)} bytes is not a whole number of {vtype} values",
                             self.path)
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))

    def _offset(self, el: ET.Element) -> int:
        text = el.get("offset")
        try:
            offset = int(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InputError(f"DataArray {_name(el)!r}: offset={text!r:.40} is not a whole number", self.path) from None
        if offset < 0:
            raise InputError(f"DataArray {_name(el)!r}: offset={offset} is negative", self.path)
        return offset

    def _appended_block(self, el: ET.Element) -> bytes:
        offset = self._offset(el)
        if self._raw is not None:
            return self._raw_block(self._raw, offset)
        if self._b64 is not None:
            end = next(e for e in self._ends if e > offset) if offset < len(self._b64) else offset
            return self._base64_block(self._b64[offset:end])
        raise InputError(f"DataArray {_name(el)!r}: format 'appended' but the file has no <AppendedData>",
                         self.path)

    def _raw_block(self, buf: bytes, pos: int) -> bytes:
        h = self.hsize
        if not self.zlib:
            (n,) = struct.unpack(self.hfmt, buf[pos: pos + h])
            data = buf[pos + h: pos + h + n]
            if len(data) < n:
                raise ValueError(f"expected {n} bytes, found {len(data)}")
            return data
        (nblocks,) = struct.unpack(self.hfmt, buf[pos: pos + h])
        if nblocks > len(buf):
            raise ValueError(f"implausible block count {nblocks}")
        hbytes = (3 + nblocks) * h
        vals = struct.unpack(self.endian + self.hfmt[-1] * (3 + nblocks), buf[pos: pos + hbytes])
        return self._inflate(buf[pos + hbytes:], vals)

    def _base64_block(self, b64: str) -> bytes:
        h = self.hsize
        if not self.zlib:
            # header: one integer (byte count), then data; VTK encodes them together, some
            # writers separately -> try one block first, then the header on its own.
            try:
                blob = _b64(b64)
            except binascii.Error:  # '=' padding inside: header encoded on its own
                blob = b""
            if len(blob) >= h:
                (n,) = struct.unpack(self.hfmt, blob[:h])
                if len(blob) - h >= n:
                    return blob[h: h + n]
            hlen = _b64_len(h)
            (n,) = struct.unpack(self.hfmt, _b64(b64[:hlen])[:h])
            data = _b64(b64[hlen:])
            if len(data) < n:
                raise ValueError(f"expected {n} bytes, found {len(data)}")
            return data[:n]
        (nblocks,) = struct.unpack(self.hfmt, _b64(b64[: _b64_len(3 * h)])[:h])
        if nblocks == 0:
            return b""
        if nblocks > len(b64):
            raise ValueError(f"implausible block count {nblocks}")
        hbytes = (3 + nblocks) * h
        hlen = _b64_len(hbytes)
        vals = struct.unpack(self.endian + self.hfmt[-1] * (3 + nblocks), _b64(b64[:hlen])[:hbytes])
        total = sum(vals[3:])
        # VTK base64-encodes header and data separately (header padded with '='); if the
        # header's encoding ends exactly on a 3-byte boundary both readings coincide.
        sep = _b64(b64[hlen:])
        if len(sep) >= total:
            return self._inflate(sep, vals)
        joint = _b64(b64)[hbytes:]
        if len(joint) < total:
            raise ValueError(f"expected {total} compressed bytes, found {max(len(sep), len(joint))}")
        return self._inflate(joint, vals)

    @staticmethod
    def _inflate(data: bytes, header: tuple[int, ...]) -> bytes:
        """Inflate the zlib blocks of ``data`` given the block table ``header``."""
        nblocks, blocksize, last = header[:3]
        csizes = header[3:]
        if sum(csizes) > len(data):
            raise ValueError(f"expected {sum(csizes)} compressed bytes, found {len(data)}")
        out, pos = [], 0
        for i, cs in enumerate(csizes):
            block = zlib.decompress(data[pos: pos + cs])
            want = last if (i == nblocks - 1 and last) else blocksize
            if len(block) != want:
                raise ValueError(f"block {i} inflates to {len(block)} bytes; expected {want}")
            out.append(block)
            pos += cs
        return b"".join(out)


def _name(el: ET.Element) -> str:
    return el.get("Name", "Points")  # VTK leaves the points array unnamed at times


def _b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def _b64_len(nbytes: int) -> int:
    return 4 * ((nbytes + 2) // 3)


__all__ = ["read_vtk_xml", "XmlArrays", "VTK_DTYPES"]
