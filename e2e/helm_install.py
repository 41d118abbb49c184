#!/usr/bin/env python3
"""Install / uninstall the chart with Helm's Go SDK (helm-python-sdk), for machines without
the helm binary. Used by e2e/run.sh; needs the test virtualenv (.venv).

    .venv/bin/python e2e/helm_install.py install RELEASE NAMESPACE [--set key=value ...]
    .venv/bin/python e2e/helm_install.py uninstall RELEASE NAMESPACE
"""

import os
import sys
from pathlib import Path

import helm_python as helm

CHART = Path(__file__).resolve().parent.parent / "charts" / "inferops"


def main(argv):
    action, release, namespace, *rest = argv
    sets = [rest[i + 1] for i in range(0, len(rest), 2) if rest[i] == "--set"]
    values = {}
    for s in sets + ["image.pullPolicy=IfNotPresent"]:
        values = merge(values, helm.parse_set_string(s))
    kwargs = {"namespace": namespace}
    if os.environ.get("KUBECONFIG"):
        kwargs["kubeconfig_path"] = os.environ["KUBECONFIG"].split(os.pathsep)[0]
    with helm.Config(**kwargs) as cfg:
        if action == "install":
            installed = any(r["name"] == release for r in cfg.list())
            if installed:
                rel = cfg.upgrade(str(CHART), release, values, namespace=namespace, wait="watcher", timeout=300)
            else:
                rel = cfg.install(str(CHART), release, values, namespace=namespace, wait="watcher", timeout=300,
                                  create_namespace=True)
            print(f"release {release}: revision {rel['revision']} {rel['status']}")
        elif action == "uninstall":
            cfg.uninstall(release, ignore_not_found=True)
        else:
            raise SystemExit(f"unknown action {action}")


def merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
