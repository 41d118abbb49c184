//! Helpers every controller shares: server-side apply under one field manager, pruning of
//! objects the renderer no longer produces, CRD presence checks, condition-transition Events
//! and status patches.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::{ConditionType, ConditionUpdate};

/// The one field manager the operator applies with.
pub const FIELD_MANAGER: &str = "inferops";

/// Server-side apply parameters: our field manager, forcing ownership of every field we
/// send (the operator is the source of truth for them). Fields we stop sending are released.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Server-side apply a typed namespaced object (its `metadata.name` and namespace decide
/// where). Returns the object as stored.
pub async fn apply<K>(client: &Client, obj: &K) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let ns = obj.namespace().unwrap_or_else(|| "default".to_string());
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    api.patch(&obj.name_any(), &apply_params(), &Patch::Apply(obj))
        .await
}

/// The `ApiResource` of a JSON object's `apiVersion` / `kind`, with an explicit plural.
pub fn api_resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Server-side apply an untyped object (third-party CRDs such as PodMonitor, ScaledObject).
pub async fn apply_json(
    client: &Client,
    ar: &ApiResource,
    obj: &Value,
) -> Result<DynamicObject, kube::Error> {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    api.patch(name, &apply_params(), &Patch::Apply(obj)).await
}

/// True when `obj` has a controller owner reference with `owner_uid`.
pub fn is_owned_by<K: Resource>(obj: &K, owner_uid: &str) -> bool {
    obj.owner_references()
        .iter()
        .any(|o| o.uid == owner_uid && o.controller == Some(true))
}

/// Delete `name` if it exists and is controlled by `owner_uid` (never touches objects
/// someone else created). Returns true when a delete was issued.
pub async fn delete_if_owned<K>(
    api: &Api<K>,
    name: &str,
    owner_uid: &str,
) -> Result<bool, kube::Error>
where
    K: Resource + DeserializeOwned + Clone + std::fmt::Debug,
{
    match api.get_opt(name).await? {
        Some(obj) if is_owned_by(&obj, owner_uid) => {
            api.delete(name, &DeleteParams::background()).await?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Whether a CRD (`<plural>.<group>`, e.g. `podmonitors.monitoring.coreos.com`) is
/// installed. Used to skip optional integrations (Prometheus Operator, KEDA) gracefully.
pub async fn crd_exists(client: &Client, name: &str) -> Result<bool, kube::Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(api.get_opt(name).await?.is_some())
}

/// Whether `manager` owns `spec.replicas` of an object through server-side apply.
pub fn manager_owns_replicas(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    manager: &str,
) -> bool {
    meta.managed_fields.iter().flatten().any(|mf| {
        mf.manager.as_deref() == Some(manager)
            && mf.operation.as_deref() == Some("Apply")
            && mf
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:replicas"))
                .is_some()
    })
}

/// Set conditions with [`crate::api::set_condition`], returning the updates whose status or
/// reason changed (those deserve an Event).
pub fn set_conditions(
    conditions: &mut Vec<Condition>,
    updates: Vec<ConditionUpdate>,
    generation: Option<i64>,
) -> Vec<ConditionUpdate> {
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let mut transitions = Vec::new();
    for u in updates {
        let status = if u.status { "True" } else { "False" };
        let changed = crate::api::find_condition(conditions, u.type_)
            .is_none_or(|c| c.status != status || c.reason != u.reason.as_str());
        crate::api::set_condition(conditions, u.clone(), generation, now.clone());
        if changed {
            transitions.push(u);
        }
    }
    transitions
}

/// Remove a condition type entirely (when it no longer applies).
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: ConditionType) {
    conditions.retain(|c| c.type_ != type_.as_str());
}

/// Whether a condition transition is bad news (Warning Event) or not (Normal): it follows
/// from the reason ([`crate::api::Reason::event_type`]).
pub fn event_type_for(update: &ConditionUpdate) -> EventType {
    update.reason.event_type()
}

/// The API server rejects Event notes above 1 kB.
const EVENT_NOTE_MAX: usize = 1000;

/// Cut `s` to at most `max` bytes on a character boundary, marking the cut with `...`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Publish one Event per condition transition on `reference`. Event failures are logged,
/// never fatal: an Event is a courtesy, the status is the record.
pub async fn publish_transitions(
    recorder: &Recorder,
    reference: &ObjectReference,
    transitions: &[ConditionUpdate],
) {
    for t in transitions {
        // Quiet "all good" flips of Degraded/MetricsUnavailable to False are still useful:
        // they tell the reader the problem went away.
        let ev = Event {
            type_: event_type_for(t),
            reason: t.reason.as_str().to_string(),
            note: Some(truncate(
                &format!(
                    "{}={}: {}",
                    t.type_.as_str(),
                    if t.status { "True" } else { "False" },
                    t.message
                ),
                EVENT_NOTE_MAX,
            )),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason = t.reason.as_str(), "failed to publish event");
        }
    }
}

/// `new` as a JSON merge patch over `old`: every field of `old` (at any depth of nested
/// objects) that `new` lacks becomes an explicit `null`, so the patch clears it. Arrays and
/// scalars are replaced whole.
pub fn replacing_patch(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, v) in n {
                let merged = match o.get(k) {
                    Some(ov) => replacing_patch(ov, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        (_, n) => n.clone(),
    }
}

/// Replace the status subresource with `status`: a merge patch that also clears, with
/// explicit nulls, every field of the stored `old` status that `status` no longer has (a
/// plain merge patch cannot clear a field it leaves out).
pub async fn replace_status<K, S>(
    api: &Api<K>,
    name: &str,
    old: Option<&S>,
    status: &S,
) -> Result<K, kube::Error>
where
    K: Resource + DeserializeOwned + Clone + std::fmt::Debug,
    S: Serialize,
{
    let new = serde_json::to_value(status).map_err(kube::Error::SerdeError)?;
    let old = match old {
        Some(o) => serde_json::to_value(o).map_err(kube::Error::SerdeError)?,
        None => Value::Null,
    };
    let patch = serde_json::json!({ "status": replacing_patch(&old, &new) });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Merge-patch the status subresource with `status` (a serializable status struct).
pub async fn patch_status<K, S>(api: &Api<K>, name: &str, status: &S) -> Result<K, kube::Error>
where
    K: Resource + DeserializeOwned + Clone + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_patch_clears_what_the_new_value_lacks() {
        let old = serde_json::json!({"phase": "Running", "wait": {"kind": "TargetReady"},
            "scaling": {"originalReplicas": 3, "currentReplicas": 2}, "steps": [1, 2]});
        let new = serde_json::json!({"phase": "Succeeded",
            "scaling": {"originalReplicas": 3, "restored": true}, "steps": [1]});
        assert_eq!(
            replacing_patch(&old, &new),
            serde_json::json!({"phase": "Succeeded", "wait": null,
                "scaling": {"originalReplicas": 3, "restored": true, "currentReplicas": null},
                "steps": [1]})
        );
        assert_eq!(replacing_patch(&Value::Null, &new), new);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdefghij", 8), "abcde...");
        let s = "é".repeat(10);
        let t = truncate(&s, 8);
        assert!(t.len() <= 8 && t.ends_with("..."), "{t}");
    }
}
