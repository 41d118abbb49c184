//! The `InferenceService` reconciler: fetch -> render -> check the token Secret -> server-side
//! apply -> prune what is no longer rendered -> status from the Deployment and its pods ->
//! Events on condition transitions.
//!
//! Bad specs never become reconcile errors (which would retry in a loop): a render error is
//! a `Degraded`/`InvalidSpec` condition plus a Warning Event, and the reconciler waits for
//! the next spec change.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, ListParams, Patch};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply::{self, api_resource, delete_if_owned};
use super::isvc_status::{self, reason};
use super::{Context, Error};
use crate::api::{ConditionType, ConditionUpdate, InferenceService, InferenceServiceStatus};
use crate::render::RenderError;
use crate::render::inference_service::{self as render_isvc, Rendered};

/// CRD of the Prometheus Operator's PodMonitor.
pub const POD_MONITOR_CRD: &str = "podmonitors.monitoring.coreos.com";
/// CRD of GKE Managed Prometheus' PodMonitoring.
pub const POD_MONITORING_CRD: &str = "podmonitorings.monitoring.googleapis.com";
/// CRD of KEDA's ScaledObject.
pub const SCALED_OBJECT_CRD: &str = "scaledobjects.keda.sh";
/// Field manager that briefly co-owns `spec.replicas` when autoscaling is switched on, so
/// that the value survives the operator releasing the field (see [`hand_over_replicas`]).
pub const HANDOVER_MANAGER: &str = "inferops-replicas-handover";

/// Requeue while pods are coming up: pod events are watched (a pod change reconciles its
/// InferenceService at once), and this periodic check also covers missed events.
const REQUEUE_PROGRESSING: Duration = Duration::from_secs(15);
/// Requeue when steady, to catch drift in pod-level state.
const REQUEUE_STEADY: Duration = Duration::from_secs(300);
/// Requeue while the token Secret is missing or a name is taken (neither is watched).
const REQUEUE_SECRET: Duration = Duration::from_secs(30);

fn pod_monitor_resource() -> kube::api::ApiResource {
    api_resource("monitoring.coreos.com/v1", "PodMonitor", "podmonitors")
}

fn pod_monitoring_resource() -> kube::api::ApiResource {
    api_resource(
        "monitoring.googleapis.com/v1",
        "PodMonitoring",
        "podmonitorings",
    )
}

fn scaled_object_resource() -> kube::api::ApiResource {
    api_resource("keda.sh/v1alpha1", "ScaledObject", "scaledobjects")
}

/// The InferenceService an engine pod belongs to (from its `inferops.dev/inference-service`
/// label), for the controller's pod watch.
pub fn pod_owner(pod: Pod) -> Option<ObjectRef<InferenceService>> {
    let name = pod.labels().get(crate::render::labels::INFERENCE_SERVICE)?;
    Some(ObjectRef::new(name).within(&pod.namespace()?))
}

