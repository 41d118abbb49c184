//! The strict apiserver harness (tests/it/support/strict.rs): each rule refuses its
//! violation with the apiserver's status and reason, accepts the legal write, and leaves the
//! store as it was after a refusal.

use inferops::api::{BenchmarkRun, InferenceService};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kube_fake_client::ClientBuilder;
use serde_json::{Value, json};

use crate::support::strict::{Rbac, clients, clients_with};

const NS: &str = "default";

async fn pair() -> (Client, Client) {
    clients(
        ClientBuilder::new()
            .with_resource::<InferenceService>()
            .with_resource::<BenchmarkRun>()
            .with_status_subresource::<Job>(),
    )
    .await
}

fn api<K>(c: &Client) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(c.clone(), NS)
}

fn obj<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

/// The error's (code, reason), and its message.
fn refusal<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> (u16, String, String) {
    match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn apply() -> PatchParams {
    PatchParams::apply("test").force()
}

#[tokio::test]
async fn pvc_spec_is_immutable_except_a_storage_increase() {
    let (admin, _) = pair().await;
    let pvcs = api::<PersistentVolumeClaim>(&admin);
    let pvc = |mode: &str, size: &str| -> PersistentVolumeClaim {
        obj(json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "cache", "namespace": NS},
                   "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}}}))
    };
    pvcs.create(&PostParams::default(), &pvc("ReadWriteOnce", "50Gi"))
        .await
        .unwrap();
    let (code, reason, message) = refusal(
        pvcs.patch(
            "cache",
            &apply(),
            &Patch::Apply(pvc("ReadWriteMany", "50Gi")),
        )
        .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.starts_with(
            "PersistentVolumeClaim \"cache\" is invalid: spec: Forbidden: spec is immutable"
        ),
        "{message}"
    );
    let stored = pvcs.get("cache").await.unwrap();
    assert_eq!(
        stored.spec.unwrap().access_modes.unwrap(),
        ["ReadWriteOnce"],
        "rolled back"
    );
    let (code, _, message) = refusal(
        pvcs.patch(
            "cache",
            &apply(),
            &Patch::Apply(pvc("ReadWriteOnce", "10Gi")),
        )
        .await,
    );
    assert_eq!(code, 422, "{message}");
    pvcs.patch(
        "cache",
        &apply(),
        &Patch::Apply(pvc("ReadWriteOnce", "100Gi")),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn job_selector_and_template_are_immutable() {
    let (admin, _) = pair().await;
    let jobs = api::<Job>(&admin);
    let job = |image: &str| -> Job {
        obj(json!({"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": "load", "namespace": NS},
                   "spec": {"parallelism": 1, "template": {"spec": {"restartPolicy": "Never",
                       "containers": [{"name": "c", "image": image}]}}}}))
    };
    jobs.create(&PostParams::default(), &job("a:1"))
        .await
        .unwrap();
    let (code, reason, message) = refusal(
        jobs.patch("load", &apply(), &Patch::Apply(job("a:2")))
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains("spec.template: Invalid value"),
        "{message}"
    );
    assert!(message.contains("field is immutable"), "{message}");
    // Mutable fields still change.
    let mut j = job("a:1");
    j.spec.as_mut().unwrap().parallelism = Some(2);
    jobs.patch("load", &apply(), &Patch::Apply(j))
        .await
        .unwrap();
}

#[tokio::test]
async fn deployment_selector_and_service_cluster_ip_are_immutable() {
    let (admin, _) = pair().await;
    let deps = api::<Deployment>(&admin);
    let dep = |app: &str, replicas: i32| -> Deployment {
        obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "d", "namespace": NS},
                   "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                            "template": {"metadata": {"labels": {"app": app}},
                                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}}))
    };
    deps.create(&PostParams::default(), &dep("a", 1))
        .await
        .unwrap();
    let (code, _, message) = refusal(deps.patch("d", &apply(), &Patch::Apply(dep("b", 1))).await);
    assert_eq!(code, 422);
    assert!(
        message.starts_with("Deployment.apps \"d\" is invalid: spec.selector"),
        "{message}"
    );
    deps.patch("d", &apply(), &Patch::Apply(dep("a", 3)))
        .await
        .unwrap();

    let svcs = api::<Service>(&admin);
    let svc = |ip: &str, port: i32| -> Service {
        obj(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": NS},
                   "spec": {"clusterIP": ip, "ports": [{"port": port}]}}),
        )
    };
    svcs.create(&PostParams::default(), &svc("10.0.0.1", 80))
        .await
        .unwrap();
    let (code, _, message) = refusal(
        svcs.patch("s", &apply(), &Patch::Apply(svc("10.0.0.2", 80)))
            .await,
    );
    assert_eq!(code, 422);
    assert!(message.contains("spec.clusterIP"), "{message}");
    svcs.patch("s", &apply(), &Patch::Apply(svc("10.0.0.1", 8080)))
        .await
        .unwrap();
}

