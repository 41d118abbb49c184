"""e2e/run.sh's happy and unhappy paths, with stand-ins for kubectl, docker, kind and helm that
record their arguments and answer like a kind cluster would. Checks the order of the steps,
the image and chart arguments, the status assertions, diagnostics and cleanup."""

import json
import os
import subprocess

import pytest
import yaml

from conftest import ROOT
from test_e2e_harness import good_run

FAKE = r"""#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$FAKE_LOG"
tool="$(basename "$0")"
args="$*"
if [ "$tool" = kubectl ]; then
  case "$args" in
    "config current-context") echo "$FAKE_CONTEXT" ;;
    version*) exit 0 ;;
    *"-o jsonpath={.status.phase}"*) cat "$FAKE_PHASE" ;;
    *"-o jsonpath={.status.conditions}"*) echo '[{"type":"Ready","status":"False","reason":"TargetDeleted"}]' ;;
    *"-o json"*) cat "$FAKE_RUN" ;;
    *) exit 0 ;;
  esac
fi
exit 0
"""


@pytest.fixture
def fake(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("kubectl", "docker", "kind", "helm"):
        p = bindir / tool
        p.write_text(FAKE)
        p.chmod(0o755)
    run = tmp_path / "run.json"
    run.write_text(json.dumps(good_run()))
    phase = tmp_path / "phase"
    phase.write_text("Succeeded")
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_LOG": str(log),
        "FAKE_RUN": str(run),
        "FAKE_PHASE": str(phase),
        "FAKE_CONTEXT": "kind-e2e",
    }

    def go(*args, **extra):
        res = subprocess.run(["bash", str(ROOT / "e2e" / "run.sh"), *args], capture_output=True, text=True,
                             env={**env, **extra}, cwd=tmp_path, timeout=120, check=False)
        calls = log.read_text().splitlines() if log.exists() else []
        return res, calls

    go.run, go.phase = run, phase
    return go


def index_of(calls, prefix):
    for i, c in enumerate(calls):
        if c.startswith(prefix):
            return i
    raise AssertionError(f"no call starting with {prefix!r} in:\n" + "\n".join(calls))


def test_happy_path_on_kind(fake):
    res, calls = fake()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "==> PASSED" in res.stdout
    order = [
        index_of(calls, "docker build -q -t ghcr.io/inferops/inferops:e2e ."),
        index_of(calls, "kind load docker-image ghcr.io/inferops/inferops:e2e --name e2e"),
        index_of(calls, "helm upgrade --install inferops charts/inferops -n inferops-system --create-namespace "
                        "--set image.repository=ghcr.io/inferops/inferops --set image.tag=e2e"),
        index_of(calls, "kubectl -n inferops-system rollout status deployment/inferops"),
        index_of(calls, "kubectl apply -f manifests/examples/infsvc-sim.yaml"),
        index_of(calls, "kubectl -n default wait --for=condition=Ready infsvc/qwen-sim"),
        index_of(calls, "kubectl apply -f e2e/bench-sim.yaml"),
        index_of(calls, "kubectl -n default get bench/qwen-sim-smoke -o json"),
        index_of(calls, "kubectl -n default delete --ignore-not-found --wait=false -f e2e/bench-sim.yaml"),
        index_of(calls, "helm uninstall inferops -n inferops-system"),
    ]
    assert order == sorted(order), calls
    # The status table is printed.
    assert "out tok/s" in res.stdout


def test_keep_leaves_everything(fake):
    res, calls = fake("--keep")
    assert res.returncode == 0, res.stderr
    assert not [c for c in calls if c.startswith("helm uninstall") or " delete " in c and "bench-sim" in c]


def test_pushed_image_on_another_cluster(fake):
    res, calls = fake("--image", "registry.example/inferops@sha256:" + "b" * 64, FAKE_CONTEXT="gke_proj_zone_c")
    assert res.returncode == 0, res.stderr
    assert not [c for c in calls if c.startswith(("docker", "kind"))]
    index_of(calls, "helm upgrade --install inferops charts/inferops -n inferops-system --create-namespace "
                    "--set image.repository=registry.example/inferops --set image.digest=sha256:" + "b" * 64)


def test_building_needs_kind(fake):
    res, calls = fake(FAKE_CONTEXT="gke_proj_zone_c")
    assert res.returncode == 1
    assert "not a kind cluster: push an image and pass --image REF" in res.stderr


def test_failed_run_fails_with_diagnostics(fake):
    fake.phase.write_text("Failed")
    res, calls = fake()
    assert res.returncode == 1
    assert "FAILED: BenchmarkRun qwen-sim-smoke failed" in res.stderr and "TargetDeleted" in res.stderr
    assert "---- diagnostics" in res.stdout
    index_of(calls, "kubectl -n inferops-system logs deployment/inferops")
    index_of(calls, "helm uninstall inferops -n inferops-system")


def test_bad_status_table_fails(fake):
    run = good_run()
    run["status"]["steps"][0]["failed"] = 3
    fake.run.write_text(json.dumps(run))
    res, _ = fake()
    assert res.returncode == 1
    assert "failed requests" in res.stderr


def test_without_helm_uses_the_go_sdk(fake, tmp_path):
    os.remove(tmp_path / "bin" / "helm")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind-e2e",
        # port 1 on loopback: refused at once
        "clusters": [{"name": "kind-e2e", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "kind-e2e", "user": {"token": "x"}}],
        "contexts": [{"name": "kind-e2e", "context": {"cluster": "kind-e2e", "user": "kind-e2e"}}],
    }))
    res, calls = fake("--image", "ghcr.io/inferops/inferops:0.1.0", FAKE_CONTEXT="kind-e2e", KUBECONFIG=str(kubeconfig))
    # The stand-in kubectl has no API server behind it, so Helm's Go SDK (e2e/helm_install.py
    # from .venv) gets as far as connecting to the cluster and fails loudly.
    assert res.returncode == 1
    assert "e2e/helm_install.py" in res.stderr and "unreachable" in res.stderr
    assert not [c for c in calls if c.startswith("helm ")]
