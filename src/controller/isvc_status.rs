//! Pure status computation for `InferenceService`: from the Deployment and its pods to
//! replica counts and the Ready / Progressing / Degraded conditions with reasons.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{ConditionType, ConditionUpdate, Reason};

/// Condition reasons used by the InferenceService controller.
pub mod reason {
    use crate::api::Reason;

    /// Ready: at least one replica passes readiness.
    pub const AVAILABLE: Reason = Reason::Available;
    /// Pods exist, their startup probe is still waiting for vLLM (downloading / loading).
    pub const MODEL_DOWNLOADING: Reason = Reason::ModelDownloading;
    /// Pods are being created / scheduled / started.
    pub const DEPLOYING: Reason = Reason::Deploying;
    /// Replicas are 0 (by spec or autoscaler).
    pub const SCALED_TO_ZERO: Reason = Reason::ScaledToZero;
    /// Progressing False: the rollout is complete.
    pub const COMPLETE: Reason = Reason::Complete;
    /// Degraded False: nothing wrong.
    pub const AS_EXPECTED: Reason = Reason::AsExpected;
    /// A pod cannot be scheduled for lack of `nvidia.com/gpu`.
    pub const INSUFFICIENT_GPU: Reason = Reason::InsufficientGpu;
    /// A pod cannot be scheduled for another reason (CPU, memory, node selector, taints).
    pub const UNSCHEDULABLE: Reason = Reason::Unschedulable;
    /// The engine container is in CrashLoopBackOff.
    pub const CRASH_LOOP: Reason = Reason::CrashLoop;
    /// The image cannot be pulled.
    pub const IMAGE_PULL_ERROR: Reason = Reason::ImagePullError;
    /// The container cannot be configured (e.g. a Secret key it references is missing).
    pub const CONTAINER_CONFIG_ERROR: Reason = Reason::ContainerConfigError;
    /// `spec.model.tokenSecretRef` names a Secret or key that does not exist.
    pub const SECRET_MISSING: Reason = Reason::SecretMissing;
    /// An object the operator would create exists and belongs to someone else.
    pub const NAME_CONFLICT: Reason = Reason::NameConflict;
    /// The spec cannot be rendered (see the message for the field and the fix).
    pub const INVALID_SPEC: Reason = Reason::InvalidSpec;
    /// The API server rejected an apply (immutable field, RBAC, admission policy).
    pub const APPLY_FAILED: Reason = Reason::ApplyFailed;
    /// `autoscaling.provider: keda` but the KEDA CRDs are not installed.
    pub const KEDA_MISSING: Reason = Reason::KedaMissing;
    /// `monitoring.podMonitor` but the Prometheus Operator CRDs are not installed.
    pub const POD_MONITOR_CRD_MISSING: Reason = Reason::PodMonitorCrdMissing;
    /// The PodMonitor was applied.
    pub const POD_MONITOR_APPLIED: Reason = Reason::PodMonitorApplied;
    /// `--monitoring-stack gmp` but GKE Managed Prometheus' PodMonitoring CRD is missing.
    pub const POD_MONITORING_CRD_MISSING: Reason = Reason::PodMonitoringCrdMissing;
    /// The PodMonitoring was applied.
    pub const POD_MONITORING_APPLIED: Reason = Reason::PodMonitoringApplied;
    /// The operator may not read or write the scrape object (403, e.g. the chart's
    /// `rbac.podMonitors` is off).
    pub const MONITORING_FORBIDDEN: Reason = Reason::MonitoringForbidden;
    /// The operator may not read or write KEDA ScaledObjects (403).
    pub const KEDA_FORBIDDEN: Reason = Reason::KedaForbidden;
    /// `engine.image` (or the default vLLM image) is not in the operator's allow-list.
    pub const IMAGE_NOT_ALLOWED: Reason = Reason::ImageNotAllowed;
    /// The cache PVC exists with an access mode, storage class or size the spec no longer
    /// asks for, and those fields cannot change in place.
    pub const CACHE_PVC_IMMUTABLE: Reason = Reason::CachePvcImmutable;
    /// The Deployment cannot create pods (`ReplicaFailure`: quota, Pod Security
    /// admission, a webhook).
    pub const REPLICA_FAILURE: Reason = Reason::ReplicaFailure;
    /// The rollout made no progress within `progressDeadlineSeconds`.
    pub const PROGRESS_DEADLINE_EXCEEDED: Reason = Reason::ProgressDeadlineExceeded;
}

