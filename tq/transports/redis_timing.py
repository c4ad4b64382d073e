"""When tq's Redis channel sends its next script call: claims and acks held back a moment so that
one call carries several, never for longer than a few ms, and an idle consumer's recheck.

The channel decides at each hub tick (redis_channel); kombu's hub works out how long to sleep
before that tick, so what a callback leaves held back needs a hub timer (hold_until says when).
"""

from __future__ import annotations

from dataclasses import dataclass

#: An idle consumer claims anyway after this long without a wake-up (a missed invalidation,
#: a half-open connection: kombu's BRPOP times out after 1 s for the same reasons).
IDLE_RECHECK_S = 1.0
#: ... and this often where Redis refuses CLIENT TRACKING (an ACL without it): polling.
IDLE_POLL_S = 0.05
#: Under load an ack waits up to this long for the next claim to ride with; an idle consumer
#: (no claim coming) writes it with the next hub tick.
ACK_HOLD_S = 0.005
#: While less than half the prefetch window is free, a claim waits this long after the last one
#: for more acks to free slots, so that one call takes several messages; never longer.
CLAIM_HOLD_S = 0.004


@dataclass
class CallTiming:
    """A consuming channel's clock for its calls (times are time.monotonic())."""

    #: Since when the last claim found fewer messages than it asked for (None: it found all).
    idle_since: float | None = None
    #: Whether an invalidation (a push to a queue) came since the last claim was sent.
    woken: bool = False
    last_claim_at: float = 0.0
    #: When the oldest ack still waiting to be written came.
    acks_since: float = 0.0
    #: Redis refused CLIENT TRACKING: no wake-ups come, idle consumers poll.
    polling: bool = False

    @property
    def idle_recheck_s(self) -> float:
        """How long an idle consumer waits before it claims again without a wake-up."""
        return IDLE_POLL_S if self.polling else IDLE_RECHECK_S

    def claim_due(self, *, free: int, prefetch: int, now: float) -> bool:
        """Whether to claim now, with this many prefetch slots free (consuming queues)."""
        if free <= 0:
            return False
        if self.idle_since is not None and not self.woken:
            return now - self.idle_since >= self.idle_recheck_s
        held_until = self.claim_held_until(free=free, prefetch=prefetch)
        return held_until is None or now >= held_until

    def claim_held_until(self, *, free: int, prefetch: int) -> float | None:
        """When a claim held back for more acks falls due; None if it is not held back."""
        # Half the window at a time halves the claims; the other half keeps the pool busy. With
        # less free, the claim waits a moment for more acks, never for an ack that may not come:
        # with long tasks (or a prefetch multiplier of 1) a pool process would idle meanwhile.
        if prefetch and 0 < free < max(1, prefetch // 2):
            return self.last_claim_at + CLAIM_HOLD_S
        return None

    def acks_due(self, *, consuming: bool, now: float) -> bool:
        """Whether waiting acks go now (the caller has some)."""
        if self.idle_since is not None or not consuming:
            return True  # no claim is coming to carry them
        return now - self.acks_since >= ACK_HOLD_S

    def hold_until(
        self, *, pending_acks: bool, consuming: bool, free: int, prefetch: int
    ) -> float | None:
        """When held-back acks or a held-back claim fall due; None if nothing is held back."""
        dues = []
        if pending_acks and self.idle_since is None and consuming:
            dues.append(self.acks_since + ACK_HOLD_S)
        if consuming and (self.idle_since is None or self.woken):
            held_until = self.claim_held_until(free=free, prefetch=prefetch)
            if held_until is not None:
                dues.append(held_until)
        return min(dues) if dues else None
