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
DEFAULT_MAX_VALUES = 100_000
_double = struct.Struct(">d")


class Budget:
    """
    What one message may decode to, counted as a walk of the result meets
    it: one unit a value, one more per 64 characters of a string. A
    reference costs what it points to, so that a few hundred bytes of
    references to references cannot decode into a structure that takes for
    ever to print, encode or compare. Shared by the AMF0 and AMF3 readers of
    one message.
    """

    __slots__ = ("limit", "used")

    def __init__(self, limit: int = DEFAULT_MAX_VALUES):
        self.limit = limit
        self.used = 0

    def charge(self, units: int) -> None:
        self.used += units
        if self.used > self.limit:
            raise RTMPProtocolError(f"AMF message decodes to more than {self.limit} values")

    def text(self, text) -> None:
        self.charge(1 + (len(text) >> 6))


class ObjectTable:
    """
    The values a reference may name, in decoding order, each with its
    (cost, height) once decoded: a reference costs what its value cost, and
    one to a value still being decoded (a cycle) is refused.
    """

    def __init__(self, budget: Budget, what: str):
        self.budget = budget
        self.what = what
        self.values: list[Any] = []
        self.sizes: list[tuple[int, int] | None] = []

    def open(self, value) -> tuple[int, int]:
        """Enter C{value} (one unit): (its index, the budget used before it)."""
        used = self.budget.used
        self.budget.charge(1)
        self.values.append(value)
        self.sizes.append(None)
        return len(self.values) - 1, used

    def close(self, opened: tuple[int, int], height: int) -> None:
        index, used = opened
        self.sizes[index] = (self.budget.used - used, height)

    def get(self, index: int, depth: int) -> tuple[Any, int]:
        """The value at C{index} referred to at C{depth}, charged: (value, height)."""
        if index >= len(self.values):
            raise RTMPProtocolError(f"{self.what} reference to an unknown object")
        size = self.sizes[index]
        if size is None:
            raise RTMPProtocolError(f"{self.what} object contains itself")
        cost, height = size
        if depth + height > MAX_DEPTH:
            raise RTMPProtocolError(f"{self.what} value nested too deeply")
        self.budget.charge(cost)
        return self.values[index], height


