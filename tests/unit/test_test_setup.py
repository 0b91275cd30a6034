"""The test suite's own set-up: where it finds the reference binaries, and what a missing
reference means in CI (a failure, never a silent skip)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def test_nats_server_found_beside_python_when_not_on_path() -> None:
    # a virtualenv run as `venv/bin/python -m pytest`, never activated: its bin/ is not on PATH
    beside = Path(sys.executable).parent / "nats-server"
    if not beside.exists():
        pytest.skip("nats-server is not installed beside this Python")
    code = "import conftest; print(conftest.NATS_SERVER)"
    out = subprocess.run([sys.executable, "-c", code], cwd=TESTS, capture_output=True, text=True,
                         env={**os.environ, "PATH": "/nonexistent"}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(beside)


MISSING = '''
import pytest
from conftest import reference_missing

@pytest.mark.skipif(True, reason="nats-server binary not installed")
def test_marked():
    pass

def test_called():
    reference_missing("mosquitto-clients")

def test_other_skip():
    pytest.skip("box too slow")
'''


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_reference_fails_in_ci_and_skips_elsewhere(pytester: pytest.Pytester, ci: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    refs = pytester.makepyfile(test_refs=MISSING)
    mod = pytester.makepyfile(test_mod="import pytest\npytest.importorskip('no_such_client_lib')\n"
                                       "def test_x():\n    pass\n")
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(refs))
    if ci:
        # the two missing references fail (the marker's at setup: an error); an unrelated skip
        # stays a skip
        result.assert_outcomes(failed=1, errors=1, skipped=1)
        result.stdout.fnmatch_lines(["*CI=true and a reference is missing*"])
    else:
        result.assert_outcomes(skipped=3)
    # a client library missing at import time (module-level importorskip)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", str(mod))
    if ci:
        result.assert_outcomes(errors=1)
    else:
        result.assert_outcomes(skipped=1)


def test_ci_runs_the_readme_test_command_verbatim_and_fails_on_failed_installs() -> None:
    root = TESTS.parent
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    command = "pip install -e '.[test]' && pytest"
    assert f"\n    {command}\n" in readme  # the README's set-up block
    last = [ln for ln in ci.splitlines() if ln.strip() and not ln.startswith("#")][-1]
    assert last == command
    assert "set -euo pipefail" in ci and "|| echo" not in ci and "|| true" not in ci
    assert "export CI=true" in ci
