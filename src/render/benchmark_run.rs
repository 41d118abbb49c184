//! `BenchmarkRun` -> the objects of one load Job.
//!
//! | object | purpose |
//! |---|---|
//! | ConfigMap `NAME-plan[-rN]` | the load plan (`plan.json`) the pods read |
//! | ConfigMap `NAME-results` | raw results: each pod writes its key after every step |
//! | ServiceAccount `NAME-loadgen` | identity of the load pods |
//! | Role + RoleBinding `NAME-loadgen` | `get`/`patch` on `NAME-results` only |
//! | Job `NAME-load[-rN]` | `loadgen.parallelism` indexed pods running `inferops loadgen` |
//!
//! `-rN` names the Job of a scaling study's sweep at N replicas. Every object is owned by the
//! run. The pods run as non-root with a read-only root filesystem, no capabilities and the
//! runtime's seccomp profile (the `restricted` Pod Security Standard).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use super::{RenderContext, controller_owner_ref, labels};
use crate::api::BenchmarkRun;
use crate::contract::plan::Plan;

/// Label naming the owning run on every object.
pub const RUN_LABEL: &str = "inferops.dev/benchmark-run";
/// Label with the replica count of a scaling-study Job.
pub const REPLICAS_LABEL: &str = "inferops.dev/replicas";
/// Where the plan is mounted in the load pods.
pub const PLAN_PATH: &str = "/etc/inferops/plan.json";

/// Names of a run's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Plan ConfigMap of this Job.
    pub plan: String,
    /// Shared results ConfigMap.
    pub results: String,
    /// ServiceAccount, Role and RoleBinding.
    pub loadgen: String,
    /// The Job.
    pub job: String,
    /// Prefix of this Job's keys in the results ConfigMap (`rN-` or empty).
    pub key_prefix: String,
}

impl Names {
    /// Names for the run `run` and, in a scaling study, the sweep at `replicas`.
    pub fn new(run: &str, replicas: Option<i32>) -> Names {
        let suffix = replicas.map(|r| format!("-r{r}")).unwrap_or_default();
        Names {
            plan: format!("{run}-plan{suffix}"),
            results: format!("{run}-results"),
            loadgen: format!("{run}-loadgen"),
            job: format!("{run}-load{suffix}"),
            key_prefix: replicas.map(|r| format!("r{r}-")).unwrap_or_default(),
        }
    }
}

/// Every object of one load Job.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The plan.
    pub plan: ConfigMap,
    /// The (initially empty) results ConfigMap.
    pub results: ConfigMap,
    /// Load pod identity.
    pub service_account: ServiceAccount,
    /// Permission to write the results ConfigMap, nothing else.
    pub role: Role,
    /// Binds the Role to the ServiceAccount.
    pub role_binding: RoleBinding,
    /// The load Job.
    pub job: Job,
}

impl Rendered {
    /// All objects as JSON: ServiceAccount, Role, RoleBinding, ConfigMaps, Job.
    pub fn to_values(&self) -> Vec<Value> {
        let v = |o: Result<Value, serde_json::Error>| o.expect("Kubernetes objects serialize");
        vec![
            v(serde_json::to_value(&self.service_account)),
            v(serde_json::to_value(&self.role)),
            v(serde_json::to_value(&self.role_binding)),
            v(serde_json::to_value(&self.plan)),
            v(serde_json::to_value(&self.results)),
            v(serde_json::to_value(&self.job)),
        ]
    }
}

fn object_labels(run: &str, replicas: Option<i32>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (labels::NAME.to_string(), "inferops-loadgen".to_string()),
        (labels::INSTANCE.to_string(), run.to_string()),
        (labels::COMPONENT.to_string(), "loadgen".to_string()),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (RUN_LABEL.to_string(), run.to_string()),
    ]);
    if let Some(r) = replicas {
        l.insert(REPLICAS_LABEL.to_string(), r.to_string());
    }
    l
}