/// Check `spec.model.tokenSecretRef`: `Some(message)` when the Secret or key is missing.
async fn secret_problem(
    ctx: &Context,
    isvc: &InferenceService,
    ns: &str,
) -> Result<Option<String>, Error> {
    let Some(r) = &isvc.spec.model.token_secret_ref else {
        return Ok(None);
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let secret = match api.get_opt(&r.name).await {
        Ok(s) => s,
        // Least privilege: by default the operator may not read Secrets (the chart's
        // `rbac.tokenSecretAccess` grants it). Then the kubelet's CreateContainerConfigError
        // on the pods reports a missing Secret instead.
        Err(kube::Error::Api(e)) if e.code == 403 => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let msg = match secret {
        None => format!(
            "spec.model.tokenSecretRef: Secret {ns}/{} not found; create it, e.g. `kubectl -n {ns} \
             create secret generic {} --from-literal={}=hf_...`, or remove tokenSecretRef for \
             ungated models",
            r.name, r.name, r.key
        ),
        Some(s) => {
            let has_key = s.data.as_ref().is_some_and(|d| d.contains_key(&r.key))
                || s.string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(&r.key));
            if has_key {
                return Ok(None);
            }
            format!(
                "spec.model.tokenSecretRef: Secret {ns}/{} has no key {:?}; add the key or set \
                 tokenSecretRef.key to the key that holds the token",
                r.name, r.key
            )
        }
    };
    Ok(Some(msg))
}

/// When autoscaling is on and the operator still owns the Deployment's `spec.replicas`
/// (autoscaling was just switched on), let a second field manager co-own the current value
/// first. Server-side apply then only *releases* the field when the operator stops sending
/// it, instead of removing it (which would reset the Deployment to 1 replica).
pub async fn hand_over_replicas(ctx: &Context, desired: &Deployment) -> Result<bool, kube::Error> {
    let ns = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(current) = api.get_opt(&name).await? else {
        return Ok(false);
    };
    if !apply::manager_owns_replicas(&current.metadata, apply::FIELD_MANAGER) {
        return Ok(false);
    }
    let replicas = current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let patch = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas},
    });
    api.patch(
        &name,
        &kube::api::PatchParams::apply(HANDOVER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(true)
}

/// `Kind namespace/name` of each rendered object that already exists but is not controlled
/// by this InferenceService (e.g. a Service someone created by hand). Server-side apply with
/// force would silently take such an object over; the operator refuses instead.
pub async fn foreign_objects(
    ctx: &Context,
    rendered: &Rendered,
    ns: &str,
    owner_uid: &str,
) -> Result<Vec<String>, Error> {
    async fn check<K>(
        ctx: &Context,
        ns: &str,
        obj: Option<&K>,
        owner_uid: &str,
        out: &mut Vec<String>,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + serde::de::DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let Some(obj) = obj else { return Ok(()) };
        let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
        if let Some(live) = api.get_opt(&obj.name_any()).await?
            && !apply::is_owned_by(&live, owner_uid)
        {
            out.push(format!("{} {ns}/{}", K::kind(&()), obj.name_any()));
        }
        Ok(())
    }
    let mut out = Vec::new();
    check(ctx, ns, rendered.pvc.as_ref(), owner_uid, &mut out).await?;
    check(ctx, ns, Some(&rendered.deployment), owner_uid, &mut out).await?;
    check(ctx, ns, Some(&rendered.service), owner_uid, &mut out).await?;
    check(ctx, ns, rendered.pdb.as_ref(), owner_uid, &mut out).await?;
    check(ctx, ns, rendered.hpa.as_ref(), owner_uid, &mut out).await?;
    Ok(out)
}

/// The PVC to apply when the cache PVC may already exist. A PVC's access modes and storage
/// class are immutable and its size may only grow: with a `live` PVC, those fields are sent
/// as they are stored (so server-side apply never tries to change or drop them), the size
/// as the larger of the two. Returns the object and, when the spec asks for something the
/// live PVC cannot become, a message naming the difference. Pure.
pub fn pvc_for_apply(
    rendered: &PersistentVolumeClaim,
    live: Option<&PersistentVolumeClaim>,
) -> (PersistentVolumeClaim, Option<String>) {
    let Some(live_spec) = live.and_then(|l| l.spec.as_ref()) else {
        return (rendered.clone(), None);
    };
    let mut out = rendered.clone();
    let name = rendered.name_any();
    let spec = out.spec.get_or_insert_with(Default::default);
    let mut problems = Vec::new();
    if live_spec.access_modes.is_some() && spec.access_modes != live_spec.access_modes {
        problems.push(format!(
            "access modes {:?} (the PVC has {:?})",
            spec.access_modes.clone().unwrap_or_default(),
            live_spec.access_modes.clone().unwrap_or_default()
        ));
        spec.access_modes = live_spec.access_modes.clone();
    }
    if let Some(live_class) = &live_spec.storage_class_name {
        if spec
            .storage_class_name
            .as_ref()
            .is_some_and(|c| c != live_class)
        {
            problems.push(format!(
                "storage class {} (the PVC has {live_class})",
                spec.storage_class_name.clone().unwrap_or_default()
            ));
        }
        spec.storage_class_name = Some(live_class.clone());
    }
    let storage = |s: &k8s_openapi::api::core::v1::PersistentVolumeClaimSpec| {
        s.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .cloned()
    };
    if let (Some(want), Some(have)) = (storage(spec), storage(live_spec)) {
        let (w, h) = (
            crate::render::quantity_to_f64(&want.0),
            crate::render::quantity_to_f64(&have.0),
        );
        if let (Some(w), Some(h)) = (w, h)
            && w < h
        {
            problems.push(format!(
                "size {} (the PVC has {}; PVCs cannot shrink)",
                want.0, have.0
            ));
            if let Some(req) = spec.resources.as_mut().and_then(|r| r.requests.as_mut()) {
                req.insert("storage".into(), have);
            }
        }
    }
    let msg = (!problems.is_empty()).then(|| {
        format!(
            "spec.model.cache asks for {} but PVC {name} already exists and these fields cannot \
             change; the operator keeps the PVC as it is. To change them, delete the PVC (the \
             model is downloaded again) and the operator recreates it",
            problems.join(", ")
        )
    });
    (out, msg)
}

/// Outcome of one optional integration (PodMonitor, PodMonitoring, ScaledObject).
#[derive(Debug, Clone, PartialEq)]
pub enum Optional {
    /// The object was applied.
    Applied,
    /// Not wanted; any object this InferenceService owned was removed (or could not be
    /// looked up, which is fine: without access the operator cannot have created one).
    Removed,
    /// Wanted, but its CRD is not installed.
    CrdMissing,
    /// Wanted, but the API server refused (403): the operator's RBAC lacks the resource.
    Forbidden(String),
}

fn is_code(e: &kube::Error, codes: &[u16]) -> bool {
    matches!(e, kube::Error::Api(s) if codes.contains(&s.code))
}

/// Whether an optional CRD is installed, from the CRD lookup: a 403 (the operator may not
/// read CRDs) means "unknown, try the object itself". Pure.
pub fn classify_crd_lookup(r: Result<bool, kube::Error>) -> Result<bool, kube::Error> {
    match r {
        Err(e) if is_code(&e, &[403]) => Ok(true),
        other => other,
    }
}

/// The outcome of applying a wanted optional object: 403 is `Forbidden`, 404 (the resource
/// type does not exist) `CrdMissing`; only other errors fail the reconcile. Pure.
pub fn classify_apply(r: Result<(), kube::Error>) -> Result<Optional, kube::Error> {
    match r {
        Ok(()) => Ok(Optional::Applied),
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(Optional::Forbidden(s.message)),
        Err(e) if is_code(&e, &[404]) => Ok(Optional::CrdMissing),
        Err(e) => Err(e),
    }
}

/// The outcome of removing an unwanted optional object (lookup, then delete if owned): a
/// 403 or 404 means there is nothing this operator could have created, so nothing to do.
/// Pure.
pub fn classify_removal(r: Result<bool, kube::Error>) -> Result<Optional, kube::Error> {
    match r {
        Ok(_) => Ok(Optional::Removed),
        Err(e) if is_code(&e, &[403, 404]) => {
            tracing::debug!(error = %e, "cannot look up an optional object; nothing to remove");
            Ok(Optional::Removed)
        }
        Err(e) => Err(e),
    }
}

/// Apply or remove one optional object. A 403 or 404 is an outcome, never an error: these
/// integrations are optional, and the rest of the reconcile must go on.
async fn sync_optional(
    client: &kube::Client,
    ar: &kube::api::ApiResource,
    crd: &str,
    desired: Option<&serde_json::Value>,
    ns: &str,
    name: &str,
    uid: &str,
) -> Result<Optional, kube::Error> {
    let installed = classify_crd_lookup(apply::crd_exists(client, crd).await)?;
    match desired {
        Some(_) if !installed => Ok(Optional::CrdMissing),
        Some(obj) => classify_apply(apply::apply_json(client, ar, obj).await.map(|_| ())),
        None if !installed => Ok(Optional::Removed),
        None => {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
            classify_removal(delete_if_owned(&api, name, uid).await)
        }
    }
}

/// The MetricsUnavailable condition for the scrape object's outcome (`None` when
/// monitoring is off).
pub fn metrics_condition(kind: &str, outcome: &Optional) -> Option<ConditionUpdate> {
    let (crd, missing, applied, install) = match kind {
        "PodMonitoring" => (
            POD_MONITORING_CRD,
            reason::POD_MONITORING_CRD_MISSING,
            reason::POD_MONITORING_APPLIED,
            "enable GKE Managed Prometheus on the cluster",
        ),
        _ => (
            POD_MONITOR_CRD,
            reason::POD_MONITOR_CRD_MISSING,
            reason::POD_MONITOR_APPLIED,
            "install the Prometheus Operator (or kube-prometheus-stack)",
        ),
    };
    Some(match outcome {
        Optional::Removed => return None,
        Optional::Applied => ConditionUpdate::new(
            ConditionType::MetricsUnavailable,
            false,
            applied,
            format!("{kind} applied; Prometheus scrapes the engine's /metrics"),
        ),
        Optional::CrdMissing => ConditionUpdate::new(
            ConditionType::MetricsUnavailable,
            true,
            missing,
            format!(
                "monitoring is off: spec.monitoring.podMonitor is true but the {kind} CRD ({crd}) \
                 is not installed; {install}, or set spec.monitoring.podMonitor: false"
            ),
        ),
        Optional::Forbidden(msg) => ConditionUpdate::new(
            ConditionType::MetricsUnavailable,
            true,
            reason::MONITORING_FORBIDDEN,
            format!(
                "monitoring is off: the operator may not manage {kind}s ({}); grant it (the \
                 chart's rbac.podMonitors) or set spec.monitoring.podMonitor: false",
                apply::truncate(msg, 300)
            ),
        ),
    })
}

/// What applying produced: the Deployment (as stored, or as live when its apply failed),
/// conditions from optional integrations, Degraded candidates, and every failed apply.
struct Applied {
    deployment: Option<Deployment>,
    extra: Vec<ConditionUpdate>,
    degraded: Vec<ConditionUpdate>,
    remove_metrics_condition: bool,
    failures: Vec<(String, kube::Error)>,
}

/// Apply every rendered object and prune what is no longer rendered. One object's failure
/// never stops the others: each failure is collected (and reported by the caller).
async fn apply_all(
    ctx: &Context,
    isvc: &InferenceService,
    rendered: &Rendered,
    ns: &str,
) -> Result<Applied, Error> {
    let client = &ctx.client;
    let name = isvc.name_any();
    let uid = isvc.uid().unwrap_or_default();
    let mut out = Applied {
        deployment: None,
        extra: Vec::new(),
        degraded: Vec::new(),
        remove_metrics_condition: false,
        failures: Vec::new(),
    };
    let fail = |what: String, r: Result<(), kube::Error>, out: &mut Applied| {
        if let Err(e) = r {
            tracing::warn!(%name, %ns, object = %what, error = %e, "apply failed");
            out.failures.push((what, e));
        }
    };

    if let Some(pvc) = &rendered.pvc {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let r = async {
            let live = pvcs.get_opt(&pvc.name_any()).await?;
            let (desired, problem) = pvc_for_apply(pvc, live.as_ref());
            if let Some(msg) = problem {
                out.degraded.push(ConditionUpdate::new(
                    ConditionType::Degraded,
                    true,
                    reason::CACHE_PVC_IMMUTABLE,
                    msg,
                ));
            }
            apply::apply(client, &desired).await.map(|_| ())
        }
        .await;
        fail(
            format!("PersistentVolumeClaim {}", pvc.name_any()),
            r,
            &mut out,
        );
    }

    let r = async {
        if isvc.spec.autoscaling.is_some() {
            hand_over_replicas(ctx, &rendered.deployment).await?;
        }
        apply::apply(client, &rendered.deployment).await
    }
    .await;
    match r {
        Ok(d) => out.deployment = Some(d),
        Err(e) => {
            fail(format!("Deployment {name}"), Err(e), &mut out);
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            out.deployment = deployments.get_opt(&name).await.ok().flatten();
        }
    }
    let r = apply::apply(client, &rendered.service).await.map(|_| ());
    fail(format!("Service {name}"), r, &mut out);

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let r = match &rendered.pdb {
        Some(pdb) => apply::apply(client, pdb).await.map(|_| ()),
        None => delete_if_owned(&pdbs, &name, &uid).await.map(|_| ()),
    };
    fail(format!("PodDisruptionBudget {name}"), r, &mut out);

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let r = match &rendered.hpa {
        Some(hpa) => apply::apply(client, hpa).await.map(|_| ()),
        None => delete_if_owned(&hpas, &name, &uid).await.map(|_| ()),
    };
    fail(format!("HorizontalPodAutoscaler {name}"), r, &mut out);

    let keda = sync_optional(
        client,
        &scaled_object_resource(),
        SCALED_OBJECT_CRD,
        rendered.scaled_object.as_ref(),
        ns,
        &name,
        &uid,
    )
    .await;
    match keda {
        Ok(Optional::CrdMissing) => out.degraded.push(ConditionUpdate::new(
            ConditionType::Degraded,
            true,
            reason::KEDA_MISSING,
            format!(
                "spec.autoscaling.provider is keda but the ScaledObject CRD ({SCALED_OBJECT_CRD}) is \
                 not installed, so nothing scales the Deployment; install KEDA or use provider: hpa"
            ),
        )),
        Ok(Optional::Forbidden(msg)) => out.degraded.push(ConditionUpdate::new(
            ConditionType::Degraded,
            true,
            reason::KEDA_FORBIDDEN,
            format!(
                "spec.autoscaling.provider is keda but the operator may not manage ScaledObjects \
                 ({}), so nothing scales the Deployment; grant it (the chart's \
                 rbac.kedaScaledObjects) or use provider: hpa",
                apply::truncate(&msg, 300)
            ),
        )),
        Ok(_) => {}
        Err(e) => fail(format!("ScaledObject {name}"), Err(e), &mut out),
    }

    let monitors = [
        (
            "PodMonitor",
            pod_monitor_resource(),
            POD_MONITOR_CRD,
            rendered.pod_monitor.as_ref(),
        ),
        (
            "PodMonitoring",
            pod_monitoring_resource(),
            POD_MONITORING_CRD,
            rendered.pod_monitoring.as_ref(),
        ),
    ];
    let mut metrics_updates = Vec::new();
    for (kind, ar, crd, desired) in monitors {
        match sync_optional(client, &ar, crd, desired, ns, &name, &uid).await {
            Ok(outcome) => metrics_updates.extend(metrics_condition(kind, &outcome)),
            Err(e) => fail(format!("{kind} {name}"), Err(e), &mut out),
        }
    }
    if rendered.pod_monitor.is_none() && rendered.pod_monitoring.is_none() {
        out.remove_metrics_condition = true;
    }
    out.extra.extend(metrics_updates);
    Ok(out)
}

/// The Degraded condition for apply failures: every failed object with the API server's
/// message. Pure.
pub fn apply_failed_condition(failures: &[(String, String)]) -> Option<ConditionUpdate> {
    if failures.is_empty() {
        return None;
    }
    let list: Vec<String> = failures
        .iter()
        .map(|(what, msg)| format!("{what}: {}", apply::truncate(msg, 300)))
        .collect();
    Some(ConditionUpdate::new(
        ConditionType::Degraded,
        true,
        reason::APPLY_FAILED,
        format!(
            "the API server rejected {} of the rendered objects ({}); the others were applied; \
             fix the spec or the cluster policy, the operator retries with backoff",
            failures.len(),
            list.join("; ")
        ),
    ))
}

fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.reason),
        other => other.to_string(),
    }
}

