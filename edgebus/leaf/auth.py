"""Who a leaf that dialed us is, and which account its connection joins.

nats-server's `isLeafNodeAuthorized`: a `leafnodes { authorization {} }` block, when it names a
user, an nkey or users, decides alone (user and password, or the nonce signed by the nkey;
the account named there, `$G` otherwise). Without one, the leaf is authenticated like a client
(`broker.auth` with listener "leaf"): config users and their accounts, nkeys, operator-mode
JWTs, or no credentials at all when the server asks for none.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from ..core.broker import AuthResult
from ..security import passwords


def _nkeys() -> Any:
    """The nkeys module on first use (it loads cryptography)."""
    from ..security import nkeys
    return nkeys


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _verify_sig(public: str, nonce: str | None, sig: Any) -> bool:
    if not public or not nonce or not isinstance(sig, str) or not sig:
        return False
    try:
        raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except (binascii.Error, ValueError):
        try:
            raw = base64.b64decode(sig)
        except (binascii.Error, ValueError):
            return False
    try:
        return _nkeys().verify(public, nonce.encode(), raw)
    except Exception:
        return False


def _account(broker: Any, name: str | None) -> Any:
    if not name:
        return broker.global_account
    return broker.accounts.get(name)


class _Bcrypt:
    """A bcrypt password check, run in a worker thread by the link (`wait`)."""

    def __init__(self, stored: str, given: str, result: AuthResult) -> None:
        self.stored, self.given, self.result = stored, given, result

    async def wait(self, timeout: float) -> AuthResult | None:
        import trio

        from ..core.blocking import run_blocking
        ok = False
        with trio.move_on_after(timeout):
            ok = await run_blocking(passwords.compare_passwords, self.stored, self.given,
                                    abandon_on_cancel=True)
        return self.result if ok else None


def _password(stored: str, given: str, result: AuthResult) -> Any:
    if passwords.is_bcrypt(stored):
        return _Bcrypt(stored, given, result)
    return result if passwords.compare_passwords(stored, given) else None


def authorize(broker: Any, block: dict[str, Any] | None, opts: dict[str, Any], nonce: str | None,
              client: Any, ctx: dict[str, Any]) -> Any:
    """An AuthResult, a refusal text, None (refused), or an object with `wait()` (asynchronous
    decision, e.g. auth callout) — the same contract as `broker.auth.authenticate`."""
    b = {str(k).lower(): v for k, v in (block or {}).items()}
    user = _s(opts.get("user"))
    pw = _s(opts.get("pass"))
    if b.get("user"):
        acc = _account(broker, b.get("account"))
        if user != b["user"] or acc is None:
            return None
        return _password(str(b.get("password") or ""), pw, AuthResult(acc, user))
    if b.get("nkey"):
        if _s(opts.get("nkey")) != b["nkey"] or not _verify_sig(b["nkey"], nonce, opts.get("sig")):
            return None
        acc = _account(broker, b.get("account"))
        return AuthResult(acc, b["nkey"]) if acc is not None else None
    if b.get("users"):
        for u in b["users"]:
            u = {str(k).lower(): v for k, v in u.items()}
            if u.get("user") == user:
                acc = _account(broker, u.get("account"))
                if acc is None:
                    return None
                return _password(str(u.get("password") or ""), pw, AuthResult(acc, user))
        return None
    return broker.auth.authenticate(client, opts, nonce, ctx)