/// What the Deployment's own conditions say is wrong: `ReplicaFailure=True` (pods cannot be
/// created, e.g. quota or Pod Security admission) or `Progressing=False` (deadline
/// exceeded), as (reason, message). Pure.
pub fn deployment_problem(deployment: &Deployment) -> Option<(Reason, String)> {
    let conditions = deployment.status.as_ref()?.conditions.as_ref()?;
    let name = deployment.metadata.name.as_deref().unwrap_or("?");
    if let Some(c) = conditions
        .iter()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
    {
        return Some((
            reason::REPLICA_FAILURE,
            format!(
                "Deployment {name} cannot create pods ({}): {}; check the namespace's \
                 ResourceQuota (GPU quota), Pod Security admission and admission webhooks",
                c.reason.as_deref().unwrap_or("ReplicaFailure"),
                c.message.as_deref().unwrap_or("no message"),
            ),
        ));
    }
    if let Some(c) = conditions
        .iter()
        .find(|c| c.type_ == "Progressing" && c.status == "False")
    {
        return Some((
            reason::PROGRESS_DEADLINE_EXCEEDED,
            format!(
                "Deployment {name} rollout stalled ({}): {}; see the pod conditions, or raise \
                 spec.rollout.progressDeadlineSeconds",
                c.reason.as_deref().unwrap_or("Progressing=False"),
                c.message.as_deref().unwrap_or("no message"),
            ),
        ));
    }
    None
}