#[tokio::test]
async fn names_and_label_values_fit_their_limits() {
    let (admin, _) = pair().await;
    let cm = |name: &str, label: &str| -> ConfigMap {
        obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "namespace": NS, "labels": {"run": label}}}))
    };
    let cms = api::<ConfigMap>(&admin);
    let pp = PostParams::default();
    cms.create(&pp, &cm(&"c".repeat(253), "ok")).await.unwrap();
    let (code, reason, message) = refusal(cms.create(&pp, &cm(&"c".repeat(254), "ok")).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains("metadata.name: Invalid value"),
        "{message}"
    );
    cms.create(&pp, &cm("l63", &"v".repeat(63))).await.unwrap();
    let (code, _, message) = refusal(cms.create(&pp, &cm("l64", &"v".repeat(64))).await);
    assert_eq!(code, 422);
    assert!(
        message.contains("must be no more than 63 characters"),
        "{message}"
    );
    let (code, _, _) = refusal(cms.create(&pp, &cm("syntax", "-bad-")).await);
    assert_eq!(code, 422);
    assert!(
        cms.get_opt("l64").await.unwrap().is_none(),
        "a refused create is not stored"
    );

    let svc = |name: &str| -> Service {
        obj(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
                   "spec": {"ports": [{"port": 80}]}}),
        )
    };
    let svcs = api::<Service>(&admin);
    svcs.create(&pp, &svc(&format!("s{}", "x".repeat(62))))
        .await
        .unwrap();
    assert_eq!(
        refusal(svcs.create(&pp, &svc(&"s".repeat(64))).await).0,
        422
    );
    assert_eq!(
        refusal(svcs.create(&pp, &svc("1svc")).await).0,
        422,
        "a DNS-1035 label"
    );
    let job = |name: &str| -> Job {
        obj(
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS},
                   "spec": {"template": {"spec": {"restartPolicy": "Never",
                       "containers": [{"name": "c", "image": "i"}]}}}}),
        )
    };
    let jobs = api::<Job>(&admin);
    jobs.create(&pp, &job(&"j".repeat(63))).await.unwrap();
    assert_eq!(
        refusal(jobs.create(&pp, &job(&"j".repeat(64))).await).0,
        422
    );
}

#[tokio::test]
async fn configmaps_hold_at_most_one_mebibyte() {
    let (admin, _) = pair().await;
    let cms = api::<ConfigMap>(&admin);
    let cm = |bytes: usize| -> ConfigMap {
        obj(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r", "namespace": NS},
                   "data": {"k": "x".repeat(bytes)}}),
        )
    };
    cms.create(&PostParams::default(), &cm(1024 * 1024 - 1))
        .await
        .unwrap();
    let (code, reason, message) = refusal(
        cms.patch("r", &apply(), &Patch::Apply(cm(1024 * 1024)))
            .await,
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.contains("Too long: must have at most 1048576 bytes"),
        "{message}"
    );
    let stored = cms.get("r").await.unwrap();
    assert_eq!(
        stored.data.unwrap()["k"].len(),
        1024 * 1024 - 1,
        "rolled back"
    );
    let (code, reason, _) = refusal(
        cms.patch("r", &apply(), &Patch::Apply(cm(4 * 1024 * 1024)))
            .await,
    );
    assert_eq!((code, reason.as_str()), (413, "RequestEntityTooLarge"));
}

