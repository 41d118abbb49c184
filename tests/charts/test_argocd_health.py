"""Argo CD health checks (deploy/argocd/health/inferops.dev/<Kind>/health.lua), run with Lua 5.1
through lupa in the sandbox Argo CD runs custom health checks in, against the fixtures listed in
each kind's health_test.yaml (Argo CD's own test format). The fixtures are validated against the
CRDs too, so they cannot drift from the status the operator writes.

Argo CD's sandbox (argoproj/argo-cd util/lua/lua.go, `runLua`): a gopher-lua state created with
`SkipOpenLibs: !UseOpenLibs`, which then opens only the package, base and table libraries and a
"safe" os library with `time` and `date` (util/lua/oslib_safe.go). A script registered in
argocd-cm without `useOpenLibs: true` therefore has no `string`, `math`, `io`, `debug` or
`coroutine`, and strings have no methods (`s:sub()` needs the string library's metatable).
`sandboxed_runtime` reproduces exactly that in C Lua 5.1, whose base library is otherwise larger.

    .venv/bin/python tests/charts/test_argocd_health.py --write   # regenerate argocd-cm.yaml
"""

import re
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from lupa import lua51
from lupa.lua51 import LuaError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, crd_schemas  # noqa: E402
from test_kustomize import strict_root  # noqa: E402

HEALTH = ROOT / "deploy" / "argocd" / "health"
KINDS = ["InferenceService", "BenchmarkRun"]
CM = ROOT / "deploy" / "argocd" / "argocd-cm.yaml"

# gopher-lua's base library (baselib.go: OpenBase and baseFuncs, with module/require from
# the package library), plus the two libraries Argo CD opens on top of it.
ARGOCD_GLOBALS = {
    "_G", "_VERSION", "assert", "collectgarbage", "dofile", "error", "getfenv", "getmetatable",
    "ipairs", "load", "loadfile", "loadstring", "module", "next", "pairs", "pcall", "print",
    "rawequal", "rawget", "rawset", "require", "select", "setfenv", "setmetatable", "tonumber",
    "tostring", "type", "unpack", "xpcall",
    "package", "table", "os",
}
ARGOCD_OS = {"time", "date"}

_SANDBOX = """
local allowed, os_funcs = ...
local setmetatable_ = debug.setmetatable
local safe_os = {}
for name in pairs(os_funcs) do safe_os[name] = os[name] end
-- Without the string library gopher-lua strings have no metatable, hence no methods.
setmetatable_("", nil)
local drop = {}
for k in pairs(_G) do
  if not allowed[k] then drop[#drop + 1] = k end
end
for _, k in ipairs(drop) do _G[k] = nil end
_G.os = safe_os
local loaded = {}
for _, k in ipairs({"_G", "package", "table"}) do loaded[k] = package.loaded[k] end
loaded.os = safe_os
for k in pairs(package.loaded) do package.loaded[k] = nil end
for k, v in pairs(loaded) do package.loaded[k] = v end
package.preload.os = function() return safe_os end
"""


