"""The deploy script pins exactly the image CI built, in every workload, in both environments,
and the rendered manifests pass the same validator as scripts/validate-deploy.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32
BACKUP_DIGEST = "sha256:" + "cd" * 32


def _render(env: str, *images: str) -> list[dict[str, object]]:
    if not (shutil.which("kustomize") or shutil.which("kubectl")):
        pytest.skip("neither kustomize nor kubectl installed")
    out = subprocess.run(
        ["bash", str(ROOT / "deploy/scripts/k8s-deploy.sh"), env, *images],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "RENDER_ONLY": "1"},
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _images(docs: list[dict[str, object]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for doc in docs:
        text = yaml.safe_dump(doc)
        for line in text.splitlines():
            if line.strip().startswith("image:"):
                found.setdefault(str(doc["kind"]), set()).add(line.split("image:", 1)[1].strip())
    return found


@pytest.mark.parametrize("env", ["staging", "production"])
def test_pins_digest_everywhere(env: str, tmp_path: Path) -> None:
    docs = _render(env, f"ghcr.io/omnify/omnify@{DIGEST}", f"ghcr.io/omnify/omnify-backup@{BACKUP_DIGEST}")
    images = _images(docs)
    assert images["Deployment"] == {f"ghcr.io/omnify/omnify@{DIGEST}"}
    assert images["Job"] == {f"ghcr.io/omnify/omnify@{DIGEST}"}
    assert images["CronJob"] == {f"ghcr.io/omnify/omnify-backup@{BACKUP_DIGEST}"}
    assert {d["metadata"]["namespace"] for d in docs} == {f"omnify-{env}"}  # type: ignore[index]
    pytest.importorskip("kubernetes_validate", reason="installed by scripts/install-ops-tools.sh")
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    check = subprocess.run(
        [sys.executable, str(ROOT / "deploy/k8s/validate_rendered.py"), str(rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout


def test_tag_reference_and_unknown_environment() -> None:
    docs = _render("staging", "ghcr.io/omnify/omnify:1.2.3")
    assert _images(docs)["Deployment"] == {"ghcr.io/omnify/omnify:1.2.3"}
    out = subprocess.run(
        ["bash", str(ROOT / "deploy/scripts/k8s-deploy.sh"), "qa", "x:1"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "RENDER_ONLY": "1"},
    )
    assert out.returncode == 2 and "no overlay" in out.stderr


def test_beat_is_a_singleton_in_every_environment() -> None:
    for env in ("staging", "production"):
        docs = _render(env, "ghcr.io/omnify/omnify:1.0.0")
        beat = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "omnify-beat")  # type: ignore[index]
        assert beat["spec"]["replicas"] == 1  # type: ignore[index]
        hpa_targets = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}  # type: ignore[index]
        assert "omnify-beat" not in hpa_targets
