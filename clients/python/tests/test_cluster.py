"""The client over redis-py's RedisCluster: commands are routed by their keys (key specs) to the
master of each namespace's slot."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any, cast

import pytest
from conftest import RedisServer, wait_for
from redis.cluster import RedisCluster

from redis_mailbox import InvalidArgument, Mailbox, Status


@pytest.fixture(scope="module")
def cluster() -> Iterator[list[RedisServer]]:
    nodes = [
        RedisServer("--cluster-enabled", "yes", "--cluster-node-timeout", "5000") for _ in range(3)
    ]
    try:
        for n in nodes:
            n.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in nodes],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip

        def ok() -> bool:
            for n in nodes:
                c = n.client()
                try:
                    if c.cluster("info")["cluster_state"] != "ok":
                        return False
                finally:
                    c.close()
            return True

        wait_for(ok, "cluster_state:ok on every node")
        yield nodes
    finally:
        for n in nodes:
            n.cleanup()


def test_commands_route_across_shards(cluster: list[RedisServer]) -> None:
    rc = RedisCluster(host="127.0.0.1", port=cluster[0].port)
    mb = Mailbox(rc)
    tags = [f"{{ns{i}}}" for i in range(12)]  # spread over the three masters
    ids = {}
    for tag in tags:
        ids[tag] = mb.send(f"{tag}bob", f"hello {tag}", thread="t").id
        mb.subscribe(f"{tag}carol", "news.#")
        assert mb.publish(f"{tag}news.today", "news").receivers == 1
    holders = set()
    for tag in tags:
        (m,) = mb.read(f"{tag}bob")
        assert m.id == ids[tag] and m.text == f"hello {tag}"
        assert mb.status(f"{tag}bob", m.id) is Status.LEASED
        assert mb.ack(f"{tag}bob", m.id) == 1
        assert mb.read(f"{tag}carol")[0].text == "news"
        assert mb.info(f"{tag}carol").leased == 1
        holders.add(cast(Any, rc).get_node_from_key(f"{tag}bob").port)
    assert len(holders) >= 2, "the namespaces should live on more than one master"
    plain = {tag: mb.send(f"{tag}bob", b"plain").id for tag in tags}
    with mb.pipeline() as pipe:
        for tag in tags:
            pipe.send(f"{tag}bob", "piped")
        piped = pipe.execute()
    for tag, sent in zip(tags, piped, strict=True):
        assert [m.id for m in mb.peek(f"{tag}bob")] == [plain[tag], sent.id]
    with pytest.raises(InvalidArgument) as e:
        mb.send("bob", "no hash tag")
    assert "needs a hash tag" in e.value.text
    rc.close()
