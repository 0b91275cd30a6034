#!/usr/bin/env python3
"""Per-test cost of the pytest fixtures: a server per test (`edgebus_server`) against an
account per test on one shared server (`edgebus_isolated`).

For each fixture, writes a throw-away test module of --tests trivial tests that each use it (a
nats-py connect and one round trip per test: what a real test does first) and runs it with
pytest in a subprocess; a conftest there records each test's setup and teardown durations
(pytest's own report durations). The median over the tests is the fixture's cost per test;
`baseline` (a fixture doing nothing) is what pytest itself costs per test.

    python tests/bench/bench_fixtures.py [--tests 150]

RESULT test=fixtures name=<fixture> tests=.. setup_teardown_ms_median=.. p90=..
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

TEST_MODULE = '''
import asyncio
import nats
import pytest

@pytest.fixture(scope="session")
def shared():
    from edgebus.testing import EmbeddedServer
    with EmbeddedServer() as srv:
        yield srv

@pytest.fixture
def baseline(shared):
    return shared  # no per-test work: what pytest itself costs per test

@pytest.mark.parametrize("i", range({n}))
def test_one(i, {fixture}):
    async def go():
        nc = await nats.connect({fixture}.client_url)
        await nc.flush()
        await nc.close()
    asyncio.run(go())
'''

CONFTEST = '''
import json, os
_out = []
def pytest_runtest_logreport(report):
    if report.when in ("setup", "teardown"):
        _out.append((report.nodeid, report.when, report.duration))
def pytest_sessionfinish(session):
    with open(os.environ["FIXTURE_BENCH_OUT"], "w") as fh:
        json.dump(_out, fh)
'''


def measure(fixture: str, n: int) -> list[float]:
    """Setup + teardown seconds of each test using `fixture`."""
    with tempfile.TemporaryDirectory(prefix="bench-fixtures-") as d:
        with open(os.path.join(d, "test_cost.py"), "w") as fh:
            fh.write(TEST_MODULE.format(n=n, fixture=fixture))
        with open(os.path.join(d, "conftest.py"), "w") as fh:
            fh.write(CONFTEST)
        out = os.path.join(d, "durations.json")
        env = {**os.environ, "FIXTURE_BENCH_OUT": out}
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", d],
                       cwd=d, env=env, check=True, stdout=subprocess.DEVNULL)
        with open(out) as fh:
            rows = json.load(fh)
    per_test: dict[str, float] = {}
    for nodeid, _when, dur in rows:
        per_test[nodeid] = per_test.get(nodeid, 0.0) + dur
    return list(per_test.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tests", type=int, default=150)
    a = ap.parse_args()
    medians = {}
    for fixture in ("baseline", "edgebus_server", "edgebus_isolated"):
        costs = sorted(measure(fixture, a.tests))
        med = statistics.median(costs) * 1000
        p90 = costs[int(len(costs) * 0.9)] * 1000
        medians[fixture] = med
        extra = "" if fixture == "baseline" else \
            f" over_baseline_ms={med - medians['baseline']:.2f}"
        print(f"RESULT test=fixtures name={fixture} tests={len(costs)} "
              f"setup_teardown_ms_median={med:.2f} p90={p90:.2f}{extra}")
    print(f"RESULT test=fixtures ratio_server_per_test_over_isolated="
          f"{medians['edgebus_server'] / medians['edgebus_isolated']:.1f}")


if __name__ == "__main__":
    main()
