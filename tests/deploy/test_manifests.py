"""deploy/: every manifest parsed into the official kubernetes client's models, and the
security properties of what it would run. Nothing here is applied to a cluster."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient
from sqlalchemy.engine import make_url

from attestd.agent.config import parse_config
from attestd.verifier.service.config import parse_config as parse_verifier_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "kubernetes"
IMAGES = DEPLOY / "images"

MODELS = {
    "Namespace": "V1Namespace",
    "ServiceAccount": "V1ServiceAccount",
    "ConfigMap": "V1ConfigMap",
    "DaemonSet": "V1DaemonSet",
    "Deployment": "V1Deployment",
    "StatefulSet": "V1StatefulSet",
    "Service": "V1Service",
    "PodDisruptionBudget": "V1PodDisruptionBudget",
    "NetworkPolicy": "V1NetworkPolicy",
}
CERT_MANAGER = {"Issuer", "ClusterIssuer", "Certificate"}
WORKLOADS = {"DaemonSet", "Deployment", "StatefulSet"}
#: Secrets the operator creates (documented in the manifest that reads them).
OPERATOR_SECRETS = {("attestd", "attestd-postgres")}
#: The only pods that may mount host paths, and which paths (the agent's header says why).
HOST_PATHS = {
    "attestd-agent-tdx": {
        "/var/lib/attestd",
        "/run/attestd",
        "/srv/models",
        "/sys/kernel/config",
        "/sys/devices/virtual/misc/tdx_guest/measurements",
        "/dev/tdx_guest",
    },
    "attestd-agent-snp": {
        "/var/lib/attestd",
        "/run/attestd",
        "/srv/models",
        "/sys/kernel/config",
        "/dev/sev-guest",
    },
}

_api = ApiClient()


def _files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in _files() for doc in yaml.safe_load_all(path.read_text())]


DOCS = _documents()


def _of(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def _model(doc: dict[str, Any]) -> Any:
    """``doc`` as the client's model; refuses any key the model does not know.

    The client ignores unknown keys, so a misspelt security setting would vanish
    silently: the model is serialized back and must equal the document.
    """
    model = _api._ApiClient__deserialize(doc, MODELS[doc["kind"]])  # type: ignore[attr-defined]
    back = _api.sanitize_for_serialization(model)
    assert back == doc, f"{doc['kind']} {doc['metadata']['name']}: keys the model does not know"
    return model


def _pods() -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(workload name, its document, its pod spec model) for every workload."""
    for doc in (d for _, d in DOCS if d["kind"] in WORKLOADS):
        yield doc["metadata"]["name"], doc, _model(doc).spec.template.spec


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in _files())


@pytest.mark.parametrize(
    "doc", [d for _, d in DOCS if d["kind"] in MODELS], ids=lambda d: d["metadata"]["name"]
)
def test_every_manifest_is_a_valid_model(doc: dict[str, Any]) -> None:
    assert doc["kind"] in MODELS or doc["kind"] in CERT_MANAGER
    _model(doc)


