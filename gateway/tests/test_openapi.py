"""The OpenAPI document: generated from the code, matching the routes exactly, and a
property-based schemathesis run against it (no 5xx, every response as documented)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import GATEWAY, Gateway, Redis

METHODS = {"get", "post", "put", "delete", "patch"}


def test_document_is_openapi_3_1_and_matches_the_binary(gateway):
    doc = httpx.get(gateway.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    printed = subprocess.run([str(GATEWAY), "openapi"], capture_output=True, check=True).stdout
    import json

    assert json.loads(printed) == doc
    assert "bearer" in doc["components"]["securitySchemes"]


def test_every_documented_route_is_served_and_nothing_else(gateway, tokens):
    doc = httpx.get(gateway.url + "/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m in METHODS}
    assert len(documented) >= 25
    headers = {"Authorization": f"Bearer {tokens['carol']}"}
    for method, path in documented:
        if path.endswith("/events") or path == "/v1/ws":
            continue  # streams: covered by test_streams
        url = gateway.url + path.replace("{", "").replace("}", "")
        r = httpx.request(method, url, headers=headers, json={} if method == "POST" else None, timeout=30)
        # The route exists: any answer but "no such route" / "method not allowed".
        assert r.status_code != 405, (method, path)
        assert not (r.status_code == 404 and r.json().get("detail") == "no such route"), (method, path)
        assert r.status_code < 500, (method, path, r.text)
    # A method the document does not list on a documented path is refused.
    for method, path in [("PUT", "/v1/mailboxes/{name}/messages"), ("DELETE", "/v1/me"), ("POST", "/healthz")]:
        assert (method, path) not in documented
        r = httpx.request(method, gateway.url + path.replace("{name}", "x"), headers=headers)
        assert r.status_code == 405
    assert httpx.get(gateway.url + "/v1/not-documented", headers=headers).status_code == 404
    assert ("GET", "/openapi.json") in documented


@pytest.fixture
def fuzz_target(tmp_path):
    r = Redis(tmp_path / "redis", agents=("fuzz",))
    r.start()
    r.grant_gateway()
    r.cli("MAILBOX.ACL", "GRANT", "fuzz", "admin", "*")
    g = Gateway(r, tmp_path, "--rate-limit", "0", "--max-wait-ms", "100")
    g.start()
    yield g
    g.stop()
    r.stop()


def test_schemathesis_finds_no_5xx_and_no_undocumented_response(fuzz_target, tmp_path):
    g = fuzz_target
    token = g.token("fuzz", "--scope", "send,read,admin")
    long_run = os.environ.get("MAILBOX_LONG") == "1"
    st = Path(sys.executable).parent / "schemathesis"
    cmd = [
        str(st), "run", g.url + "/openapi.json",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_headers_conformance,response_schema_conformance",
        "-H", f"Authorization: Bearer {token}",
        "--max-examples", "100" if long_run else "8",
        "--phases", "examples,coverage,fuzzing",
        "--exclude-path-regex", "/events$|/ws$",
        "--workers", "1",
        "--seed", os.environ.get("MAILBOX_SEED", "1"),
        "--request-timeout", "30",
        "--generation-database", "none",
    ]
    out = subprocess.run(cmd, capture_output=True, timeout=1200, cwd=tmp_path, check=False)
    text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
    assert out.returncode == 0, text[-8000:]
    assert "passed" in text.lower()
    # The gateway saw the run: it answered many requests, none with a 5xx.
    metrics = httpx.get(g.url + "/metrics").text
    served = [line for line in metrics.splitlines() if line.startswith("mailbox_gateway_requests_total{")]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in served) > 50
    assert not [line for line in served if 'status="5' in line], served
