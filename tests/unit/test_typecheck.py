"""The static type checker, run as CI runs it: mypy over the packages `pyproject.toml` names
(strict on the codecs and the core), and a check that it does hold a client kind to the delivery
contract (`core.contract.Subscriber`): a subscriber without `deliver` must fail, before any test
would have to meet the missing method at run time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mypy", reason="mypy not installed (pip install -e '.[test]')")


def _mypy(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                           "--cache-dir", str(ROOT / ".mypy_cache"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_codecs_core_and_client_kinds_typecheck() -> None:
    r = _mypy()
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_subscriber_without_deliver_fails_the_type_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad_kind.py"
    bad.write_text(
        "from typing import Any\n"
        "from edgebus.core.contract import Batch\n"
        "from edgebus.core.sublist import Subscription\n"
        "class Gadget:\n"
        "    kind = 'Client'\n"
        "    echo = True\n"
        "    takes_batches = False\n"
        "    def deliver_batch(self, sub: Subscription, batch: Batch, src: Any) -> None: ...\n"
        "    def remove_sub(self, sub: Subscription) -> None: ...\n"
        "Subscription(Gadget(), 'a.b')\n")
    r = _mypy(str(bad))
    assert r.returncode != 0
    assert "deliver" in r.stdout, r.stdout
