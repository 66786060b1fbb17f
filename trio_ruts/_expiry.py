"""Session lifetimes: the idle timeout, the absolute cap and how often reads extend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ._limits import MAX_TTL
from ._store import Touch

#: Touches are coalesced over a tenth of ``idle`` by default, but at least this many seconds.
MIN_TOUCH_INTERVAL: Final = 1.0


def _check_seconds(value: object, what: str) -> None:
    if value is None:
        return
    if type(value) is not int or not 0 < value <= MAX_TTL:
        raise ValueError(
            f"Expiry {what} must be None or a positive whole number of seconds (at most "
            f"{MAX_TTL}); got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class Expiry:
    """How long sessions live: an idle timeout, an absolute cap, and how often reads extend.

    Args:
        idle: seconds. Every read or write of the session extends its lifetime to at least
            ``idle`` seconds from now (the store's clock), so an active user stays logged in.
            ``None``: only writes extend it, to the cookie's ``max_age`` (reads never do).
        absolute: seconds. The session never outlives its creation plus ``absolute``,
            whatever writes, touches, field TTLs or ``-1`` ask; ``regenerate()`` keeps the
            creation time. ``None``: no cap.
        touch_interval: seconds (may be fractional) over which read extensions are
            coalesced: a read extends only when the remaining lifetime has fallen below
            ``idle - touch_interval``, so most reads write nothing. Default: a tenth of
            ``idle``, at least 1 s (and below ``idle``: half of it for ``idle=1``).

    Raises:
        ValueError: a lifetime that is not a positive whole number of seconds, a
            ``touch_interval`` without ``idle``, or one not strictly between 0 and ``idle``.

    Without an ``Expiry``, a session uses ``Expiry(idle=cookie.max_age)`` (sessions slide);
    with ``max_age=-1`` (persistent sessions) there is nothing to slide: ``Expiry()``.
    """

    idle: int | None = None
    absolute: int | None = None
    touch_interval: float | None = None
    # What reads send to the store, derived once: every request needs it.
    _touch: Touch | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        _check_seconds(self.idle, "idle")
        _check_seconds(self.absolute, "absolute")
        interval = self.touch_interval
        if self.idle is None:
            if interval is not None:
                raise ValueError("Expiry touch_interval needs idle: it coalesces idle extensions")
            return
        if interval is None:
            interval = max(MIN_TOUCH_INTERVAL, self.idle / 10)
            if interval >= self.idle:
                interval = self.idle / 2
        elif (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 < interval < self.idle
        ):
            raise ValueError(
                f"Expiry touch_interval must be a number of seconds above 0 and below idle "
                f"({self.idle}); got {interval!r}"
            )
        object.__setattr__(self, "_touch", Touch(self.idle, self.idle - interval, self.absolute))

    @property
    def interval(self) -> float | None:
        """The touch interval in effect (``None`` without ``idle``)."""
        if self._touch is None:
            return None
        return self._touch.idle - self._touch.below

    def touch(self) -> Touch | None:
        """What a read asks the store to do (``None``: reads extend nothing)."""
        return self._touch


_DEFAULTS: dict[int, Expiry] = {}


def default_expiry(max_age: int) -> Expiry:
    """``Expiry(idle=max_age)``, or ``Expiry()`` for persistent cookies (``-1``)."""
    found = _DEFAULTS.get(max_age)
    if found is None:
        found = Expiry(idle=None if max_age == -1 else min(max_age, MAX_TTL))
        if len(_DEFAULTS) < 64:
            _DEFAULTS[max_age] = found
    return found
