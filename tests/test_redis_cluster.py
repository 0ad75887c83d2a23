"""The private Redis Cluster of the tests (tests/support/redis_cluster.py) is a real one: 3 masters
with a replica each, slots spread over the masters, and a killed master's replica takes over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.redis_cluster import PrivateRedisCluster

pytestmark = pytest.mark.processes


def test_three_masters_serve_the_slots_each_with_a_replica(redis_cluster: Any) -> None:
    client = redis_cluster.client()
    try:
        assert len(redis_cluster.master_ports()) == 3
        owners = {redis_cluster.slot_owner(f"pt:{{p{p}}}:events").port for p in range(16)}
        assert len(owners) == 3  # 16 partitions' tags land on every master
        client.set("pt:{p0}:probe", "1")
        assert client.get("pt:{p0}:probe") == "1"
        replicas = [n for n in client.cluster_nodes().values() if "slave" in n["flags"]]
        assert len(replicas) == 3
    finally:
        client.delete("pt:{p0}:probe")
        client.close()


def test_a_killed_master_is_replaced_by_its_replica(tmp_path: Path) -> None:
    cluster = PrivateRedisCluster(tmp_path / "cluster")
    try:
        cluster.start()
        # WAIT counts the replicas that have this connection's writes: the same connection to the
        # slot's master (a cluster client sends WAIT to every node, on other connections).
        master = cluster.slot_owner("pt:{p1}:k").client()
        master.set("pt:{p1}:k", "v")
        assert master.wait(1, 2000) == 1  # replicated before the kill: kept
        master.close()
        killed = cluster.kill_master_of("pt:{p1}:k")
        promoted = cluster.wait_promoted("pt:{p1}:k", killed)
        assert promoted is not killed
        assert promoted.alive
        fresh = cluster.client()
        try:
            assert fresh.get("pt:{p1}:k") == "v"
        finally:
            fresh.close()
    finally:
        cluster.stop()
