#!/usr/bin/env python3
"""The release's version: Cargo.toml's, checked against the tag and every copy of it.

    python3 .github/scripts/release_version.py v0.2.0    # prints 0.2.0, or exits 1

Cargo.toml's `version` is the one source; the tag must name it (`v` + version), and the
copies that a release publishes must agree with it: the chart's `version` and `appVersion`
(the chart's default image tag is its appVersion), the kustomize `images:` tags and the
Dockerfile's default VERSION label. tests/charts/test_release.py runs the same check.
"""

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def crate_version(root=ROOT):
    return tomllib.loads((root / "Cargo.toml").read_text())["package"]["version"]


def copies(root=ROOT):
    """(where, version) of every copy of the version in the repository."""
    out = []
    chart = (root / "charts/inferops/Chart.yaml").read_text()
    for key in ("version", "appVersion"):
        m = re.search(rf'^{key}:\s*"?([^"\s]+)"?\s*$', chart, re.M)
        out.append((f"charts/inferops/Chart.yaml {key}", m.group(1) if m else None))
    for k in ("manifests/base/kustomization.yaml", "manifests/overlays/gke-l4/kustomization.yaml",
              "manifests/overlays/eks/kustomization.yaml"):
        m = re.search(r"^\s*newTag:\s*\"?([^\"\s]+)\"?\s*$", (root / k).read_text(), re.M)
        out.append((f"{k} images newTag", m.group(1) if m else None))
    m = re.search(r"^ARG VERSION=(\S+)$", (root / "Dockerfile").read_text(), re.M)
    out.append(("Dockerfile ARG VERSION", m.group(1) if m else None))
    return out


def check(tag, root=ROOT):
    """The version, or a list of problems."""
    version = crate_version(root)
    problems = []
    if tag != f"v{version}":
        problems.append(f"tag {tag} does not name Cargo.toml's version {version} (expected v{version})")
    for where, v in copies(root):
        if v != version:
            problems.append(f"{where} is {v}, Cargo.toml's version is {version}")
    return version, problems


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    version, problems = check(argv[1])
    for p in problems:
        print(f"::error::{p}", file=sys.stderr)
    if problems:
        return 1
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