/// For a pod the scheduler says matches no node's labels: which required labels it asked
/// for, and a hint for the label scheme (empty when the message is about something else).
fn selector_hint(pod: &Pod, scheduler_message: &str) -> String {
    if !scheduler_message.contains("didn't match Pod's node affinity/selector") {
        return String::new();
    }
    let Some(spec) = &pod.spec else {
        return String::new();
    };
    let mut wanted: Vec<String> = spec
        .node_selector
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    for term in required.iter().flat_map(|r| r.node_selector_terms.iter()) {
        for e in term.match_expressions.iter().flatten() {
            wanted.push(format!(
                "{} {} ({})",
                e.key,
                e.operator,
                e.values
                    .iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    if wanted.is_empty() {
        return String::new();
    }
    let keys = wanted.join("; ");
    let mut hint = format!("; no node carries the label(s) the pod requires: {keys}");
    if keys.contains("karpenter.k8s.aws/") {
        hint.push_str(
            "; only Karpenter-provisioned nodes carry karpenter.k8s.aws/* labels: on EKS \
             managed node groups set spec.accelerator.eksNodeLabels: instanceType, on EKS \
             Auto Mode autoMode",
        );
    } else if keys.contains("eks.amazonaws.com/instance-") {
        hint.push_str(
            "; only EKS Auto Mode nodes carry eks.amazonaws.com/instance-* labels: with \
             Karpenter set spec.accelerator.eksNodeLabels: karpenter, on managed node groups \
             instanceType",
        );
    } else if keys.contains("cloud.google.com/gke-accelerator") {
        hint.push_str(
            "; create a GKE node pool with that accelerator (or enable node \
             auto-provisioning for it)",
        );
    }
    hint
}

/// What the Deployment and pods say.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Pods of the Deployment.
    pub replicas: i32,
    /// Pods passing readiness.
    pub ready_replicas: i32,
    /// Ready / Progressing / Degraded.
    pub conditions: Vec<ConditionUpdate>,
}

/// How long a pod may stay unschedulable before it counts as Degraded: GPU node pools
/// usually scale from zero (cluster autoscaler, GKE node auto-provisioning, Karpenter), and a
/// GPU node takes minutes to join. Until then the reason shows in Ready / Progressing only.
pub const UNSCHEDULABLE_GRACE: SignedDuration = SignedDuration::from_mins(10);

/// A pod-level problem: (rank, reason, message, degraded). `degraded` is false while an
/// unschedulable pod is within [`UNSCHEDULABLE_GRACE`].
type Problem = (u8, crate::api::Reason, String, bool);

/// The worst pod-level problem: Degraded ones first, then by rank.
fn pod_problem(pods: &[Pod], now: Timestamp) -> Option<Problem> {
    let mut found: Vec<Problem> = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let Some(status) = &pod.status else { continue };
        for c in status.conditions.iter().flatten() {
            if c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
            {
                // Without a transition time, assume it has been stuck for long.
                let degraded = c
                    .last_transition_time
                    .as_ref()
                    .is_none_or(|t| t.0 + UNSCHEDULABLE_GRACE <= now);
                let msg = c.message.clone().unwrap_or_default();
                let hint = selector_hint(pod, &msg);
                if msg.contains("nvidia.com/gpu") {
                    found.push((
                        1,
                        reason::INSUFFICIENT_GPU,
                        format!(
                            "pod {name} cannot be scheduled: no node has enough free nvidia.com/gpu \
                             ({msg}){hint}; add GPU nodes matching spec.accelerator (or enable node \
                             auto-provisioning), or lower spec.accelerator.count / spec.replicas"
                        ),
                        degraded,
                    ));
                } else {
                    found.push((
                        2,
                        reason::UNSCHEDULABLE,
                        format!(
                            "pod {name} cannot be scheduled ({msg}){hint}; check spec.accelerator, \
                             spec.scheduling and the node pool's labels, taints and capacity"
                        ),
                        degraded,
                    ));
                }
            }
        }
        for cs in status.container_statuses.iter().flatten() {
            let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let why = waiting.reason.as_deref().unwrap_or("");
            let detail = waiting.message.clone().unwrap_or_default();
            match why {
                "CrashLoopBackOff" => {
                    let last = cs
                        .last_state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .map(|t| {
                            format!(
                                "; last exit code {} ({})",
                                t.exit_code,
                                t.reason.clone().unwrap_or_default()
                            )
                        })
                        .unwrap_or_default();
                    found.push((
                        0,
                        reason::CRASH_LOOP,
                        format!(
                            "container {} of pod {name} keeps crashing ({} restarts{last}); see \
                             `kubectl logs {name} --previous`: often out of GPU memory (lower \
                             spec.engine.maxModelLen or gpuMemoryUtilization) or a bad extraArgs flag",
                            cs.name, cs.restart_count
                        ),
                        true,
                    ));
                }
                "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => found.push((
                    0,
                    reason::IMAGE_PULL_ERROR,
                    format!(
                        "pod {name} cannot pull image {}: {detail}; check spec.engine.image",
                        cs.image
                    ),
                    true,
                )),
                // The kubelet reports a missing Secret (or key) this way; the operator
                // itself does not need to read Secrets to tell.
                "CreateContainerConfigError" if detail.contains("secret") => found.push((
                    0,
                    reason::SECRET_MISSING,
                    format!(
                        "pod {name} cannot start: {detail}; create the Secret named in \
                         spec.model.tokenSecretRef (or fix its key)"
                    ),
                    true,
                )),
                "CreateContainerConfigError" => found.push((
                    0,
                    reason::CONTAINER_CONFIG_ERROR,
                    format!(
                        "pod {name} cannot start: {detail}; check spec.model.tokenSecretRef and \
                         spec.engine.env"
                    ),
                    true,
                )),
                _ => {}
            }
        }
    }
    found.sort_by_key(|(rank, _, _, degraded)| (!*degraded, *rank));
    found.into_iter().next()
}

/// Pods whose engine container runs but has not passed its startup probe yet.
fn starting_pods(pods: &[Pod]) -> usize {
    pods.iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.started == Some(false)
                            && c.state.as_ref().is_some_and(|s| s.running.is_some())
                    })
                })
        })
        .count()
}