class Reader:
    """
    Reads values; raises L{RTMPProtocolError} on bad bytes, over the budget,
    or on an object that contains itself. After L{value}, C{height} is the
    nesting of what it returned (0 for a scalar).
    """

    def __init__(self, data, offset: int = 0, budget: Budget | None = None):
        self.data = memoryview(data)
        self.offset = offset
        self.budget = budget if budget is not None else Budget()
        self.height = 0
        self.strings: list[str] = []
        self.objects = ObjectTable(self.budget, "AMF3")
        self.traits: list[tuple[str, bool, list[str], int]] = []

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
            text = self._ref(self.strings, header >> 1, "string")
        else:
            try:
                text = self.take(header >> 1).decode("utf-8")
            except UnicodeDecodeError:
                raise RTMPProtocolError("AMF3 string is not UTF-8") from None
            if text:
                self.strings.append(text)
        self.budget.text(text)
        return text

    @staticmethod
    def _ref(table: list, index: int, what: str):
        if index >= len(table):
            raise RTMPProtocolError(f"AMF3 reference to an unknown {what}")
        return table[index]

    def _objectRef(self, header: int, depth: int):
        value, self.height = self.objects.get(header >> 1, depth)
        return value

    def _open(self, value) -> tuple[int, int]:
        return self.objects.open(value)

    def _close(self, opened: tuple[int, int], height: int) -> None:
        self.objects.close(opened, height)
        self.height = height

    def _child(self, depth: int, height: list[int]) -> Any:
        value = self.value(depth + 1)
        if self.height + 1 > height[0]:
            height[0] = self.height + 1
        return value

    def value(self, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise RTMPProtocolError("AMF3 value nested too deeply")
        marker = self.take(1)[0]
        self.height = 0
        if marker == STRING:
            return self.string()
        if marker <= DOUBLE:
            self.budget.charge(1)
            if marker in (UNDEFINED, NULL):
                return None
            if marker in (FALSE, TRUE):
                return marker == TRUE
            if marker == INTEGER:
                n = self.u29()
                return n - (1 << 29) if n & (1 << 28) else n
            return _double.unpack(self.take(8))[0]
        if marker in (XML_DOC, XML, BYTE_ARRAY):
            header = self.u29()
            if not header & 1:
                return self._objectRef(header, depth)
            raw = self.take(header >> 1)
            value = raw if marker == BYTE_ARRAY else raw.decode("utf-8", "replace")
            opened = self._open(value)
            self.budget.charge(len(raw) >> 6)
            self._close(opened, 0)
            return value
        if marker == DATE:
            header = self.u29()
            if not header & 1:
                return self._objectRef(header, depth)
            millis = _double.unpack(self.take(8))[0]
            try:
                value = datetime.datetime.fromtimestamp(millis / 1000, datetime.timezone.utc)
            except (OverflowError, OSError, ValueError):
                raise RTMPProtocolError("AMF3 date out of range") from None
            self._close(self._open(value), 0)
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
                return self._objectRef(header, depth)
            self.take(1)  # weak keys flag
            result: dict = {}
            opened, height = self._open(result), [0]
            for index in range(header >> 1):
                key = self._child(depth, height)
                # An object key is named, never repr()-ed: walking a decoded
                # structure costs time out of proportion to its bytes.
                if key is None or not isinstance(key, (str, int, float, bool)):
                    key = f"<{type(key).__name__} key {index}>"
                result[key] = self._child(depth, height)
            self._close(opened, height[0])
            return result
        raise RTMPProtocolError(f"unknown AMF3 marker {marker}")

    def _array(self, depth: int):
        header = self.u29()
        if not header & 1:
            return self._objectRef(header, depth)
        count = header >> 1
        if count > len(self.data) - self.offset:
            raise RTMPProtocolError("AMF3 array longer than its message")
        associative: dict = {}
        dense: list = []
        opened, height = self._open(dense), [0]
        while True:
            key = self.string()
            if key == "":
                break
            associative[key] = self._child(depth, height)
        for _ in range(count):
            dense.append(self._child(depth, height))
        if associative:
            associative.update(enumerate(dense))
            self.objects.values[opened[0]] = associative  # what a reference to it means
            self._close(opened, height[0])
            return associative
        self._close(opened, height[0])
        return dense

    def _object(self, depth: int) -> dict:
        header = self.u29()
        if not header & 1:
            return self._objectRef(header, depth)
        if not header & 2:
            name, dynamic, names, cost = self._ref(self.traits, header >> 2, "traits")
            self.budget.charge(cost)  # the member names, met again in this object
        else:
            if header & 4:
                raise RTMPProtocolError("AMF3 externalizable objects are not supported")
            dynamic = bool(header & 8)
            used = self.budget.used
            name = self.string()
            names = [self.string() for _ in range(header >> 4)]
            self.traits.append((name, dynamic, names, self.budget.used - used))
        result: dict = {"__class__": name} if name else {}
        opened, height = self._open(result), [0]
        for key in names:
            result[key] = self._child(depth, height)
        if dynamic:
            while True:
                key = self.string()
                if key == "":
                    break
                result[key] = self._child(depth, height)
        self._close(opened, height[0])
        return result

    def _vector(self, marker: int, depth: int) -> list:
        header = self.u29()
        if not header & 1:
            return self._objectRef(header, depth)
        count = header >> 1
        self.take(1)  # fixed-length flag
        size = {VECTOR_INT: 4, VECTOR_UINT: 4, VECTOR_DOUBLE: 8}.get(marker)
        if size is not None and count * size > len(self.data) - self.offset:
            raise RTMPProtocolError("AMF3 vector longer than its message")
        items: list = []
        opened, height = self._open(items), [0]
        if marker == VECTOR_OBJECT:
            self.string()  # element type name
            for _ in range(count):
                items.append(self._child(depth, height))
        else:
            self.budget.charge(count)
            fmt = {VECTOR_INT: ">i", VECTOR_UINT: ">I", VECTOR_DOUBLE: ">d"}[marker]
            items.extend(struct.unpack(fmt, self.take(size))[0] for _ in range(count))
        self._close(opened, height[0])
        return items


def decode(data: bytes, maxValues: int = DEFAULT_MAX_VALUES) -> list[Any]:
    """Every value in C{data}; at most C{maxValues} in all (see L{Budget})."""
    reader = Reader(data, budget=Budget(maxValues))
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


MAX_ENCODE_DEPTH = 128


def encode(value: Any) -> bytes:
    """
    One value as AMF3 (no reference tables: every value written out).

    @raise TypeError: a value of a type AMF3 does not have.
    @raise ValueError: a value that contains itself, or nested deeper than
        C{MAX_ENCODE_DEPTH}.
    """
    return _encode(value, [])


def _encode(value: Any, path: list[int]) -> bytes:
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
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        return bytes([BYTE_ARRAY]) + _u29((len(value) << 1) | 1) + value
    if isinstance(value, datetime.datetime):
        return bytes([DATE, 1]) + _double.pack(value.timestamp() * 1000)
    if not isinstance(value, (list, tuple, dict)):
        raise TypeError(f"cannot encode {type(value).__name__} as AMF3")
    enter(path, value, "AMF3")
    try:
        if isinstance(value, dict):
            name = value.get("__class__")
            typed = isinstance(name, str)
            body = b"".join(_string(str(k)) + _encode(v, path) for k, v in value.items()
                            if not (typed and k == "__class__"))
            # Dynamic object, no sealed members: traits inline (0b1011).
            return bytes([OBJECT, 0x0B]) + _string(name if typed else "") + body + b"\x01"
        return bytes([ARRAY]) + _u29((len(value) << 1) | 1) + b"\x01" + \
            b"".join(_encode(v, path) for v in value)
    finally:
        path.pop()


def enter(path: list[int], container, what: str) -> None:
    """Step into C{container} while encoding: refuse cycles and too deep nesting."""
    if id(container) in path:
        raise ValueError(f"{what}: a value that contains itself cannot be encoded")
    if len(path) >= MAX_ENCODE_DEPTH:
        raise ValueError(f"{what}: value nested deeper than {MAX_ENCODE_DEPTH}")
    path.append(id(container))
