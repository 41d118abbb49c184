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
use k8s_openapi::api::core::v1::{Pod, Secret};
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
use crate::render::inference_service::{self as render_isvc, Rendered};

/// CRD of the Prometheus Operator's PodMonitor.
pub const POD_MONITOR_CRD: &str = "podmonitors.monitoring.coreos.com";
/// CRD of KEDA's ScaledObject.
pub const SCALED_OBJECT_CRD: &str = "scaledobjects.keda.sh";
/// Field manager that briefly co-owns `spec.replicas` when autoscaling is switched on, so
/// that the value survives the operator releasing the field (see [`hand_over_replicas`]).
pub const HANDOVER_MANAGER: &str = "inferops-replicas-handover";

/// Requeue while pods are coming up (pod events are not watched).
const REQUEUE_PROGRESSING: Duration = Duration::from_secs(15);
/// Requeue when steady, to catch drift in pod-level state.
const REQUEUE_STEADY: Duration = Duration::from_secs(300);
/// Requeue while the token Secret is missing or a name is taken (neither is watched).
const REQUEUE_SECRET: Duration = Duration::from_secs(30);

fn pod_monitor_resource() -> kube::api::ApiResource {
    api_resource("monitoring.coreos.com/v1", "PodMonitor", "podmonitors")
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
pub async fn hand_over_replicas(ctx: &Context, desired: &Deployment) -> Result<bool, Error> {
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

/// What applying found out about optional integrations.
struct Applied {
    deployment: Deployment,
    extra: Vec<ConditionUpdate>,
    remove_metrics_condition: bool,
}

async fn apply_all(
    ctx: &Context,
    isvc: &InferenceService,
    rendered: &Rendered,
    ns: &str,
) -> Result<Applied, Error> {
    let client = &ctx.client;
    let name = isvc.name_any();
    let uid = isvc.uid().unwrap_or_default();
    let mut extra = Vec::new();

    if let Some(pvc) = &rendered.pvc {
        apply::apply(client, pvc).await?;
    }
    if isvc.spec.autoscaling.is_some() {
        hand_over_replicas(ctx, &rendered.deployment).await?;
    }
    let deployment = apply::apply(client, &rendered.deployment).await?;
    apply::apply(client, &rendered.service).await?;

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    match &rendered.pdb {
        Some(pdb) => {
            apply::apply(client, pdb).await?;
        }
        None => {
            delete_if_owned(&pdbs, &name, &uid).await?;
        }
    }

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    match &rendered.hpa {
        Some(hpa) => {
            apply::apply(client, hpa).await?;
        }
        None => {
            delete_if_owned(&hpas, &name, &uid).await?;
        }
    }

    let keda_installed = apply::crd_exists(client, SCALED_OBJECT_CRD).await?;
    let scaled_objects: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &scaled_object_resource());
    match (&rendered.scaled_object, keda_installed) {
        (Some(so), true) => {
            apply::apply_json(client, &scaled_object_resource(), so).await?;
        }
        (Some(_), false) => extra.push(ConditionUpdate::new(
            ConditionType::Degraded,
            true,
            reason::KEDA_MISSING,
            format!(
                "spec.autoscaling.provider is keda but the ScaledObject CRD ({SCALED_OBJECT_CRD}) is \
                 not installed, so nothing scales the Deployment; install KEDA or use provider: hpa"
            ),
        )),
        (None, true) => {
            delete_if_owned(&scaled_objects, &name, &uid).await?;
        }
        (None, false) => {}
    }

    let prom_installed = apply::crd_exists(client, POD_MONITOR_CRD).await?;
    let pod_monitors: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &pod_monitor_resource());
    let mut remove_metrics_condition = false;
    match (&rendered.pod_monitor, prom_installed) {
        (Some(pm), true) => {
            apply::apply_json(client, &pod_monitor_resource(), pm).await?;
            extra.push(ConditionUpdate::new(
                ConditionType::MetricsUnavailable,
                false,
                reason::POD_MONITOR_APPLIED,
                "PodMonitor applied; Prometheus scrapes the engine's /metrics",
            ));
        }
        (Some(_), false) => extra.push(ConditionUpdate::new(
            ConditionType::MetricsUnavailable,
            true,
            reason::POD_MONITOR_CRD_MISSING,
            format!(
                "monitoring is off: spec.monitoring.podMonitor is true but the Prometheus Operator \
                 CRD ({POD_MONITOR_CRD}) is not installed; install the Prometheus Operator (or \
                 kube-prometheus-stack) or set spec.monitoring.podMonitor: false"
            ),
        )),
        (None, installed) => {
            if installed {
                delete_if_owned(&pod_monitors, &name, &uid).await?;
            }
            remove_metrics_condition = true;
        }
    }
    Ok(Applied {
        deployment,
        extra,
        remove_metrics_condition,
    })
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
            finish(
                &ctx,
                &isvc,
                base,
                isvc_status::blocked(reason::INVALID_SPEC, &msg),
                false,
            )
            .await?;
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

    let applied = match apply_all(&ctx, &isvc, &rendered, &ns).await {
        Ok(a) => a,
        Err(e) => {
            // The API server rejected an object (immutable field, RBAC, admission policy):
            // say so in the status, then retry with backoff.
            if let Error::Kube(kube::Error::Api(s)) = &e {
                let msg = format!(
                    "applying the rendered objects failed: {} ({}); fix the spec or the \
                     cluster policy, the operator retries with backoff",
                    s.message, s.reason
                );
                let update =
                    ConditionUpdate::new(ConditionType::Degraded, true, reason::APPLY_FAILED, msg);
                if let Err(status_err) = finish(&ctx, &isvc, base, vec![update], false).await {
                    tracing::warn!(error = %status_err, "writing status after a failed apply");
                }
            }
            return Err(e);
        }
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pod_list = pods
        .list(&ListParams::default().labels(&render_isvc::selector_string(&name)))
        .await?;
    let observed = isvc_status::observe(
        Some(&applied.deployment),
        &pod_list.items,
        &endpoint,
        k8s_openapi::jiff::Timestamp::now(),
    );
    let progressing = observed
        .conditions
        .iter()
        .any(|c| c.type_ == ConditionType::Progressing && c.status);
    let mut updates = observed.conditions;
    // KEDA missing outranks "no problems detected".
    if let Some(keda) = applied
        .extra
        .iter()
        .find(|u| u.type_ == ConditionType::Degraded)
    {
        updates.retain(|u| u.type_ != ConditionType::Degraded || u.status);
        if !updates.iter().any(|u| u.type_ == ConditionType::Degraded) {
            updates.push(keda.clone());
        }
    }
    updates.extend(
        applied
            .extra
            .into_iter()
            .filter(|u| u.type_ != ConditionType::Degraded),
    );
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
    Ok(Action::requeue(if progressing {
        REQUEUE_PROGRESSING
    } else {
        REQUEUE_STEADY
    }))
}