/// Compute replica counts and conditions from the Deployment and its pods; `endpoint` goes
/// into the Ready message.
pub fn observe(
    deployment: Option<&Deployment>,
    pods: &[Pod],
    endpoint: &str,
    now: Timestamp,
) -> Observed {
    let desired = deployment
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let ds = deployment
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    let replicas = ds.replicas.unwrap_or(0);
    let ready = ds.ready_replicas.unwrap_or(0);
    let updated = ds.updated_replicas.unwrap_or(0);
    let available = ds.available_replicas.unwrap_or(0);
    let generation_seen = match (
        deployment.and_then(|d| d.metadata.generation),
        ds.observed_generation,
    ) {
        (Some(g), Some(o)) => o >= g,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let rollout_done = generation_seen
        && updated >= desired
        && ready >= desired
        && available >= desired
        && replicas <= desired;

    let (problem, pending) = match pod_problem(pods, now) {
        Some((_, r, m, true)) => (Some((r, m)), None),
        Some((_, r, m, false)) => (None, Some((r, m))),
        None => (None, None),
    };
    // Pods that cannot even be created (quota, admission) leave no pod to look at: the
    // Deployment's own conditions say why. A crash loop or pull error still comes first.
    let problem = match (problem, deployment.and_then(deployment_problem)) {
        (Some(p), _) if p.0 != reason::INSUFFICIENT_GPU && p.0 != reason::UNSCHEDULABLE => Some(p),
        (_, Some(d)) => Some(d),
        (p, None) => p,
    };
    let starting = starting_pods(pods);
    let (wait_reason, wait_message) = if let Some((r, m)) = pending {
        (
            r,
            format!(
                "{m} (waiting for node autoscaling; reported as Degraded after {} minutes)",
                UNSCHEDULABLE_GRACE.as_secs() / 60
            ),
        )
    } else if starting > 0 {
        (
            reason::MODEL_DOWNLOADING,
            format!(
                "{starting} pod(s) started and are downloading / loading the model (the startup \
                 probe allows up to 60 minutes)"
            ),
        )
    } else {
        (
            reason::DEPLOYING,
            format!(
                "{ready}/{desired} replicas ready; waiting for pods to be scheduled and started"
            ),
        )
    };

    let mut conditions = Vec::new();
    let ready_cond = if desired == 0 {
        ConditionUpdate::new(
            ConditionType::Ready,
            false,
            reason::SCALED_TO_ZERO,
            "0 replicas requested",
        )
    } else if ready > 0 {
        ConditionUpdate::new(
            ConditionType::Ready,
            true,
            reason::AVAILABLE,
            format!("{ready}/{desired} replicas ready; serving at {endpoint}"),
        )
    } else if let Some((r, m)) = &problem {
        ConditionUpdate::new(ConditionType::Ready, false, *r, m.clone())
    } else {
        ConditionUpdate::new(
            ConditionType::Ready,
            false,
            wait_reason,
            wait_message.clone(),
        )
    };
    conditions.push(ready_cond);
    conditions.push(if rollout_done {
        ConditionUpdate::new(
            ConditionType::Progressing,
            false,
            reason::COMPLETE,
            format!("{ready}/{desired} replicas ready and up to date"),
        )
    } else {
        ConditionUpdate::new(ConditionType::Progressing, true, wait_reason, wait_message)
    });
    conditions.push(match problem {
        Some((r, m)) => ConditionUpdate::new(ConditionType::Degraded, true, r, m),
        None => ConditionUpdate::new(
            ConditionType::Degraded,
            false,
            reason::AS_EXPECTED,
            "no problems detected",
        ),
    });
    Observed {
        replicas,
        ready_replicas: ready,
        conditions,
    }
}

/// Conditions for a spec problem found before anything was applied (InvalidSpec,
/// SecretMissing): Ready False and Degraded True with the same message, Progressing False.
pub fn blocked(reason: crate::api::Reason, message: &str) -> Vec<ConditionUpdate> {
    vec![
        ConditionUpdate::new(ConditionType::Ready, false, reason, message),
        ConditionUpdate::new(ConditionType::Progressing, false, reason, message),
        ConditionUpdate::new(ConditionType::Degraded, true, reason, message),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p-1"},
            "spec": {"containers": [{"name": "engine"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn unschedulable(at: &str) -> Pod {
        pod(
            json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "lastTransitionTime": at,
            "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}]}),
        )
    }

    fn find(o: &Observed, t: ConditionType) -> &ConditionUpdate {
        o.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn a_fresh_unschedulable_pod_waits_for_node_autoscaling() {
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let o = observe(None, &[unschedulable("2026-01-01T00:00:00Z")], "e", now);
        assert_eq!(
            find(&o, ConditionType::Ready).reason,
            reason::INSUFFICIENT_GPU
        );
        let p = find(&o, ConditionType::Progressing);
        assert!(p.status);
        assert_eq!(p.reason, reason::INSUFFICIENT_GPU);
        assert!(p.message.contains("waiting for node autoscaling"));
        assert!(!find(&o, ConditionType::Degraded).status);

        let later: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let o = observe(None, &[unschedulable("2026-01-01T00:00:00Z")], "e", later);
        let d = find(&o, ConditionType::Degraded);
        assert!(d.status);
        assert_eq!(d.reason, reason::INSUFFICIENT_GPU);
    }

    #[test]
    fn crash_loop_outranks_a_pending_pod() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let crashing = pod(
            json!({"containerStatuses": [{"name": "engine", "image": "i",
            "imageID": "", "ready": false, "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        );
        let o = observe(
            None,
            &[unschedulable("2026-01-01T00:00:00Z"), crashing],
            "e",
            now,
        );
        assert_eq!(find(&o, ConditionType::Degraded).reason, reason::CRASH_LOOP);
        assert_eq!(find(&o, ConditionType::Ready).reason, reason::CRASH_LOOP);
    }

    fn deployment(conditions: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "qwen", "generation": 2},
            "spec": {"replicas": 1, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 0, "conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn replica_failure_is_degraded_with_its_message() {
        let d = deployment(json!([
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
             "message": "pods \"qwen-1\" is forbidden: exceeded quota: gpu, requested: requests.nvidia.com/gpu=1"},
        ]));
        let o = observe(Some(&d), &[], "e", Timestamp::now());
        let deg = find(&o, ConditionType::Degraded);
        assert!(deg.status);
        assert_eq!(deg.reason, reason::REPLICA_FAILURE);
        assert!(
            deg.message.contains("exceeded quota: gpu"),
            "{}",
            deg.message
        );
        assert!(deg.message.contains("FailedCreate"), "{}", deg.message);
        assert_eq!(
            find(&o, ConditionType::Ready).reason,
            reason::REPLICA_FAILURE
        );
    }

    #[test]
    fn a_stalled_rollout_is_degraded() {
        let d = deployment(json!([
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"qwen-5d8f\" has timed out progressing."},
        ]));
        let o = observe(Some(&d), &[], "e", Timestamp::now());
        let deg = find(&o, ConditionType::Degraded);
        assert_eq!(
            (deg.status, deg.reason),
            (true, reason::PROGRESS_DEADLINE_EXCEEDED)
        );
        assert!(
            deg.message.contains("has timed out progressing"),
            "{}",
            deg.message
        );
        // Healthy conditions are no problem.
        let ok = deployment(json!([
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            {"type": "Available", "status": "True"},
        ]));
        assert!(deployment_problem(&ok).is_none());
    }

    #[test]
    fn a_crash_loop_outranks_a_replica_failure() {
        let d = deployment(json!([
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota"},
        ]));
        let crashing = pod(
            json!({"containerStatuses": [{"name": "engine", "image": "i",
            "imageID": "", "ready": false, "restartCount": 2,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        );
        let o = observe(Some(&d), &[crashing], "e", Timestamp::now());
        assert_eq!(find(&o, ConditionType::Degraded).reason, reason::CRASH_LOOP);
    }

    #[test]
    fn unmatched_node_labels_are_named() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "llama-1"},
            "spec": {"containers": [{"name": "engine"}],
                     "nodeSelector": {"karpenter.k8s.aws/instance-gpu-name": "a10g"}},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "lastTransitionTime": "2026-01-01T00:00:00Z",
                "message": "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."}]},
        }))
        .unwrap();
        let now: Timestamp = "2026-01-01T00:30:00Z".parse().unwrap();
        let o = observe(None, &[p], "e", now);
        let d = find(&o, ConditionType::Degraded);
        assert_eq!(d.reason, reason::UNSCHEDULABLE);
        assert!(
            d.message
                .contains("no node carries the label(s) the pod requires: karpenter.k8s.aws/instance-gpu-name=a10g"),
            "{}",
            d.message
        );
        assert!(
            d.message.contains("eksNodeLabels: instanceType"),
            "{}",
            d.message
        );
    }

    #[test]
    fn scaled_to_zero_is_not_ready() {
        let d: Deployment = serde_json::from_value(json!({"spec": {"replicas": 0, "selector": {},
                "template": {}}}))
        .unwrap();
        let o = observe(Some(&d), &[], "e", Timestamp::now());
        let r = find(&o, ConditionType::Ready);
        assert_eq!((r.status, r.reason), (false, reason::SCALED_TO_ZERO));
    }
}
