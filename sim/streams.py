"""Stream drivers for Amaranth's simulator, with random idle cycles and random backpressure."""

__all__ = ["send", "recv"]


async def send(ctx, stream, beats, rng=None, idle=0.0):
    """Drive ``beats`` (payload values) into ``stream``; before each beat, with probability
    ``idle``, hold valid low for a cycle."""
    for beat in beats:
        while rng is not None and rng.random() < idle:
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.payload, beat)
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def recv(ctx, stream, count, rng=None, stall=0.0):
    """Take ``count`` payloads from ``stream``; each cycle, with probability ``stall``, hold
    ready low. Returns the payloads as Python values and the cycle each was taken in."""
    out, when, cycle = [], [], 0
    while len(out) < count:
        ready = not (rng is not None and rng.random() < stall)
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            out.append(payload)
            when.append(cycle)
        cycle += 1
    ctx.set(stream.ready, 0)
    return out, when