/// The observed conditions with Degraded decided: an apply failure (first in `extra`)
/// outranks what pods say; otherwise a pod or Deployment problem outranks the other
/// candidates (KEDA missing, immutable cache PVC), which outrank "no problems". Pure.
pub fn merge_degraded(
    observed: Vec<ConditionUpdate>,
    extra: Vec<ConditionUpdate>,
) -> Vec<ConditionUpdate> {
    let observed_problem = observed
        .iter()
        .any(|u| u.type_ == ConditionType::Degraded && u.status);
    let first_extra = extra.into_iter().next();
    let apply_failed = first_extra
        .as_ref()
        .is_some_and(|u| u.reason == reason::APPLY_FAILED);
    match first_extra {
        Some(x) if apply_failed || !observed_problem => observed
            .into_iter()
            .filter(|u| u.type_ != ConditionType::Degraded)
            .chain(std::iter::once(x))
            .collect(),
        _ => observed,
    }
}

/// Write status if it changed, and publish Events for condition transitions.
async fn finish(
    ctx: &Context,
    isvc: &InferenceService,
    mut status: InferenceServiceStatus,
    updates: Vec<ConditionUpdate>,
    remove_metrics_condition: bool,
) -> Result<(), Error> {
    let ns = isvc.namespace().unwrap_or_default();
    let old = isvc.status.clone().unwrap_or_default();
    status.conditions = old.conditions.clone();
    if remove_metrics_condition {
        apply::remove_condition(&mut status.conditions, ConditionType::MetricsUnavailable);
    }
    let transitions =
        apply::set_conditions(&mut status.conditions, updates, isvc.metadata.generation);
    if status != old {
        let api: Api<InferenceService> = Api::namespaced(ctx.client.clone(), &ns);
        apply::patch_status(&api, &isvc.name_any(), &status).await?;
    }
    if !transitions.is_empty() {
        apply::publish_transitions(&ctx.recorder, &isvc.object_ref(&()), &transitions).await;
    }
    Ok(())
}

