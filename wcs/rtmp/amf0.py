"""
AMF0 (Adobe Action Message Format 0) values, without I/O.

Decoded values are plain Python: float, bool, str, dict (objects and ECMA
arrays), list (strict arrays), None (null and undefined),
L{datetime.datetime} (dates). An object of a registered class name comes back
as a dict with the name under C{TYPED_KEY}. An AVM+ marker switches to AMF3
for one value.

Decoding is bounded by an L{amf3.Budget}: references cost what they point
to, an object may not contain itself, so what a message decodes to can be
printed or encoded again in time proportional to the budget.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from wcs.rtmp import amf3
from wcs.rtmp.amf3 import DEFAULT_MAX_VALUES, Budget, ObjectTable, enter
from wcs.rtmp.errors import RTMPProtocolError

NUMBER, BOOLEAN, STRING, OBJECT, MOVIECLIP, NULL, UNDEFINED, REFERENCE = range(8)
ECMA_ARRAY, OBJECT_END, STRICT_ARRAY, DATE, LONG_STRING, UNSUPPORTED = 8, 9, 10, 11, 12, 13
XML_DOCUMENT, TYPED_OBJECT, AVMPLUS = 15, 16, 17

TYPED_KEY = "__class__"
MAX_DEPTH = 64

_double = struct.Struct(">d")
_u16 = struct.Struct(">H")
_u32 = struct.Struct(">I")


class ECMAArray(dict):
    """A dict encoded as an AMF0 ECMA array (as onMetaData is)."""


class Reader:
    """
    Reads values from one buffer; raises L{RTMPProtocolError} on bad bytes,
    over the budget, or on an object that contains itself. After L{value},
    C{height} is the nesting of what it returned (0 for a scalar).
    """

    def __init__(self, data: bytes, offset: int = 0, budget: Budget | None = None):
        self.data = memoryview(data)
        self.offset = offset
        self.budget = budget if budget is not None else Budget()
        self.height = 0
        self.references = ObjectTable(self.budget, "AMF0")

    def remaining(self) -> int:
        return len(self.data) - self.offset

    def take(self, count: int) -> bytes:
        end = self.offset + count
        if count < 0 or end > len(self.data):
            raise RTMPProtocolError("AMF0 value truncated")
        chunk = bytes(self.data[self.offset:end])
        self.offset = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return _u16.unpack(self.take(2))[0]

    def u32(self) -> int:
        return _u32.unpack(self.take(4))[0]

    def utf8(self, length: int) -> str:
        try:
            text = self.take(length).decode("utf-8")
        except UnicodeDecodeError:
            raise RTMPProtocolError("AMF0 string is not UTF-8") from None
        self.budget.text(text)
        return text

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise RTMPProtocolError("AMF0 value nested too deeply")
        marker = self.u8()
        self.height = 0
        if marker == STRING:
            return self.utf8(self.u16())
        if marker == LONG_STRING or marker == XML_DOCUMENT:
            return self.utf8(self.u32())
        if marker == NUMBER:
            self.budget.charge(1)
            return _double.unpack(self.take(8))[0]
        if marker == BOOLEAN:
            self.budget.charge(1)
            return self.u8() != 0
        if marker in (NULL, UNDEFINED, UNSUPPORTED):
            self.budget.charge(1)
            return None
        if marker == OBJECT:
            return self._properties({}, depth)
        if marker == TYPED_OBJECT:
            name = self.utf8(self.u16())
            return self._properties({TYPED_KEY: name}, depth)
        if marker == ECMA_ARRAY:
            self.u32()  # a hint only: the list ends with the end marker
            return self._properties(ECMAArray(), depth)
        if marker == STRICT_ARRAY:
            count = self.u32()
            if count > self.remaining():
                raise RTMPProtocolError("AMF0 array longer than its message")
            items: list[Any] = []
            opened, height = self._open(items), 0
            for _ in range(count):
                items.append(self.value(depth + 1))
                height = max(height, self.height + 1)
            self._close(opened, height)
            return items
        if marker == DATE:
            self.budget.charge(1)
            millis = _double.unpack(self.take(8))[0]
            self.take(2)  # time zone: unused, as the spec says
            try:
                return datetime.datetime.fromtimestamp(millis / 1000, datetime.timezone.utc)
            except (OverflowError, OSError, ValueError):
                raise RTMPProtocolError("AMF0 date out of range") from None
        if marker == REFERENCE:
            return self._reference(self.u16(), depth)
        if marker == AVMPLUS:
            reader = amf3.Reader(self.data, self.offset, self.budget)
            value = reader.value(depth)
            self.offset, self.height = reader.offset, reader.height
            return value
        raise RTMPProtocolError(f"unknown AMF0 marker {marker}")

    def _reference(self, index: int, depth: int) -> Any:
        value, self.height = self.references.get(index, depth)
        return value

    def _open(self, target) -> tuple[int, int]:
        return self.references.open(target)

    def _close(self, opened: tuple[int, int], height: int) -> None:
        self.references.close(opened, height)
        self.height = height

    def _properties(self, target: dict, depth: int) -> dict:
        opened, height = self._open(target), 0
        while True:
            key = self.utf8(self.u16())
            if key == "":
                if self.u8() != OBJECT_END:
                    raise RTMPProtocolError("AMF0 object without its end marker")
                self._close(opened, height)
                return target
            target[key] = self.value(depth + 1)
            height = max(height, self.height + 1)


def decode(data: bytes, maxValues: int = DEFAULT_MAX_VALUES) -> list[Any]:
    """Every value in C{data}; at most C{maxValues} in all (see L{amf3.Budget})."""
    reader = Reader(data, budget=Budget(maxValues))
    values = []
    while reader.remaining():
        values.append(reader.value())
    return values


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        return bytes([LONG_STRING]) + _u32.pack(len(raw)) + raw
    return bytes([STRING]) + _u16.pack(len(raw)) + raw


def _key(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("AMF0 property name longer than 65535 bytes")
    return _u16.pack(len(raw)) + raw


def _properties(value: dict, path: list[int], typed: bool = False) -> bytes:
    body = b"".join(_key(str(k)) + _encode(v, path) for k, v in value.items()
                    if not (typed and k == TYPED_KEY))
    return body + b"\x00\x00" + bytes([OBJECT_END])


def encode(value: Any) -> bytes:
    """
    One value as AMF0; bytes go as an AMF3 ByteArray (AMF0 has none).

    @raise TypeError: a value of a type AMF0 does not have.
    @raise ValueError: a value that contains itself, or nested deeper than
        C{amf3.MAX_ENCODE_DEPTH}.
    """
    return _encode(value, [])


def _encode(value: Any, path: list[int]) -> bytes:
    if value is None:
        return bytes([NULL])
    if isinstance(value, bool):
        return bytes([BOOLEAN, 1 if value else 0])
    if isinstance(value, (int, float)):
        return bytes([NUMBER]) + _double.pack(float(value))
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime.datetime):
        millis = value.timestamp() * 1000
        return bytes([DATE]) + _double.pack(millis) + b"\x00\x00"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes([AVMPLUS]) + amf3.encode(value)
    if not isinstance(value, (dict, list, tuple)):
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")
    enter(path, value, "AMF0")
    try:
        if isinstance(value, ECMAArray):
            return bytes([ECMA_ARRAY]) + _u32.pack(len(value)) + _properties(value, path)
        if isinstance(value, dict):
            if isinstance(value.get(TYPED_KEY), str):
                return bytes([TYPED_OBJECT]) + _key(value[TYPED_KEY]) + \
                    _properties(value, path, True)
            return bytes([OBJECT]) + _properties(value, path)
        return bytes([STRICT_ARRAY]) + _u32.pack(len(value)) + \
            b"".join(_encode(v, path) for v in value)
    finally:
        path.pop()


def encodeAll(*values: Any) -> bytes:
    return b"".join(encode(v) for v in values)
