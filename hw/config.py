"""Accelerator configuration: one frozen object from which every width and depth is derived."""

import dataclasses
import json
from dataclasses import dataclass

__all__ = ["AccelConfig", "PRESETS", "MAX_INTERLEAVE"]

MAX_INTERLEAVE = 4096       # the interleave granule never exceeds an AXI4 4 KiB page


def _is_pow2(x):
    return x > 0 and (x & (x - 1)) == 0


@dataclass(frozen=True)
class AccelConfig:
    """Parameters of one accelerator instance.

    Parameters
    ----------
    name : str
        Name of the configuration; used for the generated file names.
    rows, cols : int
        Systolic array shape: ``rows`` is the reduction depth of one weight-stationary tile
        (K), ``cols`` the number of output columns (N).
    in_width : int
        Width of the A and B operands in bits.
    in_signed : bool
        Whether operands are two's complement (``True``) or unsigned.
    acc_width : int
        Accumulator width in bits; sums wrap modulo ``2**acc_width``. At least the product width.
    spad_depth : int
        Scratchpad depth in rows of ``rows`` operands (per bank).
    acc_depth : int
        Accumulator memory depth in rows of ``cols`` accumulators.
    mem_ports : int
        Number of AXI4 memory (HBM pseudo-channel) manager ports.
    port_width : int
        Data width of each memory port in bits (a power of two, 32 to 1024).
    burst_len : int
        Maximum AXI4 INCR burst length in beats (1 to 256).
    reads_in_flight : int
        Outstanding read bursts allowed per port (a multiple of ``axi_ids``).
    axi_ids : int
        AXI IDs used per port for reads (a power of two); read bursts take them in turn, so
        their responses may return out of order. Writes use ID 0, so that they land in the
        order issued.
    addr_width : int
        Byte address width of the accelerator's global (interleaved) address space.
    interleave_bytes : int
        Interleave granule: global byte ``a`` lives on port ``(a // G) % mem_ports`` at port
        address ``(a // (G * mem_ports)) * G + a % G``. A power of two from ``port_bytes`` to
        4096; 0 (the default) stands for one port word, ``port_bytes``, and follows
        ``port_width`` through :meth:`replace`.
    post_lanes : int
        Columns the STORE post-processor requantizes per cycle (each lane has its own
        ``acc_width`` x 16-bit multiplier); a row takes ``ceil(cols / post_lanes)`` cycles.
        0 to ``cols``; 0 (the default) stands for ``cols``, one row per cycle.
    load_rows : int
        Scratchpad rows a LOAD writes per cycle (a power of two dividing ``spad_depth``): each
        bank is split into this many row-interleaved sub-banks, and the load engine cuts up to
        this many rows out of a stripe per cycle when several rows fit in one.
    """

    name: str = "default"
    rows: int = 8
    cols: int = 8
    in_width: int = 8
    in_signed: bool = True
    acc_width: int = 32
    spad_depth: int = 1024
    acc_depth: int = 512
    mem_ports: int = 4
    port_width: int = 256
    burst_len: int = 16
    reads_in_flight: int = 32
    axi_ids: int = 4
    addr_width: int = 34
    interleave_bytes: int = 0
    post_lanes: int = 0
    load_rows: int = 1

    def __post_init__(self):
        def positive(field, value, lo=1, hi=None):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo or (
                    hi is not None and value > hi):
                allowed = f"an integer from {lo} to {hi}" if hi is not None else \
                    f"an integer of at least {lo}"
                raise ValueError(f"{field} must be {allowed}, not {value!r}")

        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"name must be a Python identifier, not {self.name!r}")
        positive("rows", self.rows, 1, 256)
        positive("cols", self.cols, 1, 256)
        positive("in_width", self.in_width, 2, 32)
        if not isinstance(self.in_signed, bool):
            raise ValueError(f"in_signed must be True or False, not {self.in_signed!r}")
        positive("acc_width", self.acc_width, 1, 64)
        if self.acc_width < self.product_width:
            raise ValueError(
                f"acc_width must be at least the product width {self.product_width} "
                f"(2 * in_width), not {self.acc_width!r}")
        positive("spad_depth", self.spad_depth, 1)
        positive("acc_depth", self.acc_depth, 1)
        positive("mem_ports", self.mem_ports, 1, 32)
        positive("port_width", self.port_width, 32, 1024)
        if not _is_pow2(self.port_width):
            raise ValueError(
                f"port_width must be a power of two from 32 to 1024, not {self.port_width!r}")
        positive("burst_len", self.burst_len, 1, 256)
        positive("reads_in_flight", self.reads_in_flight, 1, 256)
        positive("axi_ids", self.axi_ids, 1, 256)
        if not _is_pow2(self.axi_ids) or self.reads_in_flight % self.axi_ids:
            raise ValueError(f"axi_ids must be a power of two dividing reads_in_flight "
                             f"({self.reads_in_flight}), not {self.axi_ids!r}")
        if not _is_pow2(self.mem_ports):
            raise ValueError(f"mem_ports must be a power of two from 1 to 32, "
                             f"not {self.mem_ports!r}")
        positive("addr_width", self.addr_width, 16, 64)
        if type(self.interleave_bytes) is int and self.interleave_bytes == 0:
            object.__setattr__(self, "interleave_bytes", self.port_bytes)
        G = self.interleave_bytes
        if (isinstance(G, bool) or not isinstance(G, int) or not _is_pow2(G) or
                G < self.port_bytes or G > MAX_INTERLEAVE):
            raise ValueError(f"interleave_bytes must be a power of two from port_bytes "
                             f"({self.port_bytes}) to {MAX_INTERLEAVE}, or 0 for port_bytes, "
                             f"not {G!r}")
        if (isinstance(self.post_lanes, bool) or not isinstance(self.post_lanes, int) or
                not 0 <= self.post_lanes <= self.cols):
            raise ValueError(f"post_lanes must be an integer from 0 to cols ({self.cols}), "
                             f"0 for cols, not {self.post_lanes!r}")
        positive("load_rows", self.load_rows, 1, 64)
        if not _is_pow2(self.load_rows) or self.spad_depth % self.load_rows:
            raise ValueError(f"load_rows must be a power of two from 1 to 64 dividing "
                             f"spad_depth ({self.spad_depth}), not {self.load_rows!r}")

    # Derived widths -------------------------------------------------------------------------

    @property
    def product_width(self):
        """Width of one operand product."""
        return 2 * self.in_width

    @property
    def port_bytes(self):
        """Bytes per memory-port beat."""
        return self.port_width // 8

    @property
    def stripe_bytes(self):
        """Bytes of one engine beat: ``mem_ports`` port words, aligned in the global address
        space. A stripe draws on one port per ``interleave_bytes`` it spans."""
        return self.port_bytes * self.mem_ports

    @property
    def granule_words(self):
        """Port words per interleave granule."""
        return self.interleave_bytes // self.port_bytes

    @property
    def segment_words(self):
        """Most words one port contributes to a stripe: ``min(granule_words, mem_ports)``.
        1 means every port owns a fixed lane of each stripe (no reordering needed)."""
        return min(self.granule_words, self.mem_ports)

    @property
    def port_addr_width(self):
        """Byte address width seen on each memory port."""
        return self.addr_width - (self.mem_ports.bit_length() - 1)

    @property
    def axi_id_width(self):
        return max(1, (self.axi_ids - 1).bit_length())

    @property
    def macs(self):
        """Multiply-accumulate units in the array."""
        return self.rows * self.cols

    @property
    def post_lane_count(self):
        """Columns requantized per cycle: ``post_lanes``, or ``cols`` for 0."""
        return self.post_lanes or self.cols

    @property
    def post_passes(self):
        """Cycles the post-processor spends on one row."""
        return -(-self.cols // self.post_lane_count)

    @property
    def in_min(self):
        return -(1 << (self.in_width - 1)) if self.in_signed else 0

    @property
    def in_max(self):
        return (1 << (self.in_width - 1)) - 1 if self.in_signed else (1 << self.in_width) - 1

    # Serialization --------------------------------------------------------------------------

    def replace(self, **changes):
        """A copy with ``changes`` applied (and validated). A granule of one port word stays
        one port word when ``port_width`` changes."""
        if ("port_width" in changes and "interleave_bytes" not in changes and
                self.interleave_bytes == self.port_bytes):
            changes["interleave_bytes"] = 0
        return dataclasses.replace(self, **changes)

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))

    @classmethod
    def fields(cls):
        return dataclasses.fields(cls)


PRESETS = {
    "tiny": AccelConfig(name="tiny", rows=2, cols=2, spad_depth=64, acc_depth=64, mem_ports=1,
                        port_width=64, burst_len=8, reads_in_flight=4),
    "default": AccelConfig(load_rows=4),
    "large": AccelConfig(name="large", rows=16, cols=16, spad_depth=2048, acc_depth=1024,
                         load_rows=8),
    # Lattice ECP5-85F (156 MULT18X18D, 208 DP16KD): 144 DSPs as MACs; four post-processing
    # lanes (8 DSPs) requantize a row in three cycles; the controller's region multiply
    # takes the last two. One 256-bit memory port: the engines' stripe datapaths (realigners,
    # ports) grow with the stripe, and with four ports they alone would fill the device.
    "ecp5": AccelConfig(name="ecp5", rows=12, cols=12, post_lanes=4, mem_ports=1),
}
