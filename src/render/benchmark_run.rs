//! `BenchmarkRun` -> the objects of one load Job.
//!
//! | object | purpose |
//! |---|---|
//! | ConfigMap `NAME-plan[-rN]` | the load plan (`plan.json`) the pods read |
//! | ConfigMap `NAME-results[-rN]-I` | raw results of pod `I`: it writes its key after every step |
//! | ServiceAccount `NAME-loadgen` | identity of the load pods |
//! | Role + RoleBinding `NAME-loadgen[-rN]` | `get`/`patch` on this Job's results ConfigMaps only |
//! | Job `NAME-load[-rN]` | `loadgen.parallelism` indexed pods running `inferops loadgen` |
//!
//! `-rN` names the Job of a scaling study's sweep at N replicas. Each pod has its own results
//! ConfigMap, so one pod's results never crowd out another's within the 1 MiB object limit.
//! A file dataset (ShareGPT, trace, JSONL) from `workload.dataset.configMapRef` is mounted at
//! `/etc/inferops/dataset/<key>`, where the plan reads it. The Job's `activeDeadlineSeconds`
//! defaults to the plan's own length ([`crate::render::plan::deadline`]), and its
//! `podFailurePolicy` ignores pod disruptions (preemption, drains: the `DisruptionTarget`
//! condition) instead of counting them against `backoffLimit`. Every object is owned by the
//! run. The pods run as non-root with a read-only root filesystem, no capabilities and the
//! runtime's seccomp profile (the `restricted` Pod Security Standard).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, KeyToPath, LocalObjectReference, ObjectFieldSelector, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecurityContext,
    ServiceAccount, Volume, VolumeMount,
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
/// Label with the role of a run's ConfigMap (`plan` or `results`).
pub const ROLE_LABEL: &str = "inferops.dev/role";
/// Directory the plan ConfigMap is mounted at in the load pods.
pub const PLAN_DIR: &str = "/etc/inferops/plan";
/// Where the plan is read in the load pods.
pub const PLAN_PATH: &str = "/etc/inferops/plan/plan.json";
/// Suffix of the marker key a load pod writes (next to its results key) when its results
/// outgrow the size budget of its ConfigMap; the operator fails the run with
/// `ResultsOverBudget`.
pub const OVER_BUDGET_SUFFIX: &str = ".over-budget";
/// Suffix of the marker key a load pod writes (next to its results key) when its check of the
/// target failed before any load: the JSON of a [`crate::contract::target::TargetProblem`].
/// The operator fails the run with its reason.
pub const TARGET_PROBLEM_SUFFIX: &str = ".target-problem";
/// Placeholder in `--results-configmap` that each load pod replaces with its index.
pub const INDEX_PLACEHOLDER: &str = "{index}";

/// Names of a run's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Plan ConfigMap of this Job.
    pub plan: String,
    /// Results ConfigMap of pod `I` is `{results_base}-I`.
    pub results_base: String,
    /// ServiceAccount.
    pub loadgen: String,
    /// Role and RoleBinding of this Job (they name this Job's results ConfigMaps).
    pub role: String,
    /// The Job.
    pub job: String,
    /// Prefix of this Job's keys in the results ConfigMaps (`rN-` or empty).
    pub key_prefix: String,
}

/// Longest derived object name: a DNS label and a label value hold 63 characters.
pub const NAME_MAX: usize = 63;
/// Longest Job name: the Job's name is a label value of its pods, and an Indexed Job's pods
/// are named `JOB-INDEX-xxxxx` with the hostname `JOB-INDEX`, which must stay a DNS label.
pub const JOB_NAME_MAX: usize = 52;

/// `base + suffix` in at most `max` bytes. When it does not fit, `base` is cut and followed by
/// `-` and 8 hex digits of a hash of the whole `base`, so distinct runs keep distinct names.
pub fn fit(base: &str, suffix: &str, max: usize) -> String {
    if base.len() + suffix.len() <= max {
        return format!("{base}{suffix}");
    }
    // FNV-1a: stable across builds and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in base.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let mut keep = max.saturating_sub(suffix.len() + 9).min(base.len());
    while !base.is_char_boundary(keep) {
        keep -= 1;
    }
    let head = base[..keep].trim_end_matches(['-', '.']);
    format!("{head}-{h:08x}{suffix}")
}

/// The run's name as a label value (at most 63 characters).
pub fn label_value(run: &str) -> String {
    fit(run, "", NAME_MAX)
}

