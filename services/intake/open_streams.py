"""How many live streams the service holds open, for INTAKE_LIVE_MAX_STREAMS: this process's own
count, or with several workers (services/intake/workers.py) the sum over all of them.

The workers share a small file their parent creates (MINTLINE_INTAKE_STREAMS), mapped into each: one
64-bit slot per worker, written only by its worker and summed by any. A worker that starts again
zeroes its slot, so the streams of one that died are not counted for ever. Two workers admitting at
the same instant may both see room for the last place; the cap is a bound on resources, and one
stream over it is harmless.
"""

import mmap
import os
import struct

STREAMS_ENV = "MINTLINE_INTAKE_STREAMS"
SLOT = struct.Struct("=q")


class OpenStreams:
    """This process's open streams only."""

    def __init__(self) -> None:
        self.own = 0

    def add(self, change: int) -> None:
        self.own += change

    def total(self) -> int:
        return self.own


class SharedOpenStreams(OpenStreams):
    """This worker's open streams in its slot of the shared file; `total` is every worker's."""

    def __init__(self, path: str, slots: int, index: int) -> None:
        super().__init__()
        self.slots = slots
        self.offset = index * SLOT.size
        fd = os.open(path, os.O_RDWR)
        try:
            self.map = mmap.mmap(fd, slots * SLOT.size)
        finally:
            os.close(fd)
        SLOT.pack_into(self.map, self.offset, 0)

    def add(self, change: int) -> None:
        super().add(change)
        SLOT.pack_into(self.map, self.offset, self.own)

    def total(self) -> int:
        return sum(value for (value,) in SLOT.iter_unpack(self.map))


def create_shared_file(path: str, slots: int) -> None:
    """The parent's part: a zeroed file of `slots` slots."""
    with open(path, "wb") as file:
        file.write(bytes(slots * SLOT.size))


def open_streams(worker: int | None, workers: int) -> OpenStreams:
    """The count for this process: shared when it is a worker whose parent made the file."""
    path = os.environ.get(STREAMS_ENV)
    if worker is None or path is None:
        return OpenStreams()
    return SharedOpenStreams(path, workers, worker)
