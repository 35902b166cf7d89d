"""The cluster configs (ray_cluster.yaml, deploy/kuberay/raycluster.yaml), checked offline with
Ray's own code: the cluster launcher's schema and the KubeRay autoscaler's translation of a
RayCluster. No Ray is started and no network is used (asserted below)."""

from __future__ import annotations

import ipaddress
import re
import shlex
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import (
    _derive_autoscaling_config_from_ray_cr,
)
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "ray_cluster.yaml"
KUBERAY = ROOT / "deploy" / "kuberay" / "raycluster.yaml"
# loopback, "any", and the RFC 5737 documentation ranges used as placeholders
ALLOWED_NETS = [
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "0.0.0.0/32", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
]


def _cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER.read_text(encoding="utf-8"))


def _ray_cluster_cr() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(KUBERAY.read_text(encoding="utf-8")) if d]
    (cr,) = [d for d in docs if d.get("kind") == "RayCluster"]
    return cr


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("network access during offline validation")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_ray_schema_accepts_cluster_yaml_offline(no_network: None) -> None:
    # prepare_config for `aws` only merges Ray's bundled aws/defaults.yaml: no boto3, no network
    # (the AWS calls — instance types, IAM role, key pair, security group — come later, in
    # `ray up`'s provider bootstrap). `no_network` would fail the test otherwise.
    cfg = _cluster()
    assert cfg["provider"]["type"] == "aws"
    prepared = prepare_config(cfg)
    validate_config(prepared)
    # explicit head_setup_commands replace Ray's default (`pip install boto3` into system Python)
    assert not any(c.startswith("pip install") for c in prepared["head_setup_commands"])


def test_ray_schema_rejects_broken_copies() -> None:
    unknown_key = {**_cluster(), "max_wrokers": 3}
    with pytest.raises(jsonschema.ValidationError, match="max_wrokers"):
        validate_config(prepare_config(unknown_key))
    fractional = _cluster()
    fractional["available_node_types"]["tg.head"]["resources"]["db"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(fractional))
    too_many = _cluster()
    too_many["available_node_types"]["tg.worker"]["min_workers"] = too_many["max_workers"] + 1
    with pytest.raises(ValueError, match="min_workers"):
        validate_config(prepare_config(too_many))


def test_only_the_head_declares_db() -> None:
    cfg = _cluster()
    types = cfg["available_node_types"]
    head = cfg["head_node_type"]
    assert types[head]["resources"]["db"] == 1
    assert types[head]["resources"]["CPU"] >= 1
    assert all("db" not in t["resources"] for name, t in types.items() if name != head)
    start = " ".join(cfg["head_start_ray_commands"])
    # what the shell passes to `ray start`: --resources={"db": 1}
    (resources,) = [w for w in shlex.split(start) if w.startswith("--resources=")]
    assert yaml.safe_load(resources.removeprefix("--resources=")) == {"db": 1}
    assert "--head" in start and "RAY_AUTH_MODE=token" in start
    assert "--resources" not in " ".join(cfg["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in " ".join(cfg["worker_start_ray_commands"])


def test_setup_from_lock_file_token_and_worker_bounds() -> None:
    cfg = _cluster()
    assert any("uv sync --frozen" in c for c in cfg["setup_commands"])
    assert cfg["file_mounts"]["~/.ray/auth_token"]
    assert cfg["file_mounts"]["~/turbo-giggle"] == "."
    workers = [t for n, t in cfg["available_node_types"].items() if n != cfg["head_node_type"]]
    assert workers
    for worker in workers:
        assert 0 <= worker["min_workers"] <= worker["max_workers"] <= cfg["max_workers"]


def _non_documentation_ips(text: str) -> list[str]:
    found = re.findall(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])", text)
    return [ip for ip in found if not any(ipaddress.ip_address(ip) in n for n in ALLOWED_NETS)]


@pytest.mark.parametrize("path", [CLUSTER, KUBERAY], ids=lambda p: p.name)
def test_no_real_ip_addresses(path: Path) -> None:
    bad = _non_documentation_ips(path.read_text(encoding="utf-8"))
    assert not bad, f"{path.name}: use documentation/loopback addresses, not {bad}"
    # the scan does catch real addresses, and lets placeholders through
    assert _non_documentation_ips("head_ip: 10.0.0.5 # 192.0.2.10, 127.0.0.1") == ["10.0.0.5"]


def test_kuberay_manifest(no_network: None) -> None:
    cr = _ray_cluster_cr()
    assert cr["apiVersion"] == "ray.io/v1"
    assert cr["kind"] == "RayCluster"
    head = cr["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["resources"] == '"{\\"db\\": 1}"'
    (container,) = head["template"]["spec"]["containers"]
    assert 8000 in [p["containerPort"] for p in container["ports"]]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert Path(env["TG_DB_PATH"]).parent == Path(mounts["duckdb"])  # DuckDB on the volume
    for group in cr["spec"]["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["maxReplicas"]
    # what the KubeRay autoscaler itself derives from the CR (it runs validate_config too)
    derived = _derive_autoscaling_config_from_ray_cr(
        {**cr, "metadata": {**cr["metadata"], "namespace": "default"}}
    )
    types = derived["available_node_types"]
    assert types["headgroup"]["resources"]["db"] == 1
    assert all("db" not in t["resources"] for n, t in types.items() if n != "headgroup")
