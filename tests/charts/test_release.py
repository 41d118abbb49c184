"""The release path: one version (Cargo.toml's) everywhere a release publishes it, the release
workflow's checks, and a Dockerfile that builds with the project's toolchain."""

import fnmatch
import importlib.util
import re
import shutil
import tomllib

import pytest
import yaml

from conftest import CHART, ROOT, objects_of, render

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
CARGO = tomllib.loads((ROOT / "Cargo.toml").read_text())
VERSION = CARGO["package"]["version"]


def release_version():
    spec = importlib.util.spec_from_file_location("release_version", ROOT / ".github" / "scripts" / "release_version.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_copy_of_the_version_is_cargos():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["version"] == VERSION and meta["appVersion"] == VERSION
    (dep,) = objects_of(render(), "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{VERSION}"), \
        "the chart's default image tag is its appVersion"
    copies = release_version().copies()
    assert len(copies) == 6
    assert all(v == VERSION for _, v in copies), copies


def test_release_check_accepts_the_tag_and_refuses_any_drift(tmp_path):
    rv = release_version()
    assert rv.check(f"v{VERSION}") == (VERSION, [])
    assert rv.main(["release_version.py", f"v{VERSION}"]) == 0
    _, problems = rv.check("v9.9.9")
    assert problems and "does not name Cargo.toml's version" in problems[0]
    assert rv.main(["release_version.py", VERSION]) == 1, "the tag needs its v"
    # A copy of the repository with a chart left behind fails the check.
    for rel in ["Cargo.toml", "Dockerfile", "charts/inferops/Chart.yaml", "manifests/base/kustomization.yaml",
                "manifests/overlays/gke-l4/kustomization.yaml", "manifests/overlays/eks/kustomization.yaml"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    assert rv.check(f"v{VERSION}", tmp_path)[1] == []
    chart = tmp_path / "charts/inferops/Chart.yaml"
    chart.write_text(re.sub(r'^appVersion:.*$', 'appVersion: "0.0.1"', chart.read_text(), flags=re.M))
    _, problems = rv.check(f"v{VERSION}", tmp_path)
    assert problems == [f"charts/inferops/Chart.yaml appVersion is 0.0.1, Cargo.toml's version is {VERSION}"]


def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def test_release_runs_on_version_tags_only():
    wf = workflow()
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as true
    assert on == {"push": {"tags": ["v*"]}}
    assert wf["permissions"] == {"contents": "read", "packages": "write"}


def steps():
    (job,) = workflow()["jobs"].values()
    return job["steps"]


def test_release_checks_the_version_before_publishing_anything():
    s = steps()
    names = [st.get("name", st.get("uses", "")) for st in s]
    check = next(i for i, st in enumerate(s) if "release_version.py" in st.get("run", ""))
    push_image = next(i for i, st in enumerate(s) if st.get("uses", "").startswith("docker/build-push-action"))
    push_chart = next(i for i, st in enumerate(s) if "helm push" in st.get("run", ""))
    assert check < push_image < push_chart, names
    assert '"$GITHUB_REF_NAME"' in s[check]["run"]


def test_release_builds_both_architectures_and_pushes_to_the_owners_registry():
    build = next(st for st in steps() if st.get("uses", "").startswith("docker/build-push-action"))
    w = build["with"]
    assert set(w["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert w["file"] == "Dockerfile" and w["push"] is True
    assert w["tags"] == "${{ steps.version.outputs.image }}:${{ steps.version.outputs.version }}"
    assert "VERSION=${{ steps.version.outputs.version }}" in w["build-args"]
    version_step = next(st for st in steps() if st.get("id") == "version")["run"]
    assert "image=ghcr.io/$owner/inferops" in version_step
    assert "charts=oci://ghcr.io/$owner/charts" in version_step
    assert "github.repository_owner" in version_step and "tr '[:upper:]' '[:lower:]'" in version_step


def test_release_packages_the_chart_with_its_image_and_version():
    package = next(st for st in steps() if "helm package" in st.get("run", ""))["run"]
    assert '--version "$v" --app-version "$v"' in package
    # The sed must hit the repository line of values.yaml, or the published chart would
    # point at the wrong image (the grep after it fails the job then).
    m = re.search(r'sed -i "s\|\^(.*?)\$\|', package)
    assert m, package
    assert re.search(f"^{m.group(1)}$", (CHART / "values.yaml").read_text(), re.M), m.group(1)
    push = next(st for st in steps() if "helm push" in st.get("run", ""))["run"]
    assert 'dist/inferops-${{ steps.version.outputs.version }}.tgz' in push


def dockerfile_arg(name):
    m = re.search(rf"^ARG {name}=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert m, name
    return m.group(1)


def version_tuple(v):
    return tuple(int(x) for x in v.split("."))


def test_dockerfile_toolchain_matches_the_project():
    rust = dockerfile_arg("RUST_VERSION")
    assert version_tuple(rust) >= version_tuple(CARGO["package"]["rust-version"]), \
        "the image must build with at least Cargo.toml's rust-version"
    toolchain = ROOT / "rust-toolchain.toml"
    if toolchain.exists():
        channel = tomllib.loads(toolchain.read_text())["toolchain"]["channel"]
        assert version_tuple(rust)[:len(version_tuple(channel))] == version_tuple(channel), \
            f"Dockerfile RUST_VERSION {rust} vs rust-toolchain.toml {channel}"


def admitted(path):
    """Whether .dockerignore lets `path` into the build context."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    ok = True
    for r in rules:
        neg = r.startswith("!")
        pat = r[1:] if neg else r
        if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat.rstrip("/") + "/*") or path.startswith(pat.rstrip("/") + "/"):
            ok = neg
    return ok


def test_every_cargo_target_reaches_the_docker_build():
    """Cargo refuses a manifest whose declared targets are missing, so every explicit target
    path must be inside the build context (.dockerignore) and copied by the Dockerfile."""
    paths = [CARGO.get("lib", {}).get("path", "src/lib.rs")]
    for kind in ("bin", "test", "bench", "example"):
        paths += [t["path"] for t in CARGO.get(kind, []) if "path" in t]
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    copied = [c for line in copied for c in line.split()]
    for p in paths:
        assert admitted(p), f"{p} is excluded by .dockerignore"
        assert any(p == c or p.startswith(c.rstrip("/") + "/") for c in copied), f"{p} is not copied by the Dockerfile"


@pytest.mark.parametrize("path", ["Cargo.toml", "src/main.rs", "crds/inferops.dev.yaml"])
def test_dockerignore_admits_the_sources(path):
    assert admitted(path)


def test_dockerignore_keeps_the_rest_out():
    for p in ("target/debug/inferops", ".venv/bin/python", "tests/charts/conftest.py", ".git/config"):
        assert not admitted(p), p
