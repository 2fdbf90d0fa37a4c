"""/metrics parses as Prometheus text, has the right types, and moves when messages flow."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from test_rest import drain, send


def scrape(gateway) -> dict:
    r = httpx.get(gateway.url + "/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families: dict, name: str, **labels) -> float:
    fam = families[name]
    total = 0.0
    for s in fam.samples:
        if s.name in (name, name + "_total") and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


def test_metrics_parse_with_types_and_move(gateway, alice, bob):
    before = scrape(gateway)
    # prometheus_client strips _total from counter family names.
    assert before["mailbox_sent"].type == "counter"
    assert before["mailbox_acked"].type == "counter"
    assert before["mailbox_messages"].type == "gauge"
    assert before["mailbox_blocked_readers"].type == "gauge"
    assert before["mailbox_gateway_requests"].type == "counter"
    assert before["mailbox_gateway_request_duration_seconds"].type == "histogram"
    assert before["mailbox_gateway_open_streams"].type == "gauge"
    assert before["mailbox_gateway_circuit_open"].type == "gauge"
    assert value(before, "mailbox_gateway_circuit_open") == 0
    assert value(before, "mailbox_gateway_redis_up") == 1
    # The test server runs noeviction: INFO mailbox's warning is there, and 0.
    assert before["mailbox_eviction_policy_warning"].type == "gauge"
    assert value(before, "mailbox_eviction_policy_warning") == 0
    drain(bob, "bob")
    ids = [send(alice, "bob", f"m{i}") for i in range(3)]
    got = bob.get("/v1/mailboxes/bob/messages", params={"count": 3}).json()["messages"]
    assert bob.post("/v1/mailboxes/bob/ack", json={"ids": [m["id"] for m in got]}).json()["acked"] == 3
    after = scrape(gateway)
    assert value(after, "mailbox_sent") - value(before, "mailbox_sent") >= len(ids)
    assert value(after, "mailbox_acked") - value(before, "mailbox_acked") >= 3
    route = "/v1/mailboxes/{name}/messages"
    sent_ok = value(after, "mailbox_gateway_requests", route=route, method="POST", status="201")
    assert sent_ok - value(before, "mailbox_gateway_requests", route=route, method="POST", status="201") == 3
    lat = after["mailbox_gateway_request_duration_seconds"]
    counts = [s.value for s in lat.samples if s.name.endswith("_count") and s.labels.get("route") == route]
    assert sum(counts) >= 4


def test_open_streams_gauge_follows_a_stream(gateway, tokens):
    import httpx_sse

    with gateway.client(tokens["carol"]) as c:
        base = value(scrape(gateway), "mailbox_gateway_open_streams", kind="sse")
        with httpx_sse.connect_sse(c, "GET", "/v1/mailboxes/carol/events") as es:
            assert es.response.status_code == 200
            assert value(scrape(gateway), "mailbox_gateway_open_streams", kind="sse") == base + 1
    from conftest import wait_until

    wait_until(lambda: value(scrape(gateway), "mailbox_gateway_open_streams", kind="sse") == base, "the gauge to drop")
