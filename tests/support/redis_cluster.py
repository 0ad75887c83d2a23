"""A Redis Cluster of one test run (or one test) only: real `redis-server --cluster-enabled yes`
processes on free loopback ports, each with its own directory, joined by `redis-cli --cluster create`.

Like PrivateRedis (tests/support/redis_server.py) it never touches a server it did not start: every
node is checked to be our own process (INFO's process_id) before the cluster is created, and a node
that could not listen (a port taken meanwhile by another run) starts again on other free ports. Both
ports of a node (client and cluster bus, `cluster-port`) are chosen free, not `port + 10000`, which
may be taken or beyond 65535.

`cluster-node-timeout` is small (1000 ms by default): a killed master is marked failed and its
replica promoted within a few seconds, which failover tests wait for with `wait_promoted`.

    cluster = PrivateRedisCluster(tmp_path / "cluster")   # 3 masters, 1 replica each
    cluster.start()
    cluster.url               # "redis+cluster://127.0.0.1:<port>" (REDIS_URL)
    cluster.startup_nodes     # [("127.0.0.1", port), ...] of every node
    killed = cluster.kill_master_of("pt:{p3}:events")   # SIGKILL the master of that key's slot
    cluster.wait_promoted("pt:{p3}:events")             # its replica now serves the slot
    cluster.stop()
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from tests.support.processes import free_port, stop_process, wait_until

SLOTS = 16384


@dataclass
class ClusterNode:
    index: int
    dir: Path
    port: int = 0
    bus_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1, socket_timeout=1, decode_responses=True)


def _slot(key_or_slot: str | bytes | int) -> int:
    if isinstance(key_or_slot, int):
        if not 0 <= key_or_slot < SLOTS:
            raise ValueError(f"no such slot: {key_or_slot}")
        return key_or_slot
    return int(key_slot(key_or_slot.encode() if isinstance(key_or_slot, str) else key_or_slot))


class PrivateRedisCluster:
    """`masters` masters with `replicas_per_master` replicas each (3 + 3 by default).

    `full_coverage=True` is Redis' default (`cluster-require-full-coverage yes`): while a slot has
    no master (between a master's death and its replica's promotion) the whole cluster refuses
    commands; False keeps the other slots serving meanwhile."""

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        replicas_per_master: int = 1,
        *,
        node_timeout_ms: int = 1000,
        full_coverage: bool = True,
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.full_coverage = full_coverage
        count = masters * (1 + replicas_per_master)
        self.nodes = [ClusterNode(i, directory / f"node{i}") for i in range(count)]

    # Addresses.

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """REDIS_URL for the app (settings accept the `redis+cluster://` scheme): one live node;
        the cluster client discovers the others from it."""
        return f"redis+cluster://{self.alive_nodes()[0].address}"

    @property
    def plain_url(self) -> str:
        """A `redis://` URL of one live node, for redis-py's RedisCluster.from_url."""
        return f"redis://{self.alive_nodes()[0].address}"

    def alive_nodes(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.alive]

    def client(self) -> redis.RedisCluster:
        """A sync cluster client of the test itself (decoded replies, bounded timeouts)."""
        node = self.alive_nodes()[0]
        return redis.RedisCluster(
            host="127.0.0.1", port=node.port, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )

    # Starting.

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None or shutil.which("redis-cli") is None:
            pytest.skip("redis-server / redis-cli are not installed")
        for node in self.nodes:
            self._start_node(binary, node)
        self._create()

    def _start_node(self, binary: str, node: ClusterNode) -> None:
        for attempt in range(3):
            node.port, node.bus_port = self._two_free_ports()
            if self._start_once(binary, node):
                return
            if attempt < 2:  # a port was taken meanwhile (another run): other ports
                (node.dir / "nodes.conf").unlink(missing_ok=True)
        raise AssertionError(f"redis-server (cluster node {node.index}) exited; see {node.dir / 'redis.log'}")

    @staticmethod
    def _two_free_ports() -> tuple[int, int]:
        port = free_port()
        bus = free_port()
        while bus == port:
            bus = free_port()
        return port, bus

    def _start_once(self, binary: str, node: ClusterNode) -> bool:
        node.dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port",
            str(node.port),
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            str(node.bus_port),
            "--cluster-config-file",
            str(node.dir / "nodes.conf"),
            "--cluster-node-timeout",
            str(self.node_timeout_ms),
            "--cluster-require-full-coverage",
            "yes" if self.full_coverage else "no",
            # A replica's first full sync at once (not after the default 5 s): until it has synced,
            # it cannot take over from its master.
            "--repl-diskless-sync-delay",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(node.dir),
            "--daemonize",
            "no",
            "--logfile",
            str(node.dir / "redis.log"),
        ]
        node.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        proc = node.proc
        probe = node.client()

        def up() -> str | None:
            if proc.poll() is not None:
                return "exited"
            try:
                return "up" if probe.info("server")["process_id"] == proc.pid and probe.ping() else None
            except redis.RedisError:
                return None

        try:
            return wait_until(up, f"cluster node {node.index} to answer PING", timeout=20) == "up"
        finally:
            probe.close()

    def _create(self) -> None:
        command = [
            "redis-cli",
            "--cluster",
            "create",
            *(node.address for node in self.nodes),
            "--cluster-replicas",
            str(self.replicas_per_master),
            "--cluster-yes",
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        (self.dir / "create.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed ({done.returncode}); see {self.dir}/create.log")
        self.wait_ok()

    # State.

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every live node says `cluster_state:ok` with every slot served and knows every
        live node, and every live replica has synced with its master (a replica that has not
        cannot take over)."""
        alive = self.alive_nodes()

        def ok() -> bool:
            for node in alive:
                client = node.client()
                try:
                    info = client.cluster("info")
                    replication = client.info("replication")
                except redis.RedisError:
                    return False
                finally:
                    client.close()
                if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != SLOTS:
                    return False
                if int(info.get("cluster_known_nodes", 0)) < len(alive):
                    return False
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
            return True

        wait_until(ok, "the Redis Cluster to be ok on every node", timeout=timeout, interval=0.05)

    def slot_owner(self, key_or_slot: str | bytes | int) -> ClusterNode:
        """The live node that serves the slot now, as a live node sees it."""
        slot = _slot(key_or_slot)
        by_port = {node.port: node for node in self.nodes}
        for node in self.alive_nodes():
            client = node.client()
            try:
                ranges = client.execute_command("CLUSTER", "SLOTS")
            except redis.RedisError:
                continue
            finally:
                client.close()
            for start, end, master, *_replicas in ranges:
                if int(start) <= slot <= int(end):
                    owner = by_port.get(int(master[1]))
                    if owner is not None:
                        return owner
        raise AssertionError(f"no live node knows the master of slot {slot}")

    def master_ports(self) -> set[int]:
        """Ports of the live nodes that serve slots (masters), as one live node sees them."""
        node = self.alive_nodes()[0]
        client = node.client()
        try:
            ranges = client.execute_command("CLUSTER", "SLOTS")
        finally:
            client.close()
        return {int(master[1]) for _start, _end, master, *_ in ranges}

    def replicas_of(self, master: ClusterNode) -> list[ClusterNode]:
        """The live nodes replicating from this master."""
        found = []
        for node in self.alive_nodes():
            client = node.client()
            try:
                info = client.info("replication")
            except redis.RedisError:
                continue
            finally:
                client.close()
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
                found.append(node)
        return found

    # Faults.

    def kill_master_of(self, key_or_slot: str | bytes | int) -> ClusterNode:
        """SIGKILL the master serving this key's (or this) slot; returns the killed node."""
        node = self.slot_owner(key_or_slot)
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        return node

    def wait_promoted(
        self, key_or_slot: str | bytes | int, killed: ClusterNode | None = None, timeout: float = 30.0
    ) -> ClusterNode:
        """Until a live node (the killed master's replica) serves the slot and the cluster is ok
        again on every live node; returns the new master."""
        slot = _slot(key_or_slot)

        def promoted() -> ClusterNode | None:
            try:
                owner = self.slot_owner(slot)
            except AssertionError:
                return None
            if killed is not None and owner is killed:
                return None
            client = owner.client()
            try:
                role = client.execute_command("ROLE")[0]
            except redis.RedisError:
                return None
            finally:
                client.close()
            return owner if role == "master" else None

        owner = wait_until(promoted, f"a replica to take over slot {slot}", timeout=timeout, interval=0.05)
        assert owner is not None
        self.wait_ok(timeout=timeout)
        return owner

    def restart(self, node: ClusterNode) -> None:
        """Start a killed node again on its ports and config: it rejoins as a replica."""
        binary = shutil.which("redis-server")
        assert binary is not None
        if not self._start_once(binary, node):
            raise AssertionError(f"cluster node {node.index} did not restart; see {node.dir / 'redis.log'}")

    def flush(self) -> None:
        """Empty every master (our own cluster only)."""
        for port in self.master_ports():
            client = redis.Redis(port=port, socket_timeout=2)
            try:
                client.flushall()
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            stop_process(node.proc)
