"""The operator's RBAC against the API calls its code makes.

tests/charts/rbac_calls.yaml lists every API call site of src/controller/ with the verbs it
needs. These tests check that list against the code (every call site listed, every entry
still a call site) and against the chart's rendered rules (exactly those verbs, with every
rbac.* toggle on and off, in cluster-wide and namespaced mode).
"""

import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ROOT, objects_of, render  # noqa: E402

CALLS = Path(__file__).resolve().parent / "rbac_calls.yaml"
SRC = ROOT / "src" / "controller"
SA = "inferops"

# A Kubernetes API request in the controllers: a method of kube's Api on some receiver, the
# shared apply helpers, and the controllers' reflectors. (`get` is left out on purpose: the
# code uses `get_opt`, and `.get(` is mostly maps and HTTP clients.)
CALL_SITE = re.compile(
    r"\b[\w.]+ ?\. ?(?:get_opt|list|patch|patch_status|patch_scale|delete|create|replace|replace_status|publish|evict) ?\("
    r"|\bapply::(?:apply|apply_json|patch_status|replace_status|crd_exists) ?\("
    r"|\bdelete_if_owned ?\((?!\s*api:)"
    r"|(?<!fn )\bsync_optional ?\("
    r"|\bController::new ?\("
    r"|\. ?(?:owns|watches) ?\("
    r"|\b(?:metadata_)?watcher ?\("
)
# Receivers that are not kube Apis (maps, HTTP clients).
NOT_API = re.compile(r"^(?:map|self\.0|http)\.")

TOGGLES = {
    "rbac.tokenSecretAccess": {"rbac": {"tokenSecretAccess": False}},
    "rbac.nodeAccess": {"rbac": {"nodeAccess": False}},
    "rbac.podMonitors": {"rbac": {"podMonitors": False}},
    "rbac.kedaScaledObjects": {"rbac": {"kedaScaledObjects": False}},
    "operator.leaderElection.enabled": {"operator": {"leaderElection": {"enabled": False}}},
}
ALL_ON = {"rbac": {"tokenSecretAccess": True, "nodeAccess": True, "podMonitors": True, "kedaScaledObjects": True},
          "operator": {"leaderElection": {"enabled": True}}}


def load_calls():
    return yaml.safe_load(CALLS.read_text())


def flat(text):
    return re.sub(r"\s+", " ", text)


def source(file):
    """The file (relative to src/controller/) without its unit tests, whitespace collapsed."""
    text = (SRC / file).read_text()
    return flat(text.split("#[cfg(test)]")[0])


def key(resource):
    group, _, res = resource.partition("/")
    return ("" if group == "core" else group, res)


def expected_grants(off=()):
    """(group, resource) -> verbs the code needs, leaving out entries of toggles in `off`."""
    spec = load_calls()
    out = {}
    for entry in spec["calls"] + spec["required"]:
        if entry.get("toggle") in off:
            continue
        for g in entry["grants"]:
            out.setdefault(key(g["resource"]), set()).update(g["verbs"])
    return out


def operator_grants(objs):
    """(group, resource) -> verbs granted to the operator's ServiceAccount by the rendered
    Roles and ClusterRoles it is bound to."""
    bound = set()
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for b in objects_of(objs, kind):
            if any(s["kind"] == "ServiceAccount" and s["name"] == SA for s in b["subjects"]):
                bound.add((b["roleRef"]["kind"], b["roleRef"]["name"]))
    out = {}
    for kind in ("ClusterRole", "Role"):
        for role in objects_of(objs, kind):
            if (kind, role["metadata"]["name"]) not in bound:
                continue
            for rule in role["rules"]:
                for g in rule["apiGroups"]:
                    for r in rule["resources"]:
                        out.setdefault((g, r), set()).update(rule["verbs"])
    return out


