"""Testing with edgebus: the pytest plugin's fixtures (`plugin`), a thread-backed server
(`EmbeddedServer`), per-test accounts on a shared server (`IsolatedAccount`) and the fault
helper `drop_clients`. The in-process client for trio code is `edgebus.client`."""

from typing import Any

__all__ = ["EmbeddedServer", "IsolatedAccount", "drop_clients"]


def __getattr__(name: str) -> Any:
    # lazy: the pytest plugin imports this package in every pytest run, edgebus used or not
    if name in ("EmbeddedServer", "drop_clients"):
        from . import embedded
        return getattr(embedded, name)
    if name == "IsolatedAccount":
        from .isolation import IsolatedAccount
        return IsolatedAccount
    raise AttributeError(name)
