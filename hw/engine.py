"""The interface every instruction engine (load, compute, store) shares with the controller.

The controller decodes instructions, takes their ``pop_*`` dependency tokens, and hands each
one to its engine on the engine's ``instr`` stream; an accepted instruction has its tokens.
An engine runs its instructions in order and may accept the next one before the previous one
has finished, so that consecutive instructions overlap.

``retire`` pulses once per instruction, in order, when everything the instruction wrote is
visible to the other engines from the next cycle on, when they can first act on it (a LOAD's
buffer rows are written, the last of them in this cycle at the latest; a MATMUL has read its
scratchpad rows and its result rows are in the accumulator memory; a STORE has read its
accumulator rows and every write response has come back OKAY). The controller then gives the
tokens of ``push_prev`` and ``push_next``.

``error`` pulses instead of ``retire`` when an instruction fails (a memory error response);
the controller then raises ``abort``. While ``abort`` is high an engine takes and drops every
instruction offered, retires nothing more, lets the memory transactions already issued
finish (dropping their data), and lowers ``busy`` once nothing is in flight, so an abort
never hangs and never leaves a transaction open on a port.

``busy`` is high from accepting an instruction until it retires (or is dropped) and while
anything it started is in flight. ``stall`` is high in busy cycles in which the engine makes
no progress because it waits on another block (memory data or the array's backpressure);
the performance counters count both.
"""

from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from .isa import ErrorCode, HeaderLayout

__all__ = ["ErrorCode", "EngineInstr", "RetireLayout", "ErrorLayout", "engine_members"]


class EngineInstr(data.StructLayout):
    """An instruction as an engine receives it: header, the opcode's body, and its index in
    the program (for error reports)."""

    def __init__(self, body):
        super().__init__({"header": HeaderLayout(), "body": body, "index": 32})


class RetireLayout(data.StructLayout):
    """The tokens a retiring instruction gives."""

    def __init__(self):
        super().__init__({"push_prev": 1, "push_next": 1})


class ErrorLayout(data.StructLayout):
    """A failed instruction: why, which one, and the global byte address that failed."""

    def __init__(self, cfg):
        super().__init__({"code": ErrorCode, "index": 32, "addr": cfg.addr_width})


def engine_members(cfg, body):
    """The members every engine has; ``body`` is the layout of its opcode's body."""
    return {
        "instr": In(stream.Signature(EngineInstr(body))),
        "retire": Out(stream.Signature(RetireLayout(), always_ready=True)),
        "error": Out(stream.Signature(ErrorLayout(cfg), always_ready=True)),
        "abort": In(1),
        "busy": Out(1),
        "stall": Out(1),
    }
