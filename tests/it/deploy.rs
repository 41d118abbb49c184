//! What the renderers produce against what the deployment grants: every object the operator
//! renders for the examples is one its RBAC (the chart's rules, as generated into
//! `manifests/base/operator.yaml`) lets it server-side apply (create + patch); every Role it renders grants
//! nothing the operator does not hold itself (Kubernetes would refuse it); the HPA's custom
//! metric is one the chart's prometheus-adapter rules serve; and `inferops render` prints the
//! same bytes run to run, with no timestamps, so GitOps diffs stay quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use inferops::cli::render::{RenderOptions, render_documents};
use serde::Deserialize;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every example, plus the e2e pair (the sim InferenceService and the run against it).
fn inputs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo("manifests/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for p in files {
        out.push((
            p.display().to_string(),
            std::fs::read_to_string(&p).unwrap(),
        ));
    }
    out.push((
        "infsvc-sim.yaml + e2e/bench-sim.yaml".into(),
        format!(
            "{}\n---\n{}",
            read("manifests/examples/infsvc-sim.yaml"),
            read("e2e/bench-sim.yaml")
        ),
    ));
    out
}

fn rendered() -> Vec<(String, Vec<Value>)> {
    inputs()
        .into_iter()
        .map(|(name, text)| {
            let out = render_documents(&text, &RenderOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            (name, yaml_docs(&out.yaml))
        })
        .collect()
}

/// (apiGroup, resource) -> verbs of the operator's ClusterRoles in the generated base.
fn operator_grants() -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut grants: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for doc in yaml_docs(&read("manifests/base/operator.yaml")) {
        if doc["kind"] != "ClusterRole" && doc["kind"] != "Role" {
            continue;
        }
        for rule in doc["rules"].as_array().unwrap() {
            if rule.get("resourceNames").is_some() {
                continue; // the leader-election Lease only
            }
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    grants
                        .entry((g.as_str().unwrap().into(), r.as_str().unwrap().into()))
                        .or_default()
                        .extend(
                            rule["verbs"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(|v| v.as_str().unwrap().to_string()),
                        );
                }
            }
        }
    }
    grants
}

fn group_of(api_version: &str) -> String {
    match api_version.split_once('/') {
        Some((g, _)) => g.to_string(),
        None => String::new(),
    }
}

fn plural(kind: &str) -> String {
    let lower = kind.to_lowercase();
    if lower.ends_with('s') {
        format!("{lower}es")
    } else {
        format!("{lower}s")
    }
}

#[test]
fn operator_rbac_covers_every_rendered_object() {
    let grants = operator_grants();
    let mut kinds = BTreeSet::new();
    for (name, objs) in rendered() {
        assert!(!objs.is_empty(), "{name}: nothing rendered");
        for o in &objs {
            let key = (
                group_of(o["apiVersion"].as_str().unwrap()),
                plural(o["kind"].as_str().unwrap()),
            );
            kinds.insert(key.clone());
            let verbs = grants.get(&key).unwrap_or_else(|| {
                panic!("{name}: the operator renders {key:?} but its RBAC has no rule for it (charts/inferops/templates/_rules.tpl)")
            });
            // Server-side apply: PATCH, plus create for objects that do not exist yet.
            for v in ["create", "patch"] {
                assert!(
                    verbs.contains(v),
                    "{name}: RBAC lacks {v} on {key:?} (charts/inferops/templates/_rules.tpl)"
                );
            }
        }
    }
    // The examples exercise every kind the renderers know, except what needs KEDA.
    for k in [
        ("apps", "deployments"),
        ("", "services"),
        ("", "configmaps"),
        ("batch", "jobs"),
        ("rbac.authorization.k8s.io", "roles"),
    ] {
        assert!(
            kinds.contains(&(k.0.to_string(), k.1.to_string())),
            "no example renders {k:?}"
        );
    }
}

#[test]
fn rendered_roles_grant_only_what_the_operator_holds() {
    let grants = operator_grants();
    let mut roles = 0;
    for (name, objs) in rendered() {
        for role in objs.iter().filter(|o| o["kind"] == "Role") {
            roles += 1;
            for rule in role["rules"].as_array().unwrap() {
                for g in rule["apiGroups"].as_array().unwrap() {
                    for r in rule["resources"].as_array().unwrap() {
                        let key = (
                            g.as_str().unwrap().to_string(),
                            r.as_str().unwrap().to_string(),
                        );
                        let held = grants.get(&key).cloned().unwrap_or_default();
                        for v in rule["verbs"].as_array().unwrap() {
                            assert!(
                                held.contains(v.as_str().unwrap()),
                                "{name}: Role {} grants {v} on {key:?}, which the operator does not hold: the apiserver will refuse to create it",
                                role["metadata"]["name"]
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(roles > 0, "no example renders a Role");
}

#[test]
fn hpa_metrics_are_served_by_the_adapter_rules() {
    let rules: Value =
        serde_yaml::from_str(&read("charts/inferops/files/prometheus-adapter-rules.yaml")).unwrap();
    let served: BTreeSet<String> = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"]["as"].as_str().unwrap().to_string())
        .collect();
    let mut hpas = 0;
    for (name, objs) in rendered() {
        for hpa in objs
            .iter()
            .filter(|o| o["kind"] == "HorizontalPodAutoscaler")
        {
            for m in hpa["spec"]["metrics"].as_array().unwrap() {
                if m["type"] == "Pods" {
                    hpas += 1;
                    let metric = m["pods"]["metric"]["name"].as_str().unwrap();
                    assert!(
                        served.contains(metric),
                        "{name}: HPA reads {metric}, the adapter rules serve {served:?}"
                    );
                }
            }
        }
    }
    assert!(hpas > 0, "no example renders a Pods-metric HPA");
    assert!(served.contains("vllm_num_requests_waiting"));
}

#[test]
fn render_is_byte_for_byte_stable() {
    for (name, text) in inputs() {
        let a = render_documents(&text, &RenderOptions::default())
            .unwrap()
            .yaml;
        let b = render_documents(&text, &RenderOptions::default())
            .unwrap()
            .yaml;
        assert_eq!(a, b, "{name}: two renders differ");
        assert!(
            !a.contains("creationTimestamp") && !a.contains("generateName"),
            "{name}: timestamps or generated names in render output"
        );
    }
}
