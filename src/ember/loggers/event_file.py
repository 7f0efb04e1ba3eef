"""Scalar events appended to a TensorBoard event file.

``TensorBoardLogger`` writes the trainer's scalars here instead of through
``torch.utils.tensorboard.SummaryWriter``: importing the writer loads ``tensorboard.summary``,
absl flags and TensorBoard's TensorFlow stand-in (50 ms or more, paid by every run that logs
a number), and its writer thread wakes for each scalar and competes with training for the GIL.

The file holds TensorBoard's ``Event`` protobuf messages, framed as TFRecords exactly as
TensorBoard's ``RecordWriter`` frames them, so every TensorBoard reader sees what a
``SummaryWriter`` would have written. A scalar event has five fields, so it is encoded here, byte for
byte as ``Event.SerializeToString()`` encodes it: loading protobuf and TensorBoard's message
classes costs about 20 ms, a tenth of a short default run's whole overhead. The tests compare the
bytes with TensorBoard's own messages.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Iterable
from typing import BinaryIO

FILE_VERSION = "brain.Event:2"
# Marks these files apart from a SummaryWriter's in the same folder, whose names end in a number
# from TensorBoard's own counter: equal names would let one writer truncate the other's file.
SCALARS_SUFFIX = ".scalars"

_file_numbers = itertools.count()


class ScalarEventFile:
    """One event file in ``log_dir``, created at the first write.

    The name follows TensorBoard's ``events.out.tfevents.<time>.<host>.<pid>.<n>`` and ends in
    ``.scalars`` and the optional ``filename_suffix``. Writes go to a buffer; ``flush`` hands
    them to the operating system.
    """

    def __init__(self, log_dir: str, filename_suffix: str = "") -> None:
        self.log_dir = log_dir
        self.filename_suffix = filename_suffix
        self.path: str | None = None
        self._file: BinaryIO | None = None

    def write(self, scalars: Iterable[tuple[str, float, int | None, float]]) -> None:
        """Append one event per ``(tag, value, step, wall_time)``, as ``SummaryWriter.add_scalar`` does."""
        file = self._file if self._file is not None else self._open()
        file.write(
            b"".join(_record(scalar_event(tag, value, step, wall_time)) for tag, value, step, wall_time in scalars)
        )

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush and close; a later ``write`` starts a new file, as a reopened ``SummaryWriter`` does."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> BinaryIO:
        os.makedirs(self.log_dir, exist_ok=True)
        name = (
            f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
            f".{next(_file_numbers)}{SCALARS_SUFFIX}{self.filename_suffix}"
        )
        self.path = os.path.join(self.log_dir, name)
        file = self._file = open(self.path, "xb")  # noqa: SIM115 (open until close(): one write per flush)
        # every event file starts with its format version and the software that wrote it
        file.write(_record(version_event(time.time(), FILE_VERSION, __name__)))
        file.flush()
        return file


# ---- the Event messages (tensorboard/compat/proto/event.proto, summary.proto; proto3) ----------
# Event: wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5 (Summary),
# source_metadata = 10 (SourceMetadata: writer = 1). Summary: value = 1 (repeated Value).
# Value: tag = 1 (string), simple_value = 2 (float, in a oneof: written even when 0).
# proto3 leaves out a scalar field that holds its default (0, 0.0, ""); fields go in number order.
_FLOAT32_MAX = struct.unpack("<f", b"\xff\xff\x7f\x7f")[0]


def scalar_event(tag: str, value: float, step: int | None, wall_time: float) -> bytes:
    """``Event(wall_time, step, summary=Summary(value=[Value(tag, simple_value=value)]))``, serialised."""
    value = float(value)
    if abs(value) > _FLOAT32_MAX and value == value:  # beyond float32, as protobuf stores it: infinity
        value = value * float("inf")
    entry = _string(1, tag) + b"\x15" + struct.pack("<f", value)
    summary = _length_delimited(1, entry)
    return _double(1, wall_time) + (_int64(2, int(step)) if step is not None else b"") + _length_delimited(5, summary)


def version_event(wall_time: float, file_version: str, writer: str) -> bytes:
    """``Event(wall_time, file_version, source_metadata=SourceMetadata(writer))``, serialised."""
    return _double(1, wall_time) + _string(3, file_version) + _length_delimited(10, _string(1, writer))


def _varint(number: int) -> bytes:
    number &= (1 << 64) - 1  # a negative int64 takes ten bytes, as two's complement
    out = bytearray()
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _double(field: int, value: float) -> bytes:
    packed = struct.pack("<d", value)
    return bytes([field << 3 | 1]) + packed if packed != bytes(8) else b""  # -0.0 is not the default


def _int64(field: int, value: int) -> bytes:
    return bytes([field << 3]) + _varint(value) if value else b""


def _string(field: int, text: str) -> bytes:
    return _length_delimited(field, text.encode()) if text else b""


def _length_delimited(field: int, data: bytes) -> bytes:
    return bytes([field << 3 | 2]) + _varint(len(data)) + data


def _record(data: bytes) -> bytes:
    """TFRecord framing: length (uint64), masked CRC-32C of the length, data, masked CRC-32C of the data."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli polynomial, reflected
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, the checksum TFRecords carry."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The CRC rotated and offset, as TFRecords store it (so a CRC of CRCs is not a fixed point)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
