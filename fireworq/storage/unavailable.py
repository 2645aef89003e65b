"""A store that cannot be reached yet: what the API is given while the daemon waits for its
database at start, so that every request needing the store answers 503 in the usual way."""

from __future__ import annotations

from typing import Any, Callable, Coroutine, NoReturn

from fireworq.errors import StoreUnavailable


class UnavailableStore:
    """Every operation of the Store protocol fails with ``StoreUnavailable(reason())``."""

    def __init__(self, reason: Callable[[], str]) -> None:
        self._reason = reason

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, NoReturn]]:
        async def unavailable(*args: Any, **kwargs: Any) -> NoReturn:
            raise StoreUnavailable(self._reason())

        return unavailable
