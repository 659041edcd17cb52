"""
AMF3 values (as Flash clients send objects inside AMF0 messages), without
I/O. Decoding covers every AMF3 type; encoding covers what a server sends.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from wcs.rtmp.errors import RTMPProtocolError

UNDEFINED, NULL, FALSE, TRUE, INTEGER, DOUBLE, STRING, XML_DOC = range(8)
DATE, ARRAY, OBJECT, XML, BYTE_ARRAY = 8, 9, 10, 11, 12
VECTOR_INT, VECTOR_UINT, VECTOR_DOUBLE, VECTOR_OBJECT, DICTIONARY = 13, 14, 15, 16, 17

MAX_DEPTH = 64
_double = struct.Struct(">d")


class Reader:
    def __init__(self, data, offset: int = 0):
        self.data = memoryview(data)
        self.offset = offset
        self.strings: list[str] = []
        self.objects: list[Any] = []
        self.traits: list[tuple[str, bool, list[str]]] = []

    def take(self, count: int) -> bytes:
        end = self.offset + count
        if count < 0 or end > len(self.data):
            raise RTMPProtocolError("AMF3 value truncated")
        chunk = bytes(self.data[self.offset:end])
        self.offset = end
        return chunk

    def u29(self) -> int:
        result = 0
        for i in range(4):
            byte = self.take(1)[0]
            if i == 3:
                return (result << 8) | byte
            result = (result << 7) | (byte & 0x7F)
            if not byte & 0x80:
                return result
        return result

    def string(self) -> str:
        header = self.u29()
        if not header & 1:
            return self._ref(self.strings, header >> 1, "string")
        try:
            text = self.take(header >> 1).decode("utf-8")
        except UnicodeDecodeError:
            raise RTMPProtocolError("AMF3 string is not UTF-8") from None
        if text:
            self.strings.append(text)
        return text

    @staticmethod
    def _ref(table: list, index: int, what: str):
        if index >= len(table):
            raise RTMPProtocolError(f"AMF3 reference to an unknown {what}")
        return table[index]

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise RTMPProtocolError("AMF3 value nested too deeply")
        marker = self.take(1)[0]
        if marker in (UNDEFINED, NULL):
            return None
        if marker in (FALSE, TRUE):
            return marker == TRUE
        if marker == INTEGER:
            n = self.u29()
            return n - (1 << 29) if n & (1 << 28) else n
        if marker == DOUBLE:
            return _double.unpack(self.take(8))[0]
        if marker == STRING:
            return self.string()
        if marker in (XML_DOC, XML, BYTE_ARRAY):
            header = self.u29()
            if not header & 1:
                return self._ref(self.objects, header >> 1, "object")
            raw = self.take(header >> 1)
            value = raw if marker == BYTE_ARRAY else raw.decode("utf-8", "replace")
            self.objects.append(value)
            return value
        if marker == DATE:
            header = self.u29()
            if not header & 1:
                return self._ref(self.objects, header >> 1, "object")
            millis = _double.unpack(self.take(8))[0]
            try:
                value = datetime.datetime.fromtimestamp(millis / 1000, datetime.timezone.utc)
            except (OverflowError, OSError, ValueError):
                raise RTMPProtocolError("AMF3 date out of range") from None
            self.objects.append(value)
            return value
        if marker == ARRAY:
            return self._array(depth)
        if marker == OBJECT:
            return self._object(depth)
        if marker in (VECTOR_INT, VECTOR_UINT, VECTOR_DOUBLE, VECTOR_OBJECT):
            return self._vector(marker, depth)
        if marker == DICTIONARY:
            header = self.u29()
            if not header & 1:
                return self._ref(self.objects, header >> 1, "object")
            self.take(1)  # weak keys flag
            result: dict = {}
            self.objects.append(result)
            for _ in range(header >> 1):
                key = self.value(depth + 1)
                result[key if isinstance(key, (str, int, float, bool)) else repr(key)] = \
                    self.value(depth + 1)
            return result
        raise RTMPProtocolError(f"unknown AMF3 marker {marker}")

    def _array(self, depth: int):
        header = self.u29()
        if not header & 1:
            return self._ref(self.objects, header >> 1, "object")
        count = header >> 1
        if count > len(self.data) - self.offset:
            raise RTMPProtocolError("AMF3 array longer than its message")
        associative: dict = {}
        dense: list = []
        self.objects.append(dense)
        while True:
            key = self.string()
            if key == "":
                break
            associative[key] = self.value(depth + 1)
        dense.extend(self.value(depth + 1) for _ in range(count))
        if associative:
            associative.update(enumerate(dense))
            return associative
        return dense

    def _object(self, depth: int) -> dict:
        header = self.u29()
        if not header & 1:
            return self._ref(self.objects, header >> 1, "object")
        if not header & 2:
            name, dynamic, names = self._ref(self.traits, header >> 2, "traits")
        else:
            if header & 4:
                raise RTMPProtocolError("AMF3 externalizable objects are not supported")
            dynamic = bool(header & 8)
            name = self.string()
            names = [self.string() for _ in range(header >> 4)]
            self.traits.append((name, dynamic, names))
        result: dict = {"__class__": name} if name else {}
        self.objects.append(result)
        for key in names:
            result[key] = self.value(depth + 1)
        if dynamic:
            while True:
                key = self.string()
                if key == "":
                    break
                result[key] = self.value(depth + 1)
        return result

    def _vector(self, marker: int, depth: int) -> list:
        header = self.u29()
        if not header & 1:
            return self._ref(self.objects, header >> 1, "object")
        count = header >> 1
        self.take(1)  # fixed-length flag
        size = {VECTOR_INT: 4, VECTOR_UINT: 4, VECTOR_DOUBLE: 8}.get(marker)
        if size is not None and count * size > len(self.data) - self.offset:
            raise RTMPProtocolError("AMF3 vector longer than its message")
        items: list = []
        self.objects.append(items)
        if marker == VECTOR_OBJECT:
            self.string()  # element type name
            items.extend(self.value(depth + 1) for _ in range(count))
        else:
            fmt = {VECTOR_INT: ">i", VECTOR_UINT: ">I", VECTOR_DOUBLE: ">d"}[marker]
            items.extend(struct.unpack(fmt, self.take(size))[0] for _ in range(count))
        return items


def decode(data: bytes) -> list[Any]:
    reader = Reader(data)
    values = []
    while reader.offset < len(reader.data):
        values.append(reader.value())
    return values


def _u29(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return bytes([(n >> 7) | 0x80, n & 0x7F])
    if n < 0x200000:
        return bytes([(n >> 14) | 0x80, ((n >> 7) & 0x7F) | 0x80, n & 0x7F])
    if n < 0x40000000:
        return bytes([(n >> 22) | 0x80, ((n >> 15) & 0x7F) | 0x80, ((n >> 8) & 0x7F) | 0x80,
                      n & 0xFF])
    raise ValueError("U29 out of range")


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _u29((len(raw) << 1) | 1) + raw


def encode(value: Any) -> bytes:
    """One value as AMF3 (no reference tables: every value written out)."""
    if value is None:
        return bytes([NULL])
    if value is True:
        return bytes([TRUE])
    if value is False:
        return bytes([FALSE])
    if isinstance(value, int) and -(1 << 28) <= value < (1 << 28):
        return bytes([INTEGER]) + _u29(value & 0x1FFFFFFF)
    if isinstance(value, (int, float)):
        return bytes([DOUBLE]) + _double.pack(float(value))
    if isinstance(value, str):
        return bytes([STRING]) + _string(value)
    if isinstance(value, bytes):
        return bytes([BYTE_ARRAY]) + _u29((len(value) << 1) | 1) + value
    if isinstance(value, datetime.datetime):
        return bytes([DATE, 1]) + _double.pack(value.timestamp() * 1000)
    if isinstance(value, (list, tuple)):
        return bytes([ARRAY]) + _u29((len(value) << 1) | 1) + b"\x01" + \
            b"".join(encode(v) for v in value)
    if isinstance(value, dict):
        name = value.get("__class__")
        typed = isinstance(name, str)
        body = b"".join(_string(str(k)) + encode(v) for k, v in value.items()
                        if not (typed and k == "__class__"))
        name = name if typed else ""
        # Dynamic object, no sealed members: traits inline (0b1011).
        return bytes([OBJECT, 0x0B]) + _string(name) + body + b"\x01"
    raise TypeError(f"cannot encode {type(value).__name__} as AMF3")
