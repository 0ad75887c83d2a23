"""REDIS_WAIT_REPLICAS: the enqueue script, then `WAIT n timeout`, on one connection to the node
that ran it (docs/scaling.md, "Redis Cluster").

Redis replicates asynchronously: a master acknowledges a write before any replica has it, and a
master that dies then takes the write with it, even though the API has answered the load. `WAIT n
timeout` blocks until n replicas have acknowledged every write made *on this connection* (or the
timeout passes) and returns how many did; so it must follow the script on the same connection:

- a plain Redis: a non-transactional pipeline, EVALSHA then WAIT (one round trip);
- a Redis Cluster: redis-py's cluster pipeline refuses EVALSHA and sends a keyless WAIT to every
  node on other connections, so the pair goes through a plain client of the node that serves the
  keys' slot (the cluster client's slot map). A node that no longer serves the slot (MOVED: a
  failover or resharding) or cannot be reached makes the client read the slot map again, and the
  call fails: the caller takes its fallback, as for any Redis failure.

`run` returns the script's answer and how many replicas acknowledged. Fewer than asked (the
timeout passed: a replica down or lagging) is not an error here: the caller decides (the queue
records such events through its fallback too, so they survive the master's loss; the database's
unique event id keeps one row). WAIT is not strong consistency: a replica that acknowledged may
still not be the one promoted, and a write acknowledged by fewer replicas is not rolled back.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.commands.core import AsyncScript
from redis.exceptions import AskError, ConnectionError, MovedError, NoScriptError, TimeoutError

from app.clients import AsyncRedis

# Connection options a node's plain client must not take from the cluster client's.
_CLUSTER_ONLY = ("host", "port", "redis_connect_func", "event_dispatcher")


class ReplicatedScript:
    def __init__(self, client: AsyncRedis, script: str, *, replicas: int, timeout_ms: int) -> None:
        if replicas < 1 or timeout_ms < 0:
            raise ValueError("replicas must be at least 1 and timeout_ms not negative")
        self._client = client
        self._script: AsyncScript = client.register_script(script)
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self._nodes: dict[str, aioredis.Redis] = {}  # cluster: a plain client per node
        self._loaded: set[int] = set()  # the clients whose server was sent the script

    async def run(self, keys: list[str], args: list[Any]) -> tuple[Any, int]:
        """(the script's answer, replicas that acknowledged); raises on any Redis failure."""
        client = self._client
        if not isinstance(client, aioredis.RedisCluster):
            return await self._on(client, keys, args)
        await client.initialize()  # no-op once the slot map is known
        node = client.get_node_from_key(keys[0])
        if node is None:  # no master known for the slot (CLUSTERDOWN): a Redis failure
            await client.nodes_manager.initialize()
            raise ConnectionError("no node serves the slot")
        try:
            return await self._on(self._node_client(node), keys, args)
        except (MovedError, AskError, ConnectionError, TimeoutError, OSError):
            # The slot moved (failover, resharding) or its master is gone: read the slot map again
            # for the next call; this one fails (the caller's fallback records its events).
            await client.nodes_manager.initialize()
            raise

    async def _on(self, client: aioredis.Redis, keys: list[str], args: list[Any]) -> tuple[Any, int]:
        if id(client) not in self._loaded:  # else a first NOSCRIPT would cost a WAIT timeout too
            await client.script_load(self._script.script)
            self._loaded.add(id(client))
        for attempt in (1, 2):
            pipe = client.pipeline(transaction=False)
            pipe.evalsha(self._script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)
            answer, acked = await pipe.execute(raise_on_error=False)
            if isinstance(answer, NoScriptError) and attempt == 1:
                # The node does not know the script (a promoted replica, a restart): load it there.
                # The WAIT of this round trip acknowledged nothing of ours (the script did not run).
                await client.script_load(self._script.script)
                continue
            if isinstance(answer, Exception):
                raise answer
            if isinstance(acked, Exception):
                raise acked
            return answer, int(acked)
        raise AssertionError("unreachable")  # pragma: no cover

    def _node_client(self, node: ClusterNode) -> aioredis.Redis:
        plain = self._nodes.get(node.name)
        if plain is None:
            options = {k: v for k, v in node.connection_kwargs.items() if k not in _CLUSTER_ONLY}
            pool = aioredis.ConnectionPool(
                connection_class=node.connection_class, host=node.host, port=node.port, **options
            )
            plain = self._nodes[node.name] = aioredis.Redis(connection_pool=pool)
        return plain

    async def aclose(self) -> None:
        nodes, self._nodes = self._nodes, {}
        for plain in nodes.values():
            await plain.aclose()
