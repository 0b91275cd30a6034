"""Leaf-node keys reach LeafOptions/LeafRemote (and nats-server accepts the same file)."""

import subprocess

import pytest

from conftest import NATS_SERVER
from edgebus.conf import parse_string
from edgebus.conf.options_map import options_from_config

CONF = """
leafnodes {
  port: 7422
  reconnect: "250ms"
  advertise: "edge.example:7422"
  no_advertise: true
  min_version: "2.10.0"
  remotes = [
    { url: "nats-leaf://hub.example:7422", no_randomize: true, first_info_timeout: "3s",
      ws_no_masking: true, hub: false, deny_imports: ["secret.>"] }
  ]
}
"""


def test_leaf_keys_mapped() -> None:
    o = options_from_config(parse_string(CONF), filename="leaf.conf")
    lo = o.leafnodes
    assert lo is not None and lo.port == 7422 and lo.reconnect == 0.25
    assert lo.advertise == "edge.example:7422" and lo.no_advertise and lo.min_version == "2.10.0"
    [r] = lo.remotes
    assert r.urls == ["nats-leaf://hub.example:7422"] and r.no_randomize and r.ws_no_masking
    assert r.first_info_timeout == 3.0 and not r.hub and r.deny_imports == ["secret.>"]


@pytest.mark.skipif(not NATS_SERVER, reason="nats-server not installed")
def test_real_nats_server_accepts_the_same_file(tmp_path) -> None:
    f = tmp_path / "leaf.conf"
    f.write_text(CONF)
    r = subprocess.run([NATS_SERVER, "-t", "-c", str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
