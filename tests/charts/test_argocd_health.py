"""Argo CD health checks (deploy/argocd/health/inferops.dev/<Kind>/health.lua), run with Lua 5.1
through lupa as Argo CD runs them (gopher-lua is Lua 5.1), against the fixtures listed in each
kind's health_test.yaml (Argo CD's own test format). The fixtures are validated against the
CRDs too, so they cannot drift from the status the operator writes.

    .venv/bin/python tests/charts/test_argocd_health.py --write   # regenerate argocd-cm.yaml
"""

import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from lupa import lua51

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, crd_schemas  # noqa: E402
from test_kustomize import strict_root  # noqa: E402

HEALTH = ROOT / "deploy" / "argocd" / "health"
KINDS = ["InferenceService", "BenchmarkRun"]
CM = ROOT / "deploy" / "argocd" / "argocd-cm.yaml"


def lua_value(lua, v):
    if isinstance(v, dict):
        t = lua.table()
        for k, x in v.items():
            t[k] = lua_value(lua, x)
        return t
    if isinstance(v, list):
        t = lua.table()
        for i, x in enumerate(v, start=1):
            t[i] = lua_value(lua, x)
        return t
    return v


def run_health(kind, obj):
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    assert lua.eval("_VERSION") == "Lua 5.1"
    script = (HEALTH / "inferops.dev" / kind / "health.lua").read_text()
    lua.globals().obj = lua_value(lua, obj)
    hs = lua.execute(script)
    return {"status": hs["status"], "message": hs["message"]}


def cases():
    out = []
    for kind in KINDS:
        spec = yaml.safe_load((HEALTH / "inferops.dev" / kind / "health_test.yaml").read_text())
        for t in spec["tests"]:
            out.append(pytest.param(kind, t["inputPath"], t["healthStatus"], id=f"{kind}-{Path(t['inputPath']).stem}"))
    return out


@pytest.mark.parametrize("kind,input_path,expected", cases())
def test_health(kind, input_path, expected):
    obj = yaml.safe_load((HEALTH / "inferops.dev" / kind / input_path).read_text())
    assert run_health(kind, obj) == expected


@pytest.mark.parametrize("kind", KINDS)
def test_every_fixture_is_tested_and_valid(kind):
    d = HEALTH / "inferops.dev" / kind
    listed = {t["inputPath"] for t in yaml.safe_load((d / "health_test.yaml").read_text())["tests"]}
    on_disk = {f"testdata/{p.name}" for p in (d / "testdata").glob("*.yaml")}
    assert listed == on_disk
    schema = strict_root(crd_schemas()[("inferops.dev/v1alpha1", kind)])
    for p in sorted(on_disk):
        obj = yaml.safe_load((d / p).read_text())
        assert obj["kind"] == kind
        jsonschema.Draft7Validator(schema).validate(obj)


def test_health_statuses_cover_every_phase():
    phases = crd_schemas()[("inferops.dev/v1alpha1", "BenchmarkRun")]["properties"]["status"]["properties"]["phase"]["enum"]
    assert phases == ["Pending", "WaitingForTarget", "Running", "Collecting", "Succeeded", "Failed"]
    want = {"Pending": "Progressing", "WaitingForTarget": "Progressing", "Running": "Progressing",
            "Collecting": "Progressing", "Succeeded": "Healthy", "Failed": "Degraded"}
    for phase in phases:
        obj = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "phase": phase}}
        assert run_health("BenchmarkRun", obj)["status"] == want[phase], phase
    assert run_health("BenchmarkRun", {"status": {"phase": "Exploded"}})["status"] == "Unknown"


def expected_cm():
    data = {}
    for kind in KINDS:
        data[f"resource.customizations.health.inferops.dev_{kind}"] = (HEALTH / "inferops.dev" / kind / "health.lua").read_text()
    header = (
        "# Argo CD health checks for the inferops kinds, as an argocd-cm patch, e.g. with kustomize:\n"
        "#   patches: [{path: argocd-cm.yaml}]   (in the kustomization that installs Argo CD)\n"
        "# or the argo-cd Helm chart's configs.cm values. Generated from deploy/argocd/health by\n"
        "#   .venv/bin/python tests/charts/test_argocd_health.py --write\n"
    )
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "argocd-cm", "namespace": "argocd",
                     "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"}},
        "data": data,
    }

    class Literal(str):
        pass

    def literal(dumper, s):
        return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|")

    yaml.add_representer(Literal, literal, Dumper=yaml.SafeDumper)
    cm["data"] = {k: Literal(v) for k, v in data.items()}
    return header + yaml.safe_dump(cm, sort_keys=False, width=120)


def test_argocd_cm_patch_embeds_the_scripts():
    assert CM.read_text() == expected_cm(), "run .venv/bin/python tests/charts/test_argocd_health.py --write"
    cm = yaml.safe_load(CM.read_text())
    for kind in KINDS:
        assert cm["data"][f"resource.customizations.health.inferops.dev_{kind}"] == (
            HEALTH / "inferops.dev" / kind / "health.lua").read_text()


if __name__ == "__main__" and "--write" in sys.argv:
    CM.write_text(expected_cm())