#[tokio::test]
async fn our_resources_are_validated_against_the_crd_status_included() {
    let (admin, _) = pair().await;
    let runs = api::<BenchmarkRun>(&admin);
    let run: BenchmarkRun = obj(json!({
        "apiVersion": "inferops.dev/v1alpha1", "kind": "BenchmarkRun",
        "metadata": {"name": "b", "namespace": NS},
        "spec": {"target": {"url": "http://x:8000"},
                 "load": {"mode": "concurrency", "concurrency": [1]}},
        "status": {}}));
    runs.create(&PostParams::default(), &run).await.unwrap();
    let mut bad = run.clone();
    bad.spec.load.concurrency = vec![0];
    let (code, reason, message) = refusal(runs.replace("b", &PostParams::default(), &bad).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        message.starts_with("BenchmarkRun.inferops.dev \"b\" is invalid"),
        "{message}"
    );
    let status = json!({"status": {"currentStep": 5_000_000_000u64}});
    let (code, _, message) = refusal(
        runs.patch_status("b", &PatchParams::default(), &Patch::Merge(&status))
            .await,
    );
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("status.currentStep"), "{message}");
    let status = json!({"status": {"currentStep": 1, "phase": "Running"}});
    runs.patch_status("b", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_operator_gets_exactly_the_charts_rbac() {
    let (admin, operator) = pair().await;
    let pod: Pod = obj(json!({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": "p", "namespace": NS},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}));
    let (code, reason, message) = refusal(
        api::<Pod>(&operator)
            .create(&PostParams::default(), &pod)
            .await,
    );
    assert_eq!((code, reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        message,
        "pods is forbidden: User \"system:serviceaccount:inferops-system:inferops\" cannot \
         create resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    api::<Pod>(&admin)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let listed = api::<Pod>(&operator)
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(listed.items[0].name_any(), "p");
    let (code, _, message) = refusal(api::<Pod>(&operator).get("p").await);
    assert_eq!(
        code, 403,
        "the chart grants list and watch on pods, not get: {message}"
    );
    let (code, _, message) = refusal(api::<Pod>(&operator).delete("p", &Default::default()).await);
    assert_eq!(code, 403, "{message}");
    assert!(message.starts_with("pods \"p\" is forbidden"), "{message}");
    let cm: ConfigMap = obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "c", "namespace": NS}}));
    api::<ConfigMap>(&operator)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    // A chart value that turns a grant off: the same request then answers 403.
    let (_, operator) = clients_with(
        ClientBuilder::new(),
        Rbac::chart().without("", "configmaps"),
    )
    .await;
    let (code, _, _) = refusal(
        api::<ConfigMap>(&operator)
            .create(&PostParams::default(), &cm)
            .await,
    );
    assert_eq!(code, 403);
}

#[test]
fn the_chart_rules_are_read_from_the_generated_manifests() {
    let rbac = Rbac::chart();
    let grants = |verb: &str, group: &str, resource: &str| {
        rbac.allows(&crate::support::strict::Attributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            namespace: Some(NS.into()),
            name: Some("x".into()),
        })
    };
    assert!(grants("patch", "inferops.dev", "inferenceservices/status"));
    assert!(grants("create", "batch", "jobs"));
    assert!(
        !grants("update", "apps", "deployments"),
        "the operator applies, never updates"
    );
    assert!(
        !grants("get", "", "secrets"),
        "rbac.tokenSecretAccess is off by default"
    );
    assert!(
        !grants("get", "coordination.k8s.io", "leases"),
        "only the chart's Lease by name"
    );
}
