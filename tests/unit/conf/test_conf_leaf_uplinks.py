"""edgebus's `uplinks` of a leaf remote (leaf/uplink.py) reach LeafRemote, bad entries are
config errors."""

import pytest

from edgebus.conf import parse_string
from edgebus.conf.options_map import options_from_config

CONF = """
leafnodes {
  remotes = [
    { url: "nats-leaf://hub.example:7422",
      uplinks: [ { stream: EDGE, subject_prefix: "site1.", hub_stream: UP, max_pending: 50, ack_wait: "500ms" },
                 { stream: LOGS, subject_prefix: logs } ] }
  ]
}
"""


def test_uplinks_mapped() -> None:
    o = options_from_config(parse_string(CONF), filename="edge.conf")
    [r] = o.leafnodes.remotes
    a, b = r.uplinks
    assert (a.stream, a.subject_prefix, a.hub_stream, a.max_pending, a.ack_wait) == \
        ("EDGE", "site1", "UP", 50, 0.5)
    assert (b.stream, b.subject_prefix, b.hub_stream, b.max_pending, b.ack_wait) == \
        ("LOGS", "logs", None, 1000, 2.0)


@pytest.mark.parametrize("entry", ["{ stream: EDGE }", "{ subject_prefix: x }",
                                   "{ stream: EDGE, subject_prefix: x, bogus: 1 }", "EDGE"])
def test_bad_uplink_is_an_error(entry: str) -> None:
    conf = f'leafnodes {{ remotes = [ {{ url: "nats-leaf://h:7422", uplinks: [ {entry} ] }} ] }}\n'
    with pytest.raises(Exception) as e:
        options_from_config(parse_string(conf), filename="edge.conf")
    assert "uplink" in str(e.value) or "bogus" in str(e.value)