impl Names {
    /// Names for the run `run` and, in a scaling study, the sweep at `replicas`. Every name
    /// fits its limits whatever the run's name ([`fit`]).
    pub fn new(run: &str, replicas: Option<i32>) -> Names {
        let suffix = replicas.map(|r| format!("-r{r}")).unwrap_or_default();
        Names {
            plan: fit(run, &format!("-plan{suffix}"), NAME_MAX),
            // Room for `-INDEX` (at most 64 pods).
            results_base: fit(run, &format!("-results{suffix}"), NAME_MAX - 3),
            loadgen: fit(run, "-loadgen", NAME_MAX),
            role: fit(run, &format!("-loadgen{suffix}"), NAME_MAX),
            job: fit(run, &format!("-load{suffix}"), JOB_NAME_MAX),
            key_prefix: replicas.map(|r| format!("r{r}-")).unwrap_or_default(),
        }
    }

    /// The results ConfigMap of load pod `index`.
    pub fn results(&self, index: u32) -> String {
        format!("{}-{index}", self.results_base)
    }

    /// The results ConfigMaps of `pods` load pods.
    pub fn all_results(&self, pods: u32) -> Vec<String> {
        (0..pods.max(1)).map(|i| self.results(i)).collect()
    }
}

/// The label selector of every results ConfigMap of run `run`.
pub fn results_selector(run: &str) -> String {
    format!("{RUN_LABEL}={},{ROLE_LABEL}=results", label_value(run))
}

/// Every object of one load Job.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The plan.
    pub plan: ConfigMap,
    /// The (initially empty) results ConfigMaps, one per load pod.
    pub results: Vec<ConfigMap>,
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
    /// All objects as JSON: ServiceAccount, Role, RoleBinding, plan and results ConfigMaps, Job.
    pub fn to_values(&self) -> Vec<Value> {
        let v = |o: Result<Value, serde_json::Error>| o.expect("Kubernetes objects serialize");
        let mut out = vec![
            v(serde_json::to_value(&self.service_account)),
            v(serde_json::to_value(&self.role)),
            v(serde_json::to_value(&self.role_binding)),
            v(serde_json::to_value(&self.plan)),
        ];
        out.extend(self.results.iter().map(|r| v(serde_json::to_value(r))));
        out.push(v(serde_json::to_value(&self.job)));
        out
    }
}

