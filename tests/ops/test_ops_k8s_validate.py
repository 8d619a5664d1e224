"""deploy/k8s/validate_rendered.py must reject what kubernetes-validate alone would let through."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("kubernetes_validate", reason="installed by scripts/install-ops-tools.sh")
pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("validate_rendered", ROOT / "deploy/k8s/validate_rendered.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["validate_rendered"] = module
    spec.loader.exec_module(module)
    return module


vr = _load()
VERSIONS = ["1.37.0"]


def _deployment(component: str = "api", replicas: int = 2) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": component,
        "image": "ghcr.io/omnify/omnify:1.0.0",
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if component == "api":
        container["startupProbe"] = {"httpGet": {"path": "/healthz", "port": 8000}}
        container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8000}}
        container["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 8000}}
    labels = {"app.kubernetes.io/name": "omnify", "app.kubernetes.io/component": component}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"omnify-{component}", "labels": {"app.kubernetes.io/component": component}},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "Recreate" if component == "beat" else "RollingUpdate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                },
            },
        },
    }


SERVICE_MONITOR: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "omnify"},
    "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "http", "interval": "15s"}]},
}


def test_valid_documents_pass() -> None:
    docs = [_deployment("api"), _deployment("beat", 1), SERVICE_MONITOR]
    assert vr.validate_docs(docs, VERSIONS) == []


def test_unknown_field_in_core_kind_fails() -> None:
    doc = _deployment()
    doc["spec"]["replica"] = 3
    assert any("replica" in p for p in vr.validate_docs([doc], VERSIONS))


def test_crd_typo_fails() -> None:
    doc = copy.deepcopy(SERVICE_MONITOR)
    doc["spec"]["endpoint"] = doc["spec"].pop("endpoints")
    assert any("CRD schema" in p for p in vr.validate_docs([doc], VERSIONS))


def test_unknown_kind_fails_instead_of_warning() -> None:
    doc = {"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": {"name": "x"}, "spec": {}}
    assert any("neither a built-in kind" in p for p in vr.validate_docs([doc], VERSIONS))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(
                readOnlyRootFilesystem=False
            ),
            "readOnlyRootFilesystem",
        ),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"].pop("limits"), "limits"),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="ghcr.io/omnify/omnify:latest"),
            ":latest",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"].update(
                path="/healthz"
            ),
            "probes",
        ),
    ],
)
def test_policy_violations_fail(mutate: Any, expected: str) -> None:
    doc = _deployment()
    mutate(doc)
    assert any(expected in p for p in vr.validate_docs([doc], VERSIONS))


def test_beat_must_be_single_and_never_autoscaled() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "omnify-beat"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "omnify-beat"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
        },
    }
    problems = vr.validate_docs([_deployment("beat", 2), hpa], VERSIONS)
    assert any("exactly 1 replica" in p for p in problems)
    assert any("must not be autoscaled" in p for p in problems)
