"""The Prometheus alert rules in deploy/prometheus pass promtool's check and unit tests,
and name only metrics the gateway really exposes."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx

from conftest import REPO

RULES = REPO / "deploy" / "prometheus"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (gateway/scripts/test does it as root)"
    return path


def test_promtool_check_rules():
    out = subprocess.run([promtool(), "check", "rules", "mailbox-gateway.rules.yml"], cwd=RULES, capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert b"SUCCESS: 5 rules found" in out.stdout


def test_promtool_test_rules():
    out = subprocess.run([promtool(), "test", "rules", "mailbox-gateway.test.yml"], cwd=RULES, capture_output=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert b"SUCCESS" in out.stdout


def test_rules_name_metrics_the_gateway_exposes(gateway):
    exposed = {
        line.split("{")[0].split(" ")[0]
        for line in httpx.get(gateway.url + "/metrics").text.splitlines()
        if line and not line.startswith("#")
    }
    text = (RULES / "mailbox-gateway.rules.yml").read_text()
    used = set(re.findall(r"\b(mailbox_[a-z_]+)\b", text))
    assert used, text
    assert used <= exposed, used - exposed
