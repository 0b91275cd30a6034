#!/usr/bin/env python3
"""Leaf link flap benchmark: lost, doubled and catch-up seconds per direction, edgebus as the
leaf and nats-server as the leaf side by side, a stock nats-server hub in both cases.

    python tests/bench/bench_leaf_flap.py                 # 10 short cuts and a 20 s outage, both leaves
    python tests/bench/bench_leaf_flap.py --plan cuts --leaf edgebus
    python tests/bench/bench_leaf_flap.py --plan outage --outage 300    # the 5-minute outage
    python tests/bench/bench_leaf_flap.py --write          # also write tests/bench/RESULTS_leaf.md

Set-up, as firmware-notes/leaf-sync.md describes it (the rig: tests/interop/leaf_rig.py):
  hub   nats-server, JetStream domain "hub", `leafnodes { no_advertise: true }`; stream CMDS
        (cmds.>), stream CLOUD sourcing the edge's EDGE through `$JS.edge.API`
  leaf  edgebus (python -m edgebus) or nats-server, JetStream domain "edge", one remote to the
        hub through a TCP proxy that cuts the link (tests/interop/link_proxy.py); stream EDGE
        (edge.>), stream CMDS_M mirroring the hub's CMDS through `$JS.hub.API`
  edgebus only, with --uplink: EDGE is also pushed into the hub's stream UP by the edge's
        uplink (acked JetStream publishes with Nats-Msg-Id), the option leaf-sync.md describes.
A publisher on each side publishes acked messages (payload = its index) at --rate per second
all through the plan; it stops at the final restore. Catch-up is the time from the final
restore until the far stream holds every acked message; then every copy is read back:
lost = acked indexes missing, doubled = indexes seen more than once, order = whether the copy
holds them in publish order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.join(os.path.dirname(HERE), "interop")]

from leaf_rig import Publisher, Rig, msg_count, read_all, setup_streams, tally, until  # noqa: E402


async def _ge(coro: Any, n: int) -> bool:
    return (await coro) >= n


async def run_plan(rig: Rig, plan: list[tuple[float, float]], rate: float) -> dict[str, Any]:
    """plan: (seconds up, seconds cut) pairs; the link is restored after the last cut."""
    h, e = await setup_streams(rig)
    up = Publisher(rig.leaf.url, "edge", rate)
    down = Publisher(rig.hub.url, "cmds", rate)
    up.start()
    down.start()
    loop = asyncio.get_running_loop()
    for k, (up_s, cut_s) in enumerate(plan):
        await asyncio.sleep(up_s)
        await loop.run_in_executor(None, rig.proxy.cut)
        await asyncio.sleep(cut_s)
        if k == len(plan) - 1:
            await up.stop()
            await down.stop()
        rig.proxy.restore()
    t_restore = time.monotonic()
    n_up, n_down = len(up.acked), len(down.acked)
    far_up = "UP" if rig.uplink else "CLOUD"
    res: dict[str, Any] = {}

    async def catch_up(key: str, nc: Any, stream: str, n: int) -> None:
        try:
            await until(lambda: _ge(msg_count(nc, stream), n), f"{stream} to catch up", 120)
            res[key] = time.monotonic() - t_restore
        except TimeoutError:
            res[key] = None
    waits = [catch_up("up_catchup", h, "CLOUD", n_up), catch_up("down_catchup", e, "CMDS_M", n_down)]
    if rig.uplink:
        waits.append(catch_up("uplink_catchup", h, far_up, n_up))
    await asyncio.gather(*waits)
    res["up"] = tally(up.acked, await read_all(h, "CLOUD"))
    if rig.uplink:
        res["uplink"] = tally(up.acked, await read_all(h, far_up))
    res["down"] = tally(down.acked, await read_all(e, "CMDS_M"))
    await h.close()
    await e.close()
    return res


def short_cuts(n: int = 10, seed: int = 11) -> list[tuple[float, float]]:
    rnd = random.Random(seed)
    return [(rnd.uniform(0.5, 1.5), rnd.uniform(0.5, 3.0)) for _ in range(n)]


def fmt_s(v: Any) -> str:
    return "timeout" if v is None else f"{v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leaf", choices=["edgebus", "nats-server", "both"], default="both")
    ap.add_argument("--plan", choices=["cuts", "outage", "both"], default="both")
    ap.add_argument("--outage", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=100.0, help="acked publishes per second, each way")
    ap.add_argument("--uplink", action="store_true", help="edgebus leaf: also run the edge uplink")
    ap.add_argument("--write", action="store_true", help="write tests/bench/RESULTS_leaf.md")
    a = ap.parse_args()
    leaves = ["edgebus", "nats-server"] if a.leaf == "both" else [a.leaf]
    plans = {"cuts": ("10 cuts 0.5-3 s", short_cuts()),
             "outage": (f"{a.outage:g} s outage", [(2.0, a.outage)])}
    chosen = ["cuts", "outage"] if a.plan == "both" else [a.plan]
    rows = []
    for pname in chosen:
        label, plan = plans[pname]
        for kind in leaves:
            for uplink in ([True] if (a.uplink and kind == "edgebus") else [False]):
                rig = Rig(kind, uplink=uplink).start()
                try:
                    r = asyncio.run(run_plan(rig, plan, a.rate))
                finally:
                    rig.close()
                who = kind + (" +uplink" if uplink else "")
                dirs = [("edge->cloud (hub sources)", "up", "up_catchup"),
                        ("cloud->edge (edge mirrors)", "down", "down_catchup")]
                if uplink:
                    dirs.insert(1, ("edge->cloud (uplink)", "uplink", "uplink_catchup"))
                for dname, key, ckey in dirs:
                    t = r[key]
                    row = (f"| {label} | {who} | {dname} | {t['acked']} | {t['lost']} | {t['doubled']} | "
                           f"{'yes' if t['in_order'] else 'NO'} | {fmt_s(r[ckey])} |")
                    rows.append(row)
                    print(row, flush=True)
    head = ("| plan | leaf | direction | acked | lost | doubled | in order | catch-up s |\n"
            "|---|---|---|---|---|---|---|---|")
    print(head)
    print("\n".join(rows))
    if a.write:
        with open(os.path.join(HERE, "RESULTS_leaf.md"), "w") as f:
            f.write("# Leaf link flap: edgebus vs nats-server as the leaf of a nats-server hub\n\n"
                    f"`python tests/bench/bench_leaf_flap.py{' --uplink' if a.uplink else ''} --write`, "
                    f"{time.strftime('%Y-%m-%d')}, {a.rate:g} acked msgs/s each way, 2-core shared machine.\n"
                    "Catch-up: seconds from the final restore of the link until the far stream holds "
                    "every acked message.\n\n" + head + "\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
