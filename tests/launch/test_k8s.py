"""The Kubernetes manifests agree with the profiles they launch: pods x GPUs = TP x PP x DP
(TP and PP from configs/PROFILE.yaml), TP fits inside a pod, the metrics ports are the
ones every local rank serves on and the ones Prometheus scrapes, the data and checkpoint
paths are on the PVCs, RBAC is read-only, and the Dockerfile runs as a non-root user."""
import re
import shlex
from pathlib import Path

import pytest
import yaml

from megamed.config import load_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "launch" / "k8s"
JOBS = sorted(p for p in K8S.glob("*.yaml") if p.name != "base.yaml")


def _documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _flags(args: str) -> dict:
    words = shlex.split(re.sub(r"\$\(.*?\)", "", args))  # the optional --load
    return {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}


def _base():
    docs = _documents(K8S / "base.yaml")
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_every_job_manifest_exists_for_the_cluster_profiles():
    assert {p.stem for p in JOBS} >= {"m-32b", "s-32b"}
    assert not (ROOT / "launch" / "k8s-m-32b.yaml").exists()


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.stem)
def test_job_agrees_with_its_profile(path):
    (job,) = _documents(path)
    assert job["kind"] == "PyTorchJob" and job["metadata"]["namespace"] == "megamed"
    specs = job["spec"]["pytorchReplicaSpecs"]
    pods = sum(s["replicas"] for s in specs.values())
    pod = specs["Master"]["template"]["spec"]
    (container,) = pod["containers"]
    flags = _flags(container["args"][0])
    cfg = load_config(flags["--profile"])
    assert flags["--profile"] == path.stem
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert int(flags["--nnodes"]) == pods and int(flags["--nproc_per_node"]) == gpus
    p = cfg.parallel
    assert pods * gpus == p.tp * p.pp * int(flags["--dp"])
    assert gpus % p.tp == 0, "TP must stay inside a pod (NVLink)"
    # Metrics: one port per local rank, as the exporter serves them.
    base_port = int(flags["--metrics-port"])
    ports = {c["name"]: c["containerPort"] for c in container["ports"]}
    assert ports == {f"metrics-{i}": base_port + i for i in range(gpus)}
    # Mounts: data read-only from its PVC; checkpoints, metrics, TensorBoard on the other.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"]
              for v in pod["volumes"] if "persistentVolumeClaim" in v}
    base = _base()
    for volume, claim in claims.items():
        assert ("PersistentVolumeClaim", claim) in base
    assert mounts["data"]["readOnly"] and flags["--data"].startswith(mounts["data"]["mountPath"])
    for flag in ("--save", "--metrics-jsonl", "--tensorboard"):
        assert flags[flag].startswith(mounts["ckpt"]["mountPath"] + "/")
    assert "data" in claims and "ckpt" in claims
    # Security: the audit password comes from a Secret (libpq's PGPASSWORD), not the URL,
    # and the pod is not root.
    env = {e["name"]: e for e in container["env"]}
    assert flags["--audit-db"].startswith("postgresql://") and ":" not in \
        flags["--audit-db"].split("://")[1].split("@")[0]
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert pod["serviceAccountName"] == "megamed-trainer"
    # Prometheus scrapes exactly these ports on each node of this profile.
    scrape = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    static = jobs.get(f"megamed-{path.stem}")
    if static:
        targets = [t for c in static["static_configs"] for t in c["targets"]]
        assert len(targets) == pods * gpus
        assert {int(t.rsplit(":", 1)[1]) for t in targets} == set(ports.values())


def test_rbac_is_least_privilege():
    base = _base()
    assert ("Namespace", "megamed") in base
    account = base[("ServiceAccount", "megamed-trainer")]
    binding = base[("RoleBinding", "megamed-trainer")]
    assert binding["roleRef"]["name"] == "megamed-trainer"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": "megamed"}]
    for rule in base[("Role", "megamed-trainer")]["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}
        assert "*" not in rule["resources"] and "secrets" not in rule["resources"]


def test_dockerfile_builds_the_extension_on_ngc_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/pytorch:\S+", text, re.M)
    assert "import megamed._dicom" in text  # the C++ extension was built
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