def test_a_misspelt_key_is_caught() -> None:
    daemonset = copy.deepcopy(_of("DaemonSet")[0])
    container = daemonset["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(AssertionError, match="keys the model does not know"):
        _model(daemonset)


def test_every_kind_is_known() -> None:
    assert {d["kind"] for _, d in DOCS} <= set(MODELS) | CERT_MANAGER


@pytest.mark.parametrize("name", [name for name, _, _ in _pods()])
def test_pods_run_with_least_privilege(name: str) -> None:
    [(_, _, pod)] = [p for p in _pods() if p[0] == name]
    assert pod.automount_service_account_token is False
    assert pod.service_account_name and pod.service_account_name != "default"
    assert not pod.host_network and not pod.host_pid and not pod.host_ipc
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.run_as_user and pod.security_context.run_as_user > 0
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert not pod.init_containers
    for container in pod.containers:
        sc = container.security_context
        assert sc.privileged is False
        assert sc.allow_privilege_escalation is False
        assert sc.read_only_root_filesystem is True
        assert sc.run_as_non_root is True
        assert sc.capabilities.drop == ["ALL"] and not sc.capabilities.add
        assert sc.seccomp_profile.type == "RuntimeDefault"
        limits = container.resources.limits
        assert limits and {"cpu", "memory"} <= set(limits)
        assert {"cpu", "memory"} <= set(container.resources.requests or {})
        assert container.image.rsplit(":", 1)[-1] not in ("latest", container.image)
    for volume in pod.volumes or []:
        if volume.empty_dir is not None:
            assert volume.empty_dir.size_limit, f"{name}: unbounded emptyDir {volume.name}"
    host_paths = {v.host_path.path for v in pod.volumes or [] if v.host_path is not None}
    assert host_paths == HOST_PATHS.get(name, set())
    # A host path must exist: the node setup (deploy/node) makes it, never the kubelet as root.
    for volume in pod.volumes or []:
        if volume.host_path is not None:
            assert volume.host_path.type in ("Directory", "CharDevice")


def test_agents_reach_the_tee_through_a_group_not_root() -> None:
    node_setup = (DEPLOY / "node" / "attestd-k8s-tmpfiles.conf").read_text()
    udev = (DEPLOY / "node" / "90-attestd-k8s.rules").read_text()
    for name, _, pod in _pods():
        if name not in HOST_PATHS:
            continue
        groups = pod.security_context.supplemental_groups
        assert groups == [10010]
        assert re.search(r"^z /sys/kernel/config/tsm/report 0770 root 10010", node_setup, re.M)
        assert 'GROUP="10010"' in udev
        user = pod.security_context.run_as_user
        for path in ("/var/lib/attestd", "/run/attestd"):
            assert re.search(rf"^d {path} 07[05]0 {user} {user}", node_setup, re.M)
        assert pod.node_selector["attestd.dev/tee"] in ("tdx", "sev-snp")


def test_only_the_agent_namespace_allows_privileged_pod_security() -> None:
    levels = {
        d["metadata"]["name"]: d["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        for d in _of("Namespace")
    }
    assert levels == {"attestd-agent": "privileged", "attestd": "restricted"}
    for _, doc, _ in _pods():
        namespace = doc["metadata"]["namespace"]
        assert namespace in levels
        if doc["metadata"]["name"] in HOST_PATHS:
            assert namespace == "attestd-agent"
        else:
            assert namespace == "attestd"


def test_every_namespace_denies_by_default() -> None:
    policies = [_model(d) for d in _of("NetworkPolicy")]
    denying = {
        p.metadata.namespace
        for p in policies
        if p.spec.pod_selector.to_dict() == {"match_expressions": None, "match_labels": None}
        and sorted(p.spec.policy_types) == ["Egress", "Ingress"]
        and not p.spec.ingress
        and not p.spec.egress
    }
    assert denying == {d["metadata"]["name"] for d in _of("Namespace")}


def _allowed_ports(app: str, direction: str) -> set[int]:
    ports: set[int] = set()
    for doc in _of("NetworkPolicy"):
        policy = _model(doc)
        labels = policy.spec.pod_selector.match_labels or {}
        if labels.get("app.kubernetes.io/name") != app:
            continue
        for rule in getattr(policy.spec, direction) or []:
            ports |= {p.port for p in rule.ports or []}
    return ports


def test_network_policies_admit_exactly_the_listeners() -> None:
    container_ports = {
        doc["metadata"]["name"]: {p.container_port for c in pod.containers for p in c.ports}
        for _, doc, pod in _pods()
    }
    assert _allowed_ports("attestd-agent", "ingress") == container_ports["attestd-agent-tdx"]
    assert _allowed_ports("attestd-agent", "ingress") == container_ports["attestd-agent-snp"]
    assert _allowed_ports("attestd-verifier", "ingress") == container_ports["attestd-verifier"]
    assert _allowed_ports("attestd-postgres", "ingress") == container_ports["attestd-postgres"]
    assert _allowed_ports("attestd-postgres", "egress") == set()
    assert _allowed_ports("attestd-verifier", "egress") == {7443, 5432, 53, 443}


def _config(name: str, key: str) -> str:
    [doc] = [d for d in _of("ConfigMap") if d["metadata"]["name"] == name]
    text: str = doc["data"][key]
    return text


def _mounted(name: str) -> dict[str, str]:
    """mountPath -> volume name of the first container of workload ``name``."""
    [(_, _, pod)] = [p for p in _pods() if p[0] == name]
    return {m.mount_path: m.name for m in pod.containers[0].volume_mounts}


def test_the_agent_config_is_valid_and_matches_its_pod(tmp_path: Path) -> None:
    config = parse_config(
        tomllib.loads(_config("attestd-agent-config", "attestd.toml")), base_dir=tmp_path
    )
    assert config.tee.backend == "auto"
    assert config.metrics.address == "0.0.0.0:9464"
    assert config.listen.tcp_address == "0.0.0.0:7443"
    for name in HOST_PATHS:
        mounts = _mounted(name)
        assert str(config.state_dir) in mounts
        assert config.listen.unix_socket is not None
        assert str(config.listen.unix_socket.parent) in mounts
        assert [str(r) for r in config.artifact_roots] == ["/srv/models"]
        assert config.listen.tls is not None
        assert str(config.listen.tls.cert.parent) in mounts
        [(_, doc, _)] = [p for p in _pods() if p[0] == name]
        args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["--config", "/etc/attestd/attestd.toml"] and "--tee" in args


def test_the_verifier_config_is_valid_and_matches_its_pod(tmp_path: Path) -> None:
    config = parse_verifier_config(
        tomllib.loads(_config("attestd-verifier-config", "verifier.toml")),
        source=tmp_path / "verifier.toml",
    )
    url = make_url(config.database)
    assert url.get_backend_name() == "postgresql"
    assert url.password is None, "the password comes from a file, never the URL"
    assert config.metrics_address == "0.0.0.0:9465"
    [(_, doc, pod)] = [p for p in _pods() if p[0] == "attestd-verifier"]
    container = doc["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["--config", "/etc/attestd-verifier/verifier.toml"]
    assert "env" not in container  # replica_id defaults to HOSTNAME-PID: the pod's name
    api_port = int(config.api_address.rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"api": api_port, "metrics": int(config.metrics_address.rpartition(":")[2])}
    mounts = _mounted("attestd-verifier")
    assert "/etc/attestd-verifier/verifier.toml" in mounts
    assert config.database_password_file is not None
    paths = [
        config.api_cert,
        config.api_key,
        config.api_client_ca,
        config.ear_signing_key,
        config.database_password_file,
    ]
    for path in paths:
        assert any(str(path).startswith(m + "/") for m in mounts), path
    [db] = [v for v in pod.volumes if v.name == mounts["/etc/attestd-verifier/db"]]
    assert db.secret.secret_name == "attestd-postgres"
    assert [item.path for item in db.secret.items] == [config.database_password_file.name]


def test_every_referenced_secret_is_issued_or_documented() -> None:
    issued = {
        (d["metadata"]["namespace"], d["spec"]["secretName"])
        for d in _of("Certificate")
        if not d["spec"].get("isCA")
    }
    for _, doc, pod in _pods():
        namespace = doc["metadata"]["namespace"]
        for volume in pod.volumes or []:
            if volume.secret is not None:
                assert (namespace, volume.secret.secret_name) in issued | OPERATOR_SECRETS
                assert volume.secret.default_mode == 0o440


def test_cert_manager_resources_are_well_formed() -> None:
    issuers = {(d["kind"], d["metadata"]["name"]) for d in DOCS_CM if d["kind"] != "Certificate"}
    ca_secrets = {d["spec"]["secretName"] for d in DOCS_CM if d["spec"].get("isCA")}
    for doc in DOCS_CM:
        assert doc["apiVersion"] == "cert-manager.io/v1"
        spec = doc["spec"]
        if doc["kind"] == "Certificate":
            assert set(spec) <= {
                "secretName", "commonName", "dnsNames", "usages", "duration",
                "renewBefore", "privateKey", "issuerRef", "isCA",
            }  # fmt: skip
            ref = spec["issuerRef"]
            assert (ref["kind"], ref["name"]) in issuers and ref["group"] == "cert-manager.io"
            key = spec["privateKey"]
            assert key["algorithm"] == "ECDSA" and key["size"] >= 256
            assert key["encoding"] == "PKCS8"
            if not spec.get("isCA"):
                assert spec["usages"] and set(spec["usages"]) <= {
                    "server auth", "client auth", "digital signature",
                }  # fmt: skip
                assert "namespace" in doc["metadata"]
        elif doc["kind"] == "ClusterIssuer":
            assert spec["ca"]["secretName"] in ca_secrets
        else:
            assert spec == {"selfSigned": {}}
    # Agents trust only the CA that issues the verifiers' client certificates.
    by_secret = {d["spec"]["secretName"]: d for d in _of("Certificate")}
    assert (
        by_secret["attestd-verifier-agent-client"]["spec"]["issuerRef"]["name"]
        == (by_secret["attestd-agent-server"]["spec"]["issuerRef"]["name"])
    )
    assert (
        by_secret["attestd-relying-party-example"]["spec"]["issuerRef"]["name"]
        != (by_secret["attestd-agent-server"]["spec"]["issuerRef"]["name"])
    )


DOCS_CM = [d for _, d in DOCS if d["kind"] in CERT_MANAGER]


# -- container images -------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize(
    ("image", "workload", "extras"),
    [("agent", "attestd-agent-tdx", ""), ("verifier", "attestd-verifier", "[fleet]")],
)
def test_containerfiles(image: str, workload: str, extras: str) -> None:
    steps = _instructions(IMAGES / f"{image}.Containerfile")
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    froms = [a for kind, a in steps if kind == "FROM"]
    assert len(froms) == 2, "multi-stage: build, then a runtime without the build tools"
    for key in ("BUILD_IMAGE", "BASE"):
        ref = args[key]
        assert "@sha256:" in ref or re.search(r":[\w.-]+$", ref.rsplit("/", 1)[-1])
        assert not ref.endswith(":latest")
    final = steps[len(steps) - steps[::-1].index(("FROM", froms[-1])) :]
    assert not [a for kind, a in final if kind == "RUN"], "the runtime stage runs no shell"
    [user] = [a for kind, a in final if kind == "USER"]
    uid, gid = (int(x) for x in user.split(":"))
    assert uid > 0 and gid > 0
    [(_, _, pod)] = [p for p in _pods() if p[0] == workload]
    assert (pod.security_context.run_as_user, pod.security_context.run_as_group) == (uid, gid)
    [entrypoint] = [a for kind, a in final if kind == "ENTRYPOINT"]
    assert json.loads(entrypoint)[0] == "/usr/bin/python3"  # exec form: no shell
    [install] = [a for kind, a in steps if kind == "RUN"]
    assert "pip install" in install and "--target" in install
    wheel = re.search(r'"\$\(ls /wheels/attestd-\*\.whl\)([^"]*)"', install)
    assert wheel is not None
    if extras:
        assert wheel.group(1) == extras
    else:
        assert "fleet" not in install and wheel.group(1) == "${EXTRAS:+[$EXTRAS]}"
    assert (IMAGES / f"{image}.Containerfile.dockerignore").read_text().count(".venv") == 1
