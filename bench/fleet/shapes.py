"""
What the fleet benchmark streams, shared by the load generator, the collectors and the runner.

Plain data only (no ncplib import): collectors run under either library's interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """One kind of packet a simulated node sends: a single field with one array param."""

    name: str
    packet_type: str
    field_name: str
    param: str
    typecode: str  # array.array typecode of the param's values
    count: int  # values per packet
    rate: float  # default packets per second per connection when paced

    @property
    def data_bytes(self) -> int:
        return self.count * (1 if self.typecode == "B" else 2)


SHAPES = {
    # A DSPC sweep: 4000 u8 bins of PDAT, about 4 KiB on the wire.
    "sweep": Shape("sweep", "DSPC", "SWEP", "PDAT", "B", 4000, 40.0),
    # A DSPL I/Q capture: 16384 interleaved i16 I/Q pairs of DIQT, 64 KiB of data.
    "iq": Shape("iq", "DSPL", "TIME", "DIQT", "h", 32768, 5.0),
}