def sandboxed_runtime():
    """A Lua 5.1 runtime with only the globals Argo CD gives a health check by default."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    assert lua.eval("_VERSION") == "Lua 5.1"
    as_set = lambda names: lua.table_from({n: True for n in names})  # noqa: E731
    lua.execute(_SANDBOX, as_set(ARGOCD_GLOBALS), as_set(ARGOCD_OS))
    return lua


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


def run_health(kind, obj, script=None):
    lua = sandboxed_runtime()
    script = script or (HEALTH / "inferops.dev" / kind / "health.lua").read_text()
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


def test_the_sandbox_is_argocds():
    lua = sandboxed_runtime()
    assert set(lua.globals().keys()) == ARGOCD_GLOBALS
    assert set(lua.eval("os").keys()) == ARGOCD_OS
    assert lua.eval("type(os.time())") == "number"
    assert lua.eval('require("os").date') is not None
    assert set(lua.eval("package.loaded").keys()) == {"_G", "package", "table", "os"}
    assert lua.eval("table.concat({'a', 'b'}, ',')") == "a,b"
    for expr, err in [
        ('string.format("%.0f", 1.5)', "string"),
        ('math.floor(1.5)', "math"),
        ('os.getenv("HOME")', "getenv"),
        ('("abc"):upper()', "index a string value"),
        ('require("string")', "module 'string' not found"),
        ('io.open("/etc/passwd")', "io"),
        ('coroutine.create(print)', "coroutine"),
    ]:
        with pytest.raises(LuaError, match=err):
            lua.execute("return " + expr)


def test_a_script_using_the_string_library_fails_as_in_argocd():
    """The defect this sandbox exists for: `string.format` in a health script errors in Argo
    CD (`attempt to index global 'string'`) while a full Lua runs it happily."""
    script = 'return {status = "Healthy", message = string.format("%.0f", obj.status.x)}'
    with pytest.raises(LuaError, match="attempt to index global 'string'"):
        run_health("BenchmarkRun", {"status": {"x": 1.0}}, script=script)
    full = lua51.LuaRuntime()
    full.globals().obj = lua_value(full, {"status": {"x": 1.0}})
    assert full.execute(script)["message"] == "1"


@pytest.mark.parametrize("kind", KINDS)
def test_scripts_name_no_library_outside_the_sandbox(kind):
    text = (HEALTH / "inferops.dev" / kind / "health.lua").read_text()
    code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
    used = set(re.findall(r"\b(string|math|io|debug|coroutine)\s*\.", code))
    assert not used, f"{kind}: uses {used}, which Argo CD's sandbox does not open"
    assert not re.search(r"[\w\)\]\"']:\w+\(", code), f"{kind}: calls a string method"


def bench(phase, **status):
    return {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "phase": phase, **status}}


def cond(type_, status, reason, message="m", generation=2):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z"}


def test_benchmarkrun_every_phase():
    phases = crd_schemas()[("inferops.dev/v1alpha1", "BenchmarkRun")]["properties"]["status"]["properties"]["phase"]["enum"]
    assert phases == ["Pending", "WaitingForTarget", "Running", "Collecting", "Succeeded", "Failed"]
    want = {"Pending": "Progressing", "WaitingForTarget": "Progressing", "Running": "Progressing",
            "Collecting": "Progressing", "Succeeded": "Healthy", "Failed": "Degraded"}
    for phase in phases:
        assert run_health("BenchmarkRun", bench(phase))["status"] == want[phase], phase
        # With progress and a summary (the Succeeded message formats the peak throughput).
        full = bench(phase, currentStep=2, totalSteps=3,
                     summary={"peakOutputTokensPerSecond": 1234.56, "ttftP95Ms": 80.0},
                     conditions=[cond("Ready", "True" if phase == "Succeeded" else "False", "R", "ready msg"),
                                 cond("Progressing", "True", "LoadRunning", "step 2")])
        hs = run_health("BenchmarkRun", full)
        assert hs["status"] == want[phase], phase
        assert hs["message"].startswith(phase + " (step 2/3)"), hs
        if phase == "Succeeded":
            assert hs["message"] == "Succeeded (step 2/3): peak 1235 output tok/s"
        # Degraded=True: a running phase turns Degraded; the end states keep their verdict.
        degraded = bench(phase, conditions=[cond("Degraded", "True", "LoadPodFailed", "evicted")])
        hs = run_health("BenchmarkRun", degraded)
        assert hs["status"] == ("Healthy" if phase == "Succeeded" else "Degraded"), phase
        # Written for an older generation: still waiting for the operator (end states excepted).
        stale = {"metadata": {"generation": 3}, "status": {"observedGeneration": 2, "phase": phase}}
        assert run_health("BenchmarkRun", stale)["status"] == want[phase], phase
    regressed = bench("Succeeded", conditions=[cond("Regressed", "True", "ThroughputDropped", "-18%")])
    assert run_health("BenchmarkRun", regressed) == {
        "status": "Degraded", "message": "Succeeded but regressed against its baseline: ThroughputDropped: -18%"}
    fine = bench("Succeeded", conditions=[cond("Regressed", "False", "NoRegression", "ok")])
    assert run_health("BenchmarkRun", fine)["status"] == "Healthy"
    assert run_health("BenchmarkRun", {"metadata": {"generation": 1}})["status"] == "Progressing"
    assert run_health("BenchmarkRun", {"status": {"phase": "Exploded"}})["status"] == "Unknown"


def reasons(path):
    """Condition reasons declared in a `mod reason` block: `pub const NAME: Reason =
    Reason::Variant;` (strings from `Reason::as_str` in src/api/conditions.rs) or
    `pub const NAME: &str = "Value";`."""
    text = (ROOT / path).read_text()
    block = text[text.index("pub mod reason"):]
    block = block[:block.index("\n}\n")]
    out = set(re.findall(r'pub const \w+: &str = "(\w+)";', block))
    variants = re.findall(r"pub const \w+: Reason = Reason::(\w+);", block)
    if variants:
        conditions = (ROOT / "src" / "api" / "conditions.rs").read_text()
        as_str = dict(re.findall(r'Reason::(\w+) => "(\w+)"', conditions))
        out |= {as_str[v] for v in variants}
    return out


# (Ready, Progressing, Degraded, extra conditions) as the controller writes them for each
# reason (src/controller/isvc_status.rs observe / blocked, inference_service.rs), and the
# Argo CD verdict.
ISVC_STATES = {
    "Available": (("True", "Available"), ("False", "Complete"), ("False", "AsExpected"), [], "Healthy"),
    "Complete": (("True", "Available"), ("False", "Complete"), ("False", "AsExpected"), [], "Healthy"),
    "AsExpected": (("True", "Available"), ("False", "Complete"), ("False", "AsExpected"), [], "Healthy"),
    "ModelDownloading": (("False", "ModelDownloading"), ("True", "ModelDownloading"), ("False", "AsExpected"), [], "Progressing"),
    "Deploying": (("False", "Deploying"), ("True", "Deploying"), ("False", "AsExpected"), [], "Progressing"),
    "ScaledToZero": (("False", "ScaledToZero"), ("False", "Complete"), ("False", "AsExpected"), [], "Suspended"),
    # Within the node-autoscaling grace period: Progressing; after it: Degraded (below).
    "InsufficientGPU": (("False", "InsufficientGPU"), ("True", "InsufficientGPU"), ("False", "AsExpected"), [], "Progressing"),
    "Unschedulable": (("False", "Unschedulable"), ("True", "Unschedulable"), ("False", "AsExpected"), [], "Progressing"),
    "CrashLoop": (("False", "CrashLoop"), ("True", "Deploying"), ("True", "CrashLoop"), [], "Degraded"),
    "ImagePullError": (("False", "ImagePullError"), ("True", "Deploying"), ("True", "ImagePullError"), [], "Degraded"),
    "ContainerConfigError": (("False", "ContainerConfigError"), ("True", "Deploying"), ("True", "ContainerConfigError"), [], "Degraded"),
    "SecretMissing": (("False", "SecretMissing"), ("False", "SecretMissing"), ("True", "SecretMissing"), [], "Degraded"),
    "NameConflict": (("False", "NameConflict"), ("False", "NameConflict"), ("True", "NameConflict"), [], "Degraded"),
    "InvalidSpec": (("False", "InvalidSpec"), ("False", "InvalidSpec"), ("True", "InvalidSpec"), [], "Degraded"),
    "ApplyFailed": (("False", "Deploying"), ("True", "Deploying"), ("True", "ApplyFailed"), [], "Degraded"),
    "KEDAMissing": (("True", "Available"), ("False", "Complete"), ("True", "KEDAMissing"), [], "Degraded"),
    # Metrics are an add-on: a serving engine without a PodMonitor is still Healthy.
    "PodMonitorCRDMissing": (("True", "Available"), ("False", "Complete"), ("False", "AsExpected"),
                             [("MetricsUnavailable", "True", "PodMonitorCRDMissing")], "Healthy"),
    "PodMonitorApplied": (("True", "Available"), ("False", "Complete"), ("False", "AsExpected"),
                          [("MetricsUnavailable", "False", "PodMonitorApplied")], "Healthy"),
    "PodMonitoringCRDMissing": (("True", "Available"), ("False", "Complete"), ("False", "AsExpected"),
                                [("MetricsUnavailable", "True", "PodMonitoringCRDMissing")], "Healthy"),
    "PodMonitoringApplied": (("True", "Available"), ("False", "Complete"), ("False", "AsExpected"),
                             [("MetricsUnavailable", "False", "PodMonitoringApplied")], "Healthy"),
    "MonitoringForbidden": (("True", "Available"), ("False", "Complete"), ("False", "AsExpected"),
                            [("MetricsUnavailable", "True", "MonitoringForbidden")], "Healthy"),
    "KEDAForbidden": (("True", "Available"), ("False", "Complete"), ("True", "KEDAForbidden"), [], "Degraded"),
    "ImageNotAllowed": (("False", "ImageNotAllowed"), ("False", "ImageNotAllowed"), ("True", "ImageNotAllowed"), [], "Degraded"),
    # The old pods may still serve while the spec cannot be applied: Degraded all the same.
    "CachePVCImmutable": (("True", "Available"), ("False", "Complete"), ("True", "CachePVCImmutable"), [], "Degraded"),
    "ReplicaFailure": (("False", "ReplicaFailure"), ("True", "Deploying"), ("True", "ReplicaFailure"), [], "Degraded"),
    "ProgressDeadlineExceeded": (("False", "Deploying"), ("False", "ProgressDeadlineExceeded"),
                                 ("True", "ProgressDeadlineExceeded"), [], "Degraded"),
}


def isvc(ready, progressing, degraded, extra=(), generation=2):
    conditions = [cond("Ready", *ready, generation=generation), cond("Progressing", *progressing, generation=generation),
                  cond("Degraded", *degraded, generation=generation)]
    conditions += [cond(t, st, r, generation=generation) for t, st, r in extra]
    return {"metadata": {"generation": 2},
            "status": {"observedGeneration": 2, "replicas": 1, "readyReplicas": 1 if ready[0] == "True" else 0,
                       "conditions": conditions}}


def test_inferenceservice_every_reason():
    declared = reasons("src/controller/isvc_status.rs")
    assert declared == set(ISVC_STATES), (
        "InferenceService condition reasons changed: give each new reason its Argo CD verdict in "
        f"ISVC_STATES (missing {declared - set(ISVC_STATES)}, stale {set(ISVC_STATES) - declared})")
    for reason, (ready, progressing, degraded, extra, want) in ISVC_STATES.items():
        hs = run_health("InferenceService", isvc(ready, progressing, degraded, extra))
        assert hs["status"] == want, (reason, hs)
        if want == "Degraded":
            assert hs["message"].startswith(degraded[1] + ": "), hs
    # InsufficientGPU / Unschedulable past the grace period are Degraded.
    for r in ("InsufficientGPU", "Unschedulable"):
        hs = run_health("InferenceService", isvc(("False", r), ("True", r), ("True", r)))
        assert hs["status"] == "Degraded", hs
    # Ready=False with nothing progressing any more (no Degraded reason) is stalled.
    stalled = isvc(("False", "Deploying"), ("False", "Deploying"), ("False", "AsExpected"))
    assert run_health("InferenceService", stalled)["status"] == "Degraded"
    # Conditions of an older generation do not count.
    old = isvc(("True", "Available"), ("False", "Complete"), ("False", "AsExpected"), generation=1)
    assert run_health("InferenceService", old)["status"] == "Progressing"
    assert run_health("InferenceService", {"metadata": {"generation": 1}})["status"] == "Progressing"


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
