"""Python reference of 2-D strided transfers: which bytes they touch and how they stripe."""

__all__ = ["random_descriptor", "stripes", "beats", "transfer_bytes", "locate", "unlocate",
           "port_words"]


def random_descriptor(rng, mem_size, max_bytes, max_rows=4):
    """A random 2-D transfer of at most ``max_bytes`` in total, any alignment, that fits in
    ``mem_size`` bytes; rows never overlap (the stride is at least the row length)."""
    rows = int(rng.integers(1, max_rows, endpoint=True))
    row_bytes = int(rng.integers(1, max(1, max_bytes // rows), endpoint=True))
    stride = row_bytes + int(rng.integers(0, 3 * row_bytes + 64))
    span = (rows - 1) * stride + row_bytes
    addr = int(rng.integers(0, mem_size - span + 1))
    return {"addr": addr, "rows": rows, "row_bytes": row_bytes, "stride": stride}


def transfer_bytes(desc):
    """The byte ranges ``[start, end)`` of a transfer, row by row."""
    return [(desc["addr"] + r * desc["stride"], desc["addr"] + r * desc["stride"] +
             desc["row_bytes"]) for r in range(desc["rows"])]


def stripes(desc, stripe_bytes):
    """The stripes of a transfer in order: ``(stripe index, lo, hi, last, end)`` with bytes
    ``[lo, hi)`` of the stripe belonging to the transfer."""
    out = []
    rows = transfer_bytes(desc)
    for r, (start, end) in enumerate(rows):
        first, final = start // stripe_bytes, (end - 1) // stripe_bytes
        for s in range(first, final + 1):
            lo = max(start, s * stripe_bytes) - s * stripe_bytes
            hi = min(end, (s + 1) * stripe_bytes) - s * stripe_bytes
            out.append((s, lo, hi, s == final, s == final and r == len(rows) - 1))
    return out


def beats(memory, desc, stripe_bytes):
    """The stripes of transfer ``desc`` as the read engine delivers them from ``memory`` (bytes
    by global address, a numpy ``uint8`` array): ``Beat`` payloads with the whole stripe's
    data, the transfer's bytes in ``mask``, ``last`` and ``end``."""
    S = stripe_bytes
    return [{"data": int.from_bytes(memory[s * S:(s + 1) * S].tobytes(), "little"),
             "mask": (1 << hi) - (1 << lo), "last": last, "end": end}
            for s, lo, hi, last, end in stripes(desc, S)]


def locate(addr, granule, ports):
    """The port and port address of global byte ``addr`` when the address space is
    interleaved over ``ports`` ports at ``granule`` bytes."""
    j, off = divmod(addr, granule)
    return j % ports, (j // ports) * granule + off


def unlocate(port, port_addr, granule, ports):
    """The global byte address of ``port_addr`` on ``port``: the inverse of :func:`locate`."""
    j, off = divmod(port_addr, granule)
    return (j * ports + port) * granule + off


def port_words(start, end, word_bytes, granule, ports, port):
    """The port addresses of the words of ``port`` that bytes ``[start, end)`` touch, in
    order (byte by byte, no shortcut)."""
    out = []
    for a in range(start - start % word_bytes, end, word_bytes):
        p, pa = locate(a, granule, ports)
        if p == port:
            out.append(pa)
    return out
