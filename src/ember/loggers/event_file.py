"""Scalar events appended to a TensorBoard event file.

``TensorBoardLogger`` writes the trainer's scalars here instead of through
``torch.utils.tensorboard.SummaryWriter``: importing the writer loads ``tensorboard.summary``,
absl flags and TensorBoard's TensorFlow stand-in (50 ms or more, paid by every run that logs
a number), and its writer thread wakes for each scalar and competes with training for the GIL.
The events are TensorBoard's own protobuf messages (``tensorboard.compat.proto``), framed as
TFRecords exactly as TensorBoard's ``RecordWriter`` frames them, so every TensorBoard reader
sees what a ``SummaryWriter`` would have written.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Iterable
from typing import BinaryIO

from tensorboard.compat.proto.event_pb2 import Event, SourceMetadata
from tensorboard.compat.proto.summary_pb2 import Summary

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
        records = []
        for tag, value, step, wall_time in scalars:
            event = Event(wall_time=wall_time, summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)]))
            if step is not None:
                event.step = int(step)
            records.append(_record(event.SerializeToString()))
        file.write(b"".join(records))

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
        first = Event(wall_time=time.time(), file_version=FILE_VERSION, source_metadata=SourceMetadata(writer=__name__))
        file.write(_record(first.SerializeToString()))
        file.flush()
        return file


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
