"""AXI4 and AXI4-Lite interfaces as ``wiring.Signature`` subclasses.

Members carry the flat AMBA names (``awaddr``, ``arvalid``, ...), so a port named
``m_axi_hbm0`` becomes ``m_axi_hbm0_awaddr`` and so on in the generated Verilog: the names that
cocotbext-axi and vendor IP integrators recognize. Signatures are from the manager's side.
"""

import enum

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Burst", "Resp", "AXI4Signature", "AXI4LiteSignature"]


class Burst(enum.IntEnum):
    FIXED = 0
    INCR = 1
    WRAP = 2


class Resp(enum.IntEnum):
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


def _check_width(name, value, allowed):
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        lo, hi = min(allowed), max(allowed)
        raise ValueError(f"{name} must be an integer from {lo} to {hi}"
                         f"{' and a power of two' if name == 'data_width' else ''}, "
                         f"not {value!r}")


class AXI4Signature(wiring.Signature):
    """An AXI4 manager interface (INCR/FIXED/WRAP bursts, IDs, no user signals).

    Parameters
    ----------
    addr_width : int
        Byte address width, 12 to 64.
    data_width : int
        Data width in bits, a power of two from 8 to 1024.
    id_width : int
        Transaction ID width, 1 to 16.
    """

    def __init__(self, *, addr_width, data_width, id_width):
        _check_width("addr_width", addr_width, range(12, 65))
        _check_width("data_width", data_width, [8 << k for k in range(8)])
        _check_width("id_width", id_width, range(1, 17))
        self._addr_width, self._data_width, self._id_width = addr_width, data_width, id_width
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}id": Out(id_width), f"{ch}addr": Out(addr_width), f"{ch}len": Out(8),
                f"{ch}size": Out(3), f"{ch}burst": Out(2), f"{ch}lock": Out(1),
                f"{ch}cache": Out(4), f"{ch}prot": Out(3), f"{ch}qos": Out(4),
                f"{ch}valid": Out(1), f"{ch}ready": In(1),
            })
        members.update({
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })
        super().__init__(members)

    addr_width = property(lambda self: self._addr_width)
    data_width = property(lambda self: self._data_width)
    id_width = property(lambda self: self._id_width)

    def __eq__(self, other):
        return (isinstance(other, AXI4Signature) and
                (self.addr_width, self.data_width, self.id_width) ==
                (other.addr_width, other.data_width, other.id_width))

    def __repr__(self):
        return (f"AXI4Signature(addr_width={self.addr_width}, data_width={self.data_width}, "
                f"id_width={self.id_width})")


class AXI4LiteSignature(wiring.Signature):
    """An AXI4-Lite manager interface.

    Parameters
    ----------
    addr_width : int
        Byte address width, 12 to 64.
    data_width : int
        32 or 64.
    """

    def __init__(self, *, addr_width, data_width=32):
        _check_width("addr_width", addr_width, range(12, 65))
        if data_width not in (32, 64):
            raise ValueError(f"data_width must be 32 or 64, not {data_width!r}")
        self._addr_width, self._data_width = addr_width, data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    addr_width = property(lambda self: self._addr_width)
    data_width = property(lambda self: self._data_width)

    def __eq__(self, other):
        return (isinstance(other, AXI4LiteSignature) and
                (self.addr_width, self.data_width) == (other.addr_width, other.data_width))

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width}, data_width={self.data_width})"
