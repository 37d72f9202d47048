"""Where an address lies in this process's memory: for tests that check arrays are views of mapped files."""

from __future__ import annotations

from pathlib import Path


def mapping_of(address: int, size: int) -> str | None:
    """The file mapped at [address, address + size) in this process (Linux /proc/self/maps), if any."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        begin, end = (int(value, 16) for value in fields[0].split("-"))
        if begin <= address and address + size <= end:
            return fields[5] if len(fields) == 6 else None
    return None