/// Render the objects of the load Job for `run` running `plan`, at `replicas` for a scaling
/// study.
pub fn render(
    run: &BenchmarkRun,
    plan: &Plan,
    replicas: Option<i32>,
    ctx: &RenderContext,
) -> Rendered {
    let name = run.metadata.name.clone().unwrap_or_default();
    let namespace = run
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| ctx.default_namespace.clone());
    let names = Names::new(&name, replicas);
    let lbl = object_labels(&name, replicas);
    let meta = |n: &str| ObjectMeta {
        name: Some(n.to_string()),
        namespace: Some(namespace.clone()),
        labels: Some(lbl.clone()),
        owner_references: controller_owner_ref(run).map(|o| vec![o]),
        ..ObjectMeta::default()
    };
    let plan_text = serde_json::to_string_pretty(plan).expect("a plan serializes");
    let spec = &run.spec.loadgen;
    let parallelism = spec.parallelism.max(1);
    let image = spec
        .image
        .clone()
        .unwrap_or_else(|| ctx.operator_image.clone());
    let resources = spec
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("1".to_string())),
                ("memory".to_string(), Quantity("256Mi".to_string())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("512Mi".to_string()),
            )])),
            ..ResourceRequirements::default()
        });
    let container = Container {
        name: "loadgen".to_string(),
        image: Some(image),
        args: Some(
            [
                "loadgen",
                "--plan",
                PLAN_PATH,
                "--out",
                "/tmp/results.json",
                "--results-configmap",
                &names.results,
                "--results-key-prefix",
                &names.key_prefix,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
        env: Some(vec![EnvVar {
            name: "POD_NAMESPACE".to_string(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".to_string(),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        resources: Some(resources),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "plan".to_string(),
                mount_path: "/etc/inferops".to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_string(),
                mount_path: "/tmp".to_string(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let pod = PodSpec {
        service_account_name: Some(names.loadgen.clone()),
        restart_policy: Some("Never".to_string()),
        containers: vec![container],
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(vec![
            Volume {
                name: "plan".to_string(),
                config_map: Some(ConfigMapVolumeSource {
                    name: names.plan.clone(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "tmp".to_string(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    let job = Job {
        metadata: meta(&names.job),
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".to_string()),
            completions: Some(parallelism),
            parallelism: Some(parallelism),
            backoff_limit: Some(spec.backoff_limit),
            active_deadline_seconds: spec.active_deadline_seconds,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(lbl.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    };
    Rendered {
        plan: ConfigMap {
            metadata: meta(&names.plan),
            data: Some(BTreeMap::from([("plan.json".to_string(), plan_text)])),
            ..ConfigMap::default()
        },
        results: ConfigMap {
            metadata: meta(&names.results),
            ..ConfigMap::default()
        },
        service_account: ServiceAccount {
            metadata: meta(&names.loadgen),
            automount_service_account_token: Some(true),
            ..ServiceAccount::default()
        },
        role: Role {
            metadata: meta(&names.loadgen),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".to_string()]),
                resource_names: Some(vec![names.results.clone()]),
                verbs: vec!["get".to_string(), "patch".to_string()],
                ..PolicyRule::default()
            }]),
        },
        role_binding: RoleBinding {
            metadata: meta(&names.loadgen),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_string(),
                kind: "Role".to_string(),
                name: names.loadgen.clone(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_string(),
                name: names.loadgen.clone(),
                namespace: Some(namespace.clone()),
                ..Subject::default()
            }]),
        },
        job,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> BenchmarkRun {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/examples/bench-scaling-study.yaml"
        ))
        .unwrap();
        let mut run: BenchmarkRun = serde_yaml::from_str(&text).unwrap();
        run.metadata.uid = Some("uid-1".into());
        run
    }

    #[test]
    fn job_is_indexed_least_privilege_and_restricted() {
        let run = run();
        let plan =
            crate::contract::spec::plan(&run.spec, "http://qwen.default.svc:8000", "qwen", 2, None)
                .unwrap();
        let r = render(&run, &plan, Some(2), &RenderContext::default());
        assert_eq!(r.job.metadata.name.as_deref(), Some("qwen-scaling-load-r2"));
        let spec = r.job.spec.as_ref().unwrap();
        assert_eq!(spec.completion_mode.as_deref(), Some("Indexed"));
        assert_eq!(
            spec.parallelism,
            Some(2),
            "loadgen.parallelism from the example"
        );
        assert_eq!(spec.completions, Some(2));
        assert_eq!(spec.backoff_limit, Some(2));
        let pod = spec.template.spec.as_ref().unwrap();
        let psc = pod.security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            psc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        let args = c.args.as_ref().unwrap().join(" ");
        assert!(
            args.contains("--results-configmap qwen-scaling-results"),
            "{args}"
        );
        assert!(args.contains("--results-key-prefix r2-"), "{args}");
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("qwen-scaling-loadgen")
        );
        // The role allows writing exactly one ConfigMap.
        let rule = &r.role.rules.as_ref().unwrap()[0];
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["qwen-scaling-results".to_string()][..])
        );
        assert_eq!(rule.verbs, ["get", "patch"]);
        assert_eq!(
            rule.resources.as_deref(),
            Some(&["configmaps".to_string()][..])
        );
        // Everything is owned by the run.
        for v in r.to_values() {
            assert_eq!(
                v["metadata"]["ownerReferences"][0]["kind"], "BenchmarkRun",
                "{v}"
            );
            assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        }
        let plan_text = &r.plan.data.as_ref().unwrap()["plan.json"];
        assert!(plan_text.contains("qwen.default.svc"));
    }

    #[test]
    fn names_without_scaling_have_no_suffix() {
        let n = Names::new("sweep", None);
        assert_eq!(n.job, "sweep-load");
        assert_eq!(n.plan, "sweep-plan");
        assert_eq!(n.key_prefix, "");
    }
}