fn object_labels(run: &str, replicas: Option<i32>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (labels::NAME.to_string(), "inferops-loadgen".to_string()),
        (labels::INSTANCE.to_string(), label_value(run)),
        (labels::COMPONENT.to_string(), "loadgen".to_string()),
        (labels::MANAGED_BY.to_string(), labels::MANAGER.to_string()),
        (RUN_LABEL.to_string(), label_value(run)),
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
    let role_meta = |n: &str, role: &str| {
        let mut m = meta(n);
        if let Some(l) = m.labels.as_mut() {
            l.insert(ROLE_LABEL.to_string(), role.to_string());
        }
        m
    };
    let plan_text = serde_json::to_string_pretty(plan).expect("a plan serializes");
    let spec = &run.spec.loadgen;
    let parallelism = spec.parallelism.max(1);
    let results_names = names.all_results(parallelism as u32);
    let results_pattern = format!("{}-{INDEX_PLACEHOLDER}", names.results_base);
    let dataset = run
        .spec
        .workload
        .dataset
        .config_map_ref
        .as_ref()
        .filter(|_| {
            run.spec.workload.dataset.kind.is_file() && run.spec.workload.dataset.path.is_none()
        });
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
                &results_pattern,
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
        volume_mounts: Some(
            [
                Some(VolumeMount {
                    name: "plan".to_string(),
                    mount_path: PLAN_DIR.to_string(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                }),
                dataset.map(|_| VolumeMount {
                    name: "dataset".to_string(),
                    mount_path: crate::contract::spec::DATASET_DIR.to_string(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                }),
                Some(VolumeMount {
                    name: "tmp".to_string(),
                    mount_path: "/tmp".to_string(),
                    ..VolumeMount::default()
                }),
            ]
            .into_iter()
            .flatten()
            .collect(),
        ),
        ..Container::default()
    };
    let pod = PodSpec {
        service_account_name: Some(names.loadgen.clone()),
        restart_policy: Some("Never".to_string()),
        // The operator's pull secrets (`--image-pull-secret`), as on engine and sim pods.
        image_pull_secrets: (!ctx.image_pull_secrets.is_empty()).then(|| {
            ctx.image_pull_secrets
                .iter()
                .map(|n| LocalObjectReference { name: n.clone() })
                .collect()
        }),
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
        volumes: Some(
            [
                Some(Volume {
                    name: "plan".to_string(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: names.plan.clone(),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                }),
                dataset.map(|r| Volume {
                    name: "dataset".to_string(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: r.name.clone(),
                        items: Some(vec![KeyToPath {
                            key: r.key.clone(),
                            path: r.key.clone(),
                            ..KeyToPath::default()
                        }]),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                }),
                Some(Volume {
                    name: "tmp".to_string(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                }),
            ]
            .into_iter()
            .flatten()
            .collect(),
        ),
        ..PodSpec::default()
    };
    let job = Job {
        metadata: meta(&names.job),
        spec: Some(JobSpec {
            completion_mode: Some("Indexed".to_string()),
            completions: Some(parallelism),
            parallelism: Some(parallelism),
            backoff_limit: Some(spec.backoff_limit),
            active_deadline_seconds: spec
                .active_deadline_seconds
                .or_else(|| Some(crate::contract::spec::deadline(plan).as_secs() as i64)),
            pod_failure_policy: Some(PodFailurePolicy {
                rules: vec![PodFailurePolicyRule {
                    action: "Ignore".to_string(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".to_string(),
                        status: "True".to_string(),
                    }]),
                    ..PodFailurePolicyRule::default()
                }],
            }),
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
            metadata: role_meta(&names.plan, "plan"),
            data: Some(BTreeMap::from([("plan.json".to_string(), plan_text)])),
            ..ConfigMap::default()
        },
        results: results_names
            .iter()
            .map(|n| ConfigMap {
                metadata: role_meta(n, "results"),
                ..ConfigMap::default()
            })
            .collect(),
        service_account: ServiceAccount {
            metadata: meta(&names.loadgen),
            automount_service_account_token: Some(true),
            ..ServiceAccount::default()
        },
        role: Role {
            metadata: meta(&names.role),
            rules: Some(vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".to_string()]),
                resource_names: Some(results_names.clone()),
                verbs: vec!["get".to_string(), "patch".to_string()],
                ..PolicyRule::default()
            }]),
        },
        role_binding: RoleBinding {
            metadata: meta(&names.role),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_string(),
                kind: "Role".to_string(),
                name: names.role.clone(),
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
    fn load_pods_get_the_operators_pull_secrets() {
        let run = run();
        let plan =
            crate::contract::spec::plan(&run.spec, "http://qwen.default.svc:8000", "qwen", 2, None)
                .unwrap();
        let pod = |ctx: &RenderContext| {
            render(&run, &plan, Some(2), ctx)
                .job
                .spec
                .unwrap()
                .template
                .spec
                .unwrap()
        };
        assert_eq!(pod(&RenderContext::default()).image_pull_secrets, None);
        let ctx = RenderContext {
            image_pull_secrets: vec!["regcred".into()],
            ..RenderContext::default()
        };
        let names: Vec<String> = pod(&ctx)
            .image_pull_secrets
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["regcred"]);
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
            args.contains("--results-configmap qwen-scaling-results-r2-{index}"),
            "{args}"
        );
        assert!(args.contains("--results-key-prefix r2-"), "{args}");
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("qwen-scaling-loadgen")
        );
        // The role allows writing exactly this Job's results ConfigMaps, one per pod.
        let rule = &r.role.rules.as_ref().unwrap()[0];
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(
                &[
                    "qwen-scaling-results-r2-0".to_string(),
                    "qwen-scaling-results-r2-1".to_string()
                ][..]
            )
        );
        assert_eq!(r.results.len(), 2);
        assert_eq!(
            r.results[1].metadata.labels.as_ref().unwrap()[ROLE_LABEL],
            "results"
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
    fn derived_names_fit_for_a_long_run_name() {
        let long = "a-benchmark-run-named-with-sixty-characters-for-the-l4-sweep";
        assert_eq!(long.len(), 60);
        let other = "a-benchmark-run-named-with-sixty-characters-for-the-l4-other";
        for replicas in [None, Some(16)] {
            let n = Names::new(long, replicas);
            assert!(n.job.len() <= JOB_NAME_MAX, "{}", n.job);
            for name in [&n.plan, &n.loadgen, &n.role, &n.results(63)] {
                assert!(name.len() <= NAME_MAX, "{name}");
                assert!(
                    name.starts_with(|c: char| c.is_ascii_lowercase())
                        && name.ends_with(|c: char| c.is_ascii_alphanumeric()),
                    "{name}"
                );
            }
            assert_ne!(
                n.job,
                Names::new(other, replicas).job,
                "hashes keep runs apart"
            );
        }
        assert_eq!(
            Names::new(long, Some(2)).job,
            fit(long, "-load-r2", JOB_NAME_MAX)
        );
        assert!(Names::new(long, Some(2)).job.ends_with("-load-r2"));
        assert!(label_value(&"x".repeat(200)).len() <= NAME_MAX);
        assert_eq!(label_value("short"), "short");
    }

    #[test]
    fn names_without_scaling_have_no_suffix() {
        let n = Names::new("sweep", None);
        assert_eq!(n.job, "sweep-load");
        assert_eq!(n.plan, "sweep-plan");
        assert_eq!(n.key_prefix, "");
    }
}