def test_every_call_site_is_listed_and_every_entry_is_a_call_site():
    spec = load_calls()
    by_file = {}
    for e in spec["calls"]:
        by_file.setdefault(e["file"], []).append(e)
    unlisted = []
    used = set()
    for path in sorted(SRC.rglob("*.rs")):
        rel = path.relative_to(SRC).as_posix()
        text = source(rel)
        entries = by_file.get(rel, [])
        for m in CALL_SITE.finditer(text):
            if NOT_API.match(m.group(0)):
                continue
            hits = [i for i, e in enumerate(entries) if text.startswith(e["call"], m.start())]
            if not hits:
                unlisted.append(f"{rel}: {text[m.start():m.start() + 90]}")
            used.update((rel, i) for i in hits)
    assert not unlisted, (
        "API calls without an entry in tests/charts/rbac_calls.yaml (add each, with the verbs it "
        "needs, and grant them in charts/inferops/templates/_rules.tpl):\n  " + "\n  ".join(unlisted))
    stale = [f"{f}: {e['call']}" for f, es in by_file.items() for i, e in enumerate(es) if (f, i) not in used]
    assert not stale, "entries of rbac_calls.yaml that match no call site any more:\n  " + "\n  ".join(stale)
    for e in spec["required"]:
        assert flat(e["code"]) in source(e["file"]), e


def test_the_call_site_scan_finds_calls():
    """The scan must see a call that is not listed, or the test above proves nothing."""
    fake = "let api: Api<Secret> = Api::namespaced(c, ns); api.delete(&name, &dp).await?;"
    assert [m.group(0) for m in CALL_SITE.finditer(flat(fake))] == ["api.delete("]
    assert [m.group(0) for m in CALL_SITE.finditer(".owns(api::<Secret>(&client, &ns), owned)")] == [".owns("]
    assert not list(CALL_SITE.finditer("self.0.get(&url).send().await"))


@pytest.mark.parametrize("namespaced", [False, True], ids=["cluster", "namespaced"])
def test_chart_grants_exactly_what_the_code_calls(namespaced):
    values = {**ALL_ON, "rbac": {**ALL_ON["rbac"], "namespaced": namespaced}}
    granted = operator_grants(render(values))
    want = expected_grants()
    extra = {k: v - want.get(k, set()) for k, v in granted.items()}
    extra = {k: sorted(v) for k, v in extra.items() if v}
    missing = {k: v - granted.get(k, set()) for k, v in want.items()}
    missing = {k: sorted(v) for k, v in missing.items() if v}
    assert extra == {}, f"granted but never called: {extra}"
    assert missing == {}, f"called but not granted: {missing}"


@pytest.mark.parametrize("toggle", sorted(TOGGLES))
def test_each_toggle_removes_exactly_its_calls(toggle):
    values = yaml.safe_load(yaml.safe_dump(ALL_ON))
    for k, v in TOGGLES[toggle].items():
        values[k].update(v)
    assert operator_grants(render(values)) == expected_grants(off={toggle})
    # The toggle really removes something (else it is a dead setting).
    assert expected_grants(off={toggle}) != expected_grants()


def test_default_install_grants_the_defaults():
    defaults = {"rbac.tokenSecretAccess"}  # off by default; the others are on
    assert operator_grants(render()) == expected_grants(off=defaults)


def test_crd_lookups_are_scoped_to_the_crds_the_code_checks():
    consts = {c for p in SRC.rglob("*.rs") for c in re.findall(r'pub const \w+_CRD: &str = "([^"]+)";', p.read_text())}
    assert consts
    (read,) = [r for r in objects_of(render(), "ClusterRole") if r["metadata"]["name"] == "inferops-cluster-read"]
    (crd_rule,) = [r for r in read["rules"] if r["resources"] == ["customresourcedefinitions"]]
    assert crd_rule["verbs"] == ["get"]
    assert set(crd_rule["resourceNames"]) == consts


def test_the_lease_is_scoped_by_name():
    roles = {r["metadata"]["name"]: r for r in objects_of(render(), "Role")}
    rules = roles["inferops-leader-election"]["rules"]
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]} in rules
    named = [r for r in rules if r.get("resourceNames")]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": ["inferops-operator-leader"], "verbs": ["get", "update"]}]


def documented_grants():
    """(group, resource) -> verbs of the table in docs/install.md "What the operator may do"."""
    text = (ROOT / "docs" / "install.md").read_text()
    section = text[text.index("### What the operator may do"):]
    section = section[:section.index("\n### ", 5)]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] in ("API group", "---"):
            continue
        group = "" if cells[0] == '""' else cells[0]
        names = re.split(r"[`(]", cells[1])[0]
        for res in (r.strip() for r in names.split(",")):
            out.setdefault((group, res), set()).update(cells[2].split())
    return out


def test_the_install_docs_state_the_grants_as_they_are():
    assert documented_grants() == expected_grants()
