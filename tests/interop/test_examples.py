"""The examples run end to end against an embedded edgebus and print what they promise."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CASES = {
    "pubsub.py": "sensors.garage.temp: 12.0",
    "request_reply.py": "svc.missing: no responders",
    "queue_workers.py": "jobs per worker:",
    "drain.py": "handled 100 messages",
    "connect_handlers.py": "connected to",
}


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script: str) -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / script), "--embedded"], cwd=EXAMPLES,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert CASES[script] in out.stdout
