"""Validate rendered Kubernetes manifests (the output of ``kustomize build``) offline.

Why this exists rather than a bare ``kubernetes-validate`` call: that tool only knows built-in kinds
and merely *warns* on anything else, so a misspelt ServiceMonitor or ExternalSecret would pass
silently. Here every document must be accounted for:

* built-in kinds are validated strictly (unknown fields are errors) against each Kubernetes version
  we support (the oldest we run and the newest the tool ships);
* custom resources are validated against the JSON Schemas in ``deploy/k8s/schemas`` (closed subsets
  of the upstream CRDs);
* a kind in neither group is a failure, not a warning;
* Omnify's own deployment invariants (non-root, read-only root FS, dropped capabilities, requests
  and limits, probes on /healthz and /readyz, a single beat replica, pinned images) are asserted,
  because a schema cannot express them.

Usage: ``python deploy/k8s/validate_rendered.py RENDERED.yaml [...]``; exits 1 on any problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
# Oldest version our clusters run (preStop sleep action, PDB unhealthyPodEvictionPolicy) and newest.
DEFAULT_VERSIONS = ("1.30.0", "1.37.0")
CRD_SCHEMAS: dict[tuple[str, str], str] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring.coreos.com-v1.json",
    ("external-secrets.io/v1", "ExternalSecret"): "externalsecret-external-secrets.io-v1.json",
}
WORKLOAD_KINDS = {"Deployment", "Job", "CronJob", "StatefulSet", "DaemonSet"}

Manifest = dict[str, Any]


def load_documents(path: Path) -> Iterator[Manifest]:
    """Yield every non-empty YAML document; a non-mapping document is itself an error."""
    with path.open(encoding="utf-8") as fh:
        for doc in yaml.safe_load_all(fh):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValueError(f"{path}: a document is not a mapping: {doc!r:.80}")
            yield doc


def ident(doc: Manifest) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind')}/{meta.get('name')}"


def pod_spec(doc: Manifest) -> Manifest | None:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = spec.get("template")
    return (template or {}).get("spec") if template else None


def check_policy(doc: Manifest) -> list[str]:
    """Omnify's invariants for any workload; returns human-readable violations."""
    problems: list[str] = []
    who = ident(doc)
    kind = doc.get("kind")
    if kind not in WORKLOAD_KINDS:
        return problems
    spec = pod_spec(doc)
    if spec is None:
        return [f"{who}: no pod template"]
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{who}: automountServiceAccountToken must be false")
    pod_sc = spec.get("securityContext") or {}
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append(f"{who}: pod securityContext.runAsNonRoot must be true")
    if (pod_sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append(f"{who}: pod seccompProfile must be RuntimeDefault")
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        name = f"{who}[{container.get('name')}]"
        sc = container.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{name}: capabilities must drop ALL")
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if res not in (resources.get(section) or {}):
                    problems.append(f"{name}: resources.{section}.{res} missing")
        image = str(container.get("image", ""))
        if ":" not in image.rsplit("/", 1)[-1] and "@sha256:" not in image:
            problems.append(f"{name}: image {image!r} has no tag or digest")
        if image.endswith(":latest"):
            problems.append(f"{name}: image {image!r} uses :latest")
    component = ((doc.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")
    if kind == "Deployment" and component == "api":
        api = spec["containers"][0]
        paths = {
            probe: ((api.get(probe) or {}).get("httpGet") or {}).get("path")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        if paths != {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
            problems.append(f"{who}: api probes must be startup+liveness on /healthz, readiness on /readyz")
    if kind == "Deployment" and component == "beat":
        if (doc.get("spec") or {}).get("replicas") != 1:
            problems.append(f"{who}: beat must run exactly 1 replica")
        if ((doc.get("spec") or {}).get("strategy") or {}).get("type") != "Recreate":
            problems.append(f"{who}: beat must use the Recreate strategy (never two schedulers)")
    return problems


def check_cross_refs(docs: list[Manifest]) -> list[str]:
    """Things only visible across documents: HPAs must never target beat; selectors must match."""
    problems: list[str] = []
    deployments = {(d.get("metadata") or {}).get("name"): d for d in docs if d.get("kind") == "Deployment"}
    for doc in docs:
        if doc.get("kind") == "HorizontalPodAutoscaler":
            target = ((doc.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
            if target not in deployments:
                problems.append(f"{ident(doc)}: scaleTargetRef {target!r} is not a rendered Deployment")
            elif "beat" in str(target):
                problems.append(f"{ident(doc)}: beat must not be autoscaled")
    for name, dep in deployments.items():
        selector = (((dep.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
        labels = ((((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")) or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            problems.append(f"Deployment/{name}: selector does not match the pod template labels")
    return problems


def validate_docs(docs: Iterable[Manifest], versions: Iterable[str]) -> list[str]:
    docs = list(docs)
    versions = list(versions)
    problems: list[str] = []
    for doc in docs:
        key = (str(doc.get("apiVersion")), str(doc.get("kind")))
        if key in CRD_SCHEMAS:
            schema = json.loads((SCHEMA_DIR / CRD_SCHEMAS[key]).read_text(encoding="utf-8"))
            validator = jsonschema.Draft202012Validator(schema)
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                path = "/".join(str(p) for p in err.absolute_path)
                problems.append(f"{ident(doc)} (CRD schema): {path}: {err.message}")
        else:
            for version in versions:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.SchemaNotFoundError:
                    problems.append(
                        f"{ident(doc)}: {key[0]} {key[1]} is neither a built-in kind of Kubernetes {version} "
                        f"nor a CRD with a schema in {SCHEMA_DIR.name}/"
                    )
                    break
                except kubernetes_validate.ValidationError as exc:
                    path = "/".join(str(p) for p in exc.path) if hasattr(exc, "path") else ""
                    problems.append(f"{ident(doc)} (k8s {version}): {path}: {exc.message}")
        problems.extend(check_policy(doc))
    problems.extend(check_cross_refs(docs))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("-k", "--kubernetes-version", action="append", dest="versions")
    args = parser.parse_args(argv)
    versions = args.versions or list(DEFAULT_VERSIONS)
    failed = False
    for path in args.files:
        try:
            docs = list(load_documents(path))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            print(f"FAIL {path}: {exc}")
            failed = True
            continue
        problems = validate_docs(docs, versions)
        kinds = sorted({str(d.get("kind")) for d in docs})
        if problems:
            failed = True
            print(f"FAIL {path}: {len(problems)} problem(s) in {len(docs)} documents")
            for p in problems:
                print(f"  - {p}")
        else:
            print(f"ok   {path}: {len(docs)} documents valid for Kubernetes {', '.join(versions)} ({', '.join(kinds)})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