/// Reconcile one `InferenceService`. A plain async function so tests drive it directly.
pub async fn reconcile(isvc: Arc<InferenceService>, ctx: Arc<Context>) -> Result<Action, Error> {
    if isvc.meta().deletion_timestamp.is_some() {
        // Owned objects go with it through owner references.
        return Ok(Action::await_change());
    }
    let name = isvc.name_any();
    let ns = isvc
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let endpoint = render_isvc::endpoint(&name, &ns);
    let old = isvc.status.clone().unwrap_or_default();
    let base = InferenceServiceStatus {
        observed_generation: isvc.metadata.generation,
        replicas: old.replicas,
        ready_replicas: old.ready_replicas,
        selector: Some(render_isvc::selector_string(&name)),
        endpoint: Some(endpoint.clone()),
        conditions: Vec::new(),
    };

    let rendered = match render_isvc::render(&isvc, &ctx.render) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(%name, %ns, error = %e, "invalid spec");
            let msg = e.to_string();
            let why = match e {
                RenderError::NotAllowed { .. } => reason::IMAGE_NOT_ALLOWED,
                _ => reason::INVALID_SPEC,
            };
            finish(&ctx, &isvc, base, isvc_status::blocked(why, &msg), false).await?;
            return Ok(Action::await_change());
        }
    };

    if let Some(msg) = secret_problem(&ctx, &isvc, &ns).await? {
        tracing::info!(%name, %ns, "token secret missing");
        finish(
            &ctx,
            &isvc,
            base,
            isvc_status::blocked(reason::SECRET_MISSING, &msg),
            false,
        )
        .await?;
        return Ok(Action::requeue(REQUEUE_SECRET));
    }

    let foreign = foreign_objects(&ctx, &rendered, &ns, &isvc.uid().unwrap_or_default()).await?;
    if !foreign.is_empty() {
        let msg = format!(
            "{} already exist(s) and {} not managed by this InferenceService; delete or rename \
             {}, or give the InferenceService another name",
            foreign.join(", "),
            if foreign.len() == 1 { "is" } else { "are" },
            if foreign.len() == 1 { "it" } else { "them" },
        );
        tracing::info!(%name, %ns, %msg, "name conflict");
        finish(
            &ctx,
            &isvc,
            base,
            isvc_status::blocked(reason::NAME_CONFLICT, &msg),
            false,
        )
        .await?;
        return Ok(Action::requeue(REQUEUE_SECRET));
    }

    let applied = apply_all(&ctx, &isvc, &rendered, &ns).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_list = pods
        .list(&ListParams::default().labels(&render_isvc::selector_string(&name)))
        .await?;
    let observed = isvc_status::observe(
        applied.deployment.as_ref(),
        &pod_list.items,
        &endpoint,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let progressing = observed
        .conditions
        .iter()
        .any(|c| c.type_ == ConditionType::Progressing && c.status);
    let failures: Vec<(String, String)> = applied
        .failures
        .iter()
        .map(|(what, e)| (what.clone(), error_message(e)))
        .collect();
    let mut degraded = applied.degraded;
    // Apply failures first: they say why the cluster is not what the spec asks.
    degraded.splice(0..0, apply_failed_condition(&failures));
    let updates = merge_degraded(observed.conditions, degraded)
        .into_iter()
        .chain(applied.extra)
        .collect();
    let status = InferenceServiceStatus {
        replicas: observed.replicas,
        ready_replicas: observed.ready_replicas,
        ..base
    };
    finish(
        &ctx,
        &isvc,
        status,
        updates,
        applied.remove_metrics_condition,
    )
    .await?;
    if let Some((_, e)) = applied.failures.into_iter().next() {
        // Reported in the status; retry with backoff.
        return Err(e.into());
    }
    Ok(Action::requeue(if progressing {
        REQUEUE_PROGRESSING
    } else {
        REQUEUE_STEADY
    }))
}
