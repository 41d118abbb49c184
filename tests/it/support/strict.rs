//! A strict API in front of kube-fake-client: what a real apiserver refuses, refused here too,
//! with the same HTTP status and `Status` body.
//!
//! kube-fake-client stores whatever it is given. [`clients`] wraps it at the HTTP level (a
//! tower service in front of the fake's `kube::Client`) and returns two clients over the same
//! in-memory store:
//! - `admin`: what the tests use to set the scene (create objects, step Deployment or Job
//!   status). Every write is validated, no RBAC.
//! - `operator`: what the reconcilers get. Every request is authorized against the chart's
//!   RBAC rules (`manifests/base/operator.yaml`, generated from `charts/inferops` by
//!   `scripts/gen-manifests.py` and kept fresh by the chart tests), as the operator's
//!   ServiceAccount; a verb the rules do not grant answers 403 Forbidden. Its writes are
//!   validated too.
//!
//! Validation of every write (create, update, patch, also of subresources), on the object as
//! stored after the write, compared with the object before:
//! - names: DNS-1123 subdomain of at most 253 characters; Services a DNS-1035 label (63),
//!   Jobs at most 63 (the name becomes the `job-name` label);
//! - labels (of the object, its pod template and selectors): keys and values of the label
//!   syntax, values at most 63 characters; annotations at most 256 KiB in total;
//! - size: ConfigMap and Secret data at most 1 MiB (422), a request body at most 3 MiB and
//!   a stored object at most 1.5 MiB (etcd's request limit) (413);
//! - immutable fields: PVC spec (except a storage increase), Job spec.selector,
//!   spec.template, spec.completionMode and spec.podFailurePolicy, Deployment spec.selector,
//!   Service spec.clusterIP, RoleBinding roleRef, the data of an immutable ConfigMap;
//! - our own kinds (`inferops.dev`), status included: the generated CRD schema and CEL rules,
//!   with transition rules against the old object ([`inferops::api::validate_object`]).
//!
//! A refused write is rolled back in the store (a created object deleted, an updated one put
//! back) before the error is returned, so the store holds what a real apiserver would.
//! Watches pass through untouched (the fake has none).

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use kube_fake_client::ClientBuilder;
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The user the operator's requests are authorized as (the chart's ServiceAccount).
pub const OPERATOR_USER: &str = "system:serviceaccount:inferops-system:inferops";
/// The namespace the chart's namespaced Roles are bound in for the tests (the chart binds
/// them in its release namespace; the tests run the operator's Lease in `default`).
pub const RELEASE_NAMESPACE: &str = "default";
/// Largest request body the apiserver reads (3 MiB).
pub const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;
/// Largest object etcd stores (its default request limit, 1.5 MiB).
pub const MAX_OBJECT_BYTES: usize = 3 * 512 * 1024;
/// Largest ConfigMap or Secret payload (1 MiB).
pub const MAX_CONFIGMAP_BYTES: usize = 1024 * 1024;
/// Largest total size of an object's annotations (256 KiB).
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// Admin and operator clients over one fresh fake store built from `builder`, with the
/// chart's RBAC rules for the operator.
pub async fn clients(builder: ClientBuilder) -> (Client, Client) {
    clients_with(builder, Rbac::chart()).await
}

/// [`clients`] with other RBAC rules for the operator (e.g. [`Rbac::without`] to model a
/// chart value that turns a permission off).
pub async fn clients_with(builder: ClientBuilder, rbac: Rbac) -> (Client, Client) {
    let inner = builder.build().await.expect("the fake client builds");
    let admin = Client::new(
        Strict {
            inner: inner.clone(),
            rbac: None,
        },
        "default",
    );
    let operator = Client::new(
        Strict {
            inner,
            rbac: Some(Arc::new(rbac)),
        },
        "default",
    );
    (admin, operator)
}

/// The operator's client alone (RBAC-checked and validated), for tests that need one client.
pub async fn strict_client(builder: ClientBuilder) -> Client {
    clients(builder).await.1
}

// ---------------------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------------------

/// One PolicyRule, and where it applies (`None`: every namespace and the cluster scope).
#[derive(Debug, Clone)]
pub struct Rule {
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
    pub names: Vec<String>,
    pub namespace: Option<String>,
}

/// What a request asks for, in RBAC terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    /// Plural, with `/subresource` if any.
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// The rules granted to the operator.
#[derive(Debug, Clone)]
pub struct Rbac {
    pub rules: Vec<Rule>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Rbac {
    /// The ClusterRoles and Roles that the chart binds to the operator's ServiceAccount, as
    /// rendered into `manifests/base/operator.yaml`.
    pub fn chart() -> Rbac {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/base/operator.yaml");
        let text = std::fs::read_to_string(path).expect("manifests/base/operator.yaml");
        Rbac::from_manifests(&text)
    }

    /// Rules of every (Cluster)Role bound to the ServiceAccount of these manifests.
    pub fn from_manifests(yaml: &str) -> Rbac {
        let docs = inferops::api::parse_documents(yaml).expect("manifests parse");
        let sa = docs
            .iter()
            .find(|d| d["kind"] == "ServiceAccount")
            .and_then(|d| d["metadata"]["name"].as_str())
            .expect("a ServiceAccount")
            .to_string();
        let bound = |kind: &str| -> Vec<String> {
            docs.iter()
                .filter(|d| d["kind"] == kind)
                .filter(|d| {
                    d["subjects"].as_array().is_some_and(|s| {
                        s.iter()
                            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa.as_str())
                    })
                })
                .filter_map(|d| d["roleRef"]["name"].as_str().map(str::to_string))
                .collect()
        };
        let cluster_roles = bound("ClusterRoleBinding");
        let roles = bound("RoleBinding");
        let mut rules = Vec::new();
        for d in &docs {
            let name = d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let namespace = match d["kind"].as_str() {
                Some("ClusterRole") if cluster_roles.contains(&name) => None,
                Some("Role") if roles.contains(&name) => Some(RELEASE_NAMESPACE.to_string()),
                _ => continue,
            };
            for r in d["rules"].as_array().into_iter().flatten() {
                rules.push(Rule {
                    groups: strings(&r["apiGroups"]),
                    resources: strings(&r["resources"]),
                    verbs: strings(&r["verbs"]),
                    names: strings(&r["resourceNames"]),
                    namespace: namespace.clone(),
                });
            }
        }
        assert!(!rules.is_empty(), "no rules bound to ServiceAccount {sa}");
        Rbac { rules }
    }

    /// These rules without any grant on `group`/`resource` (and its subresources).
    pub fn without(mut self, group: &str, resource: &str) -> Rbac {
        for r in &mut self.rules {
            if r.groups.iter().any(|g| g == group) {
                r.resources
                    .retain(|x| x != resource && !x.starts_with(&format!("{resource}/")));
            }
        }
        self
    }

    /// These rules and one more, cluster-wide (e.g. what a chart value turns on).
    pub fn with_rule(mut self, group: &str, resource: &str, verbs: &[&str]) -> Rbac {
        self.rules.push(Rule {
            groups: vec![group.to_string()],
            resources: vec![resource.to_string()],
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            names: Vec::new(),
            namespace: None,
        });
        self
    }

    /// Whether some rule grants `a`, as the apiserver's RBAC authorizer decides.
    pub fn allows(&self, a: &Attributes) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        self.rules.iter().any(|r| {
            let scope_ok = match (&r.namespace, &a.namespace) {
                (None, _) => true,
                (Some(rn), Some(n)) => rn == n,
                (Some(_), None) => false,
            };
            let name_ok = r.names.is_empty()
                || (a.verb != "create"
                    && a.verb != "list"
                    && a.verb != "watch"
                    && a.verb != "deletecollection"
                    && a.name.as_ref().is_some_and(|n| r.names.contains(n)));
            scope_ok
                && name_ok
                && any(&r.groups, &a.group)
                && any(&r.resources, &a.resource)
                && any(&r.verbs, &a.verb)
        })
    }
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// A resource request's path: `/api/v1/...` or `/apis/GROUP/VERSION/...`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiPath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl ApiPath {
    pub fn parse(path: &str) -> Option<ApiPath> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let (group, version, rest) = match parts.as_slice() {
            ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
            ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        let (resource, name, subresource) = match rest {
            [r] => (r.to_string(), None, None),
            [r, n] => (r.to_string(), Some(n.to_string()), None),
            [r, n, s] => (r.to_string(), Some(n.to_string()), Some(s.to_string())),
            _ => return None,
        };
        Some(ApiPath {
            group,
            version,
            namespace,
            resource,
            name,
            subresource,
        })
    }

    /// The path of the object itself (no subresource).
    fn object_path(&self, name: &str) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let Some(ns) = &self.namespace {
            p.push_str(&format!("/namespaces/{ns}"));
        }
        p.push_str(&format!("/{}/{name}", self.resource));
        p
    }

    fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.clone(),
        }
    }

    /// `resource.group`, as Status messages name it.
    fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

fn verb(method: &Method, path: &ApiPath, query: &str) -> &'static str {
    let watch = query
        .split('&')
        .any(|q| q == "watch=true" || q == "watch=1");
    match *method {
        Method::GET if watch => "watch",
        Method::GET if path.name.is_some() => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if path.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

fn status_response(code: u16, reason: &str, message: &str, details: Value) -> Response<Body> {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    });
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(body.to_string().into_bytes()))
        .unwrap()
}

/// 403 as the RBAC authorizer words it.
pub fn forbidden(a: &Attributes, path: &ApiPath) -> Response<Body> {
    let target = match &a.name {
        Some(n) => format!("{} \"{n}\"", path.group_resource()),
        None => path.group_resource(),
    };
    let scope = match &a.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let message = format!(
        "{target} is forbidden: User \"{OPERATOR_USER}\" cannot {} resource \"{}\" in API group \"{}\" {scope}",
        a.verb, a.resource, a.group
    );
    let mut details = json!({"kind": path.resource});
    if let Some(n) = &a.name {
        details["name"] = json!(n);
    }
    if !a.group.is_empty() {
        details["group"] = json!(a.group);
    }
    status_response(403, "Forbidden", &message, details)
}

/// One field error, as `field.Error` renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// `FieldValueInvalid`, `FieldValueForbidden`, `FieldValueTooLong`, ...
    pub reason: &'static str,
    pub field: String,
    /// e.g. `Invalid value: "x": must be no more than 63 characters`.
    pub message: String,
}

impl FieldError {
    fn invalid(field: &str, value: &Value, detail: &str) -> FieldError {
        FieldError {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: format!("Invalid value: {value}: {detail}"),
        }
    }
    fn forbidden(field: &str, detail: &str) -> FieldError {
        FieldError {
            reason: "FieldValueForbidden",
            field: field.to_string(),
            message: format!("Forbidden: {detail}"),
        }
    }
    fn too_long(field: &str, max: usize) -> FieldError {
        FieldError {
            reason: "FieldValueTooLong",
            field: field.to_string(),
            message: format!("Too long: must have at most {max} bytes"),
        }
    }
}

/// 422 as the apiserver words it: `Kind.group "name" is invalid: field: message[, ...]`.
pub fn invalid(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Response<Body> {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let rendered: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    let list = if rendered.len() == 1 {
        rendered[0].clone()
    } else {
        format!("[{}]", rendered.join(", "))
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
        .collect();
    let mut details = json!({"name": name, "kind": kind, "causes": causes});
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    status_response(
        422,
        "Invalid",
        &format!("{qualified} \"{name}\" is invalid: {list}"),
        details,
    )
}

pub fn too_large(message: &str) -> Response<Body> {
    status_response(413, "RequestEntityTooLarge", message, json!({}))
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, of any length.
fn is_label_syntax(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_label(s: &str) -> bool {
    s.len() <= 63 && is_label_syntax(s)
}

/// RFC 1123 subdomain as Kubernetes checks it: at most 253, dot-separated label syntax
/// (no 63 limit per part).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_label_syntax)
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// The label value syntax: `(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?`, at most 63.
fn label_value_error(v: &str) -> Option<String> {
    if v.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    let ends_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    if v.chars().all(ok_char) && ends_ok(v.chars().next()) && ends_ok(v.chars().last()) {
        None
    } else {
        Some(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  \
             or 'my_value',  or '12345', regex used for validation is \
             '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                .into(),
        )
    }
}

fn label_key_error(k: &str) -> Option<String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Some("prefix part must be a DNS-1123 subdomain".into());
    }
    if name.is_empty() || label_value_error(name).is_some() {
        return Some(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start \
             and end with an alphanumeric character, at most 63 characters"
                .into(),
        );
    }
    None
}

fn check_labels(errors: &mut Vec<FieldError>, field: &str, labels: Option<&Value>) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in labels {
        if let Some(e) = label_key_error(k) {
            errors.push(FieldError::invalid(field, &json!(k), &e));
        }
        match v.as_str() {
            Some(v) => {
                if let Some(e) = label_value_error(v) {
                    errors.push(FieldError::invalid(field, &json!(v), &e));
                }
            }
            None => errors.push(FieldError::invalid(field, v, "label values are strings")),
        }
    }
}

/// Bytes in a quantity such as `50Gi`, for comparing PVC storage requests.
fn quantity_bytes(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(n * mult)
}

fn without(v: &Value, pointers: &[&str]) -> Value {
    let mut v = v.clone();
    for p in pointers {
        let (parent, key) = p.rsplit_once('/').unwrap();
        if let Some(Value::Object(m)) = v.pointer_mut(parent) {
            m.remove(key);
        }
    }
    v
}

fn data_size(obj: &Value) -> usize {
    let mut total = 0;
    if let Some(d) = obj["data"].as_object() {
        for (k, v) in d {
            total += k.len() + v.as_str().map_or(0, str::len);
        }
    }
    if let Some(d) = obj["binaryData"].as_object() {
        for (k, v) in d {
            // base64 on the wire: the decoded size counts.
            total += k.len() + v.as_str().map_or(0, |s| s.len() / 4 * 3);
        }
    }
    total
}

/// Everything the apiserver would refuse about `new` (the object as stored after the
/// write), with `old` the object before (`None` on create). `Err` is a complete response.
#[allow(clippy::result_large_err)] // the refusal is the HTTP response itself, built once per refused write
pub fn check_write(path: &ApiPath, old: Option<&Value>, new: &Value) -> Result<(), Response<Body>> {
    let kind = new["kind"].as_str().unwrap_or_default().to_string();
    let name = new["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let group = path.group.as_str();
    let size = serde_json::to_vec(new).map(|v| v.len()).unwrap_or(0);
    if size > MAX_OBJECT_BYTES {
        return Err(too_large("etcdserver: request is too large"));
    }
    let mut errors = Vec::new();

    if old.is_none() && path.resource != "events" {
        let n = json!(name);
        match (group, path.resource.as_str()) {
            ("", "services") if !is_dns1035_label(&name) => errors.push(FieldError::invalid(
                "metadata.name",
                &n,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', \
                 start with an alphabetic character, and end with an alphanumeric character, \
                 at most 63 characters",
            )),
            ("batch", "jobs") if name.len() > 63 => errors.push(FieldError::invalid(
                "metadata.name",
                &n,
                "must be no more than 63 characters",
            )),
            _ if !is_dns_subdomain(&name) => errors.push(FieldError::invalid(
                "metadata.name",
                &n,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
                 characters, '-' or '.', and must start and end with an alphanumeric \
                 character, at most 253 characters",
            )),
            _ => {}
        }
    }
    check_labels(
        &mut errors,
        "metadata.labels",
        new["metadata"].get("labels"),
    );
    check_labels(
        &mut errors,
        "spec.template.metadata.labels",
        new.pointer("/spec/template/metadata/labels"),
    );
    check_labels(
        &mut errors,
        "spec.selector.matchLabels",
        new.pointer("/spec/selector/matchLabels"),
    );
    if kind == "Service" {
        check_labels(&mut errors, "spec.selector", new.pointer("/spec/selector"));
    }
    let annotations: usize = new["metadata"]["annotations"]
        .as_object()
        .map(|a| {
            a.iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum()
        })
        .unwrap_or(0);
    if annotations > MAX_ANNOTATIONS_BYTES {
        errors.push(FieldError::too_long(
            "metadata.annotations",
            MAX_ANNOTATIONS_BYTES,
        ));
    }

    if let ("", "configmaps" | "secrets") = (group, path.resource.as_str()) {
        {
            if data_size(new) > MAX_CONFIGMAP_BYTES {
                errors.push(FieldError::too_long("[]", MAX_CONFIGMAP_BYTES));
            }
            for (field, map) in [("data", &new["data"]), ("binaryData", &new["binaryData"])] {
                for key in map.as_object().into_iter().flat_map(|m| m.keys()) {
                    let ok = !key.is_empty()
                        && key.len() <= 253
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
                    if !ok {
                        errors.push(FieldError::invalid(
                            field,
                            &json!(key),
                            "a valid config key must consist of alphanumeric characters, '-', \
                             '_' or '.'",
                        ));
                    }
                }
            }
            if let Some(old) = old
                && old["immutable"] == json!(true)
                && (old["data"] != new["data"]
                    || old["binaryData"] != new["binaryData"]
                    || new["immutable"] != json!(true))
            {
                errors.push(FieldError::forbidden(
                    "data",
                    "field is immutable when `immutable` is set",
                ));
            }
        }
    }

    if let Some(old) = old {
        match (group, path.resource.as_str()) {
            ("", "persistentvolumeclaims") => {
                let ignore = ["/resources/requests", "/volumeAttributesClassName"];
                if without(&old["spec"], &ignore) != without(&new["spec"], &ignore) {
                    errors.push(FieldError::forbidden(
                        "spec",
                        "spec is immutable after creation except resources.requests and \
                         volumeAttributesClassName for bound claims",
                    ));
                }
                let storage = |v: &Value| {
                    v.pointer("/spec/resources/requests/storage")
                        .and_then(Value::as_str)
                        .and_then(quantity_bytes)
                };
                if let (Some(a), Some(b)) = (storage(old), storage(new))
                    && b < a
                {
                    errors.push(FieldError::forbidden(
                        "spec.resources.requests.storage",
                        "field can not be less than status.capacity",
                    ));
                }
            }
            ("batch", "jobs") => {
                for field in ["selector", "template", "completionMode", "podFailurePolicy"] {
                    if old["spec"].get(field) != new["spec"].get(field) {
                        errors.push(FieldError::invalid(
                            &format!("spec.{field}"),
                            new["spec"].get(field).unwrap_or(&Value::Null),
                            "field is immutable",
                        ));
                    }
                }
            }
            ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
                if old["spec"].get("selector") != new["spec"].get("selector") =>
            {
                errors.push(FieldError::invalid(
                    "spec.selector",
                    new["spec"].get("selector").unwrap_or(&Value::Null),
                    "field is immutable",
                ));
            }
            ("", "services") => {
                let ip = |v: &Value| v.pointer("/spec/clusterIP").cloned();
                if let Some(old_ip) = ip(old).filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                    && ip(new).as_ref() != Some(&old_ip)
                {
                    errors.push(FieldError::invalid(
                        "spec.clusterIP",
                        &ip(new).unwrap_or(Value::Null),
                        "field is immutable",
                    ));
                }
            }
            ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings")
                if old.get("roleRef") != new.get("roleRef") =>
            {
                errors.push(FieldError::invalid(
                    "roleRef",
                    new.get("roleRef").unwrap_or(&Value::Null),
                    "cannot change roleRef",
                ));
            }
            _ => {}
        }
    }

    if group == inferops::api::GROUP
        && let Err(errs) = inferops::api::validate_object(&cr_view(new), old.map(cr_view).as_ref())
    {
        // Validation ratcheting (on by default since Kubernetes 1.30): an update may keep a
        // value that is invalid under today's rules as long as it does not change it.
        let unchanged = |field: &str| {
            old.is_some_and(|old| {
                let at = |v: &Value| field_value(v, field).cloned();
                at(old) == at(new)
            })
        };
        for e in errs.into_iter().filter(|e| !unchanged(&e.field)) {
            errors.push(FieldError {
                reason: "FieldValueInvalid",
                field: e.field.clone(),
                message: format!("Invalid value: \"object\": {}", e.message),
            });
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(&kind, group, &name, &errors))
    }
}

/// The value at a field path such as `spec.load.concurrency[1]`.
fn field_value<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in field.split('.').filter(|p| !p.is_empty()) {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        for idx in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            cur = cur.get(idx.parse::<usize>().ok()?)?;
        }
    }
    Some(cur)
}

/// Our object as the apiserver validates it: metadata is the apiserver's own business, so
/// only what the CRD's rules read (the name) is kept.
fn cr_view(v: &Value) -> Value {
    let mut v = v.clone();
    v["metadata"] = json!({"name": v["metadata"]["name"], "namespace": v["metadata"]["namespace"]});
    v
}

// ---------------------------------------------------------------------------------------
// The service
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
struct Strict {
    inner: Client,
    rbac: Option<Arc<Rbac>>,
}

async fn send(
    client: &Client,
    req: Request<Body>,
) -> Result<(http::response::Parts, Bytes), BoxError> {
    let res = client.send(req).await?;
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok((parts, bytes))
}

async fn get_json(client: &Client, path: &str) -> Option<Value> {
    let req = Request::get(path).body(Body::empty()).unwrap();
    let (parts, bytes) = send(client, req).await.ok()?;
    if !parts.status.is_success() {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// Put the store back as it was before a refused write (best effort).
async fn roll_back(client: &Client, object_path: &str, old: Option<&Value>, new: &Value) {
    match old {
        None => {
            if new["metadata"]["finalizers"].is_array() {
                let patch = json!({"metadata": {"finalizers": null}});
                let req = Request::patch(object_path)
                    .header("content-type", "application/merge-patch+json")
                    .body(Body::from(patch.to_string().into_bytes()))
                    .unwrap();
                let _ = send(client, req).await;
            }
            let req = Request::delete(object_path).body(Body::empty()).unwrap();
            let _ = send(client, req).await;
        }
        Some(old) => {
            let mut restore = old.clone();
            restore["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
            for path in [object_path.to_string(), format!("{object_path}/status")] {
                let req = Request::put(path.as_str())
                    .header("content-type", "application/json")
                    .body(Body::from(restore.to_string().into_bytes()))
                    .unwrap();
                if let Ok((_, bytes)) = send(client, req).await
                    && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
                    && v["metadata"]["resourceVersion"].is_string()
                {
                    restore["metadata"]["resourceVersion"] =
                        v["metadata"]["resourceVersion"].clone();
                }
            }
        }
    }
}

impl Strict {
    async fn handle(self, req: Request<Body>) -> Result<Response<Body>, BoxError> {
        let Some(path) = ApiPath::parse(req.uri().path()) else {
            return Ok(self.inner.send(req).await?);
        };
        let query = req.uri().query().unwrap_or_default().to_string();
        let verb = verb(req.method(), &path, &query);
        let (parts, body) = req.into_parts();
        let body = body.collect().await?.to_bytes();
        let body_json: Option<Value> = serde_json::from_slice(&body).ok();
        let name = path.name.clone().or_else(|| {
            body_json
                .as_ref()
                .and_then(|b| b["metadata"]["name"].as_str().map(str::to_string))
        });
        if let Some(rbac) = &self.rbac {
            let attributes = Attributes {
                verb: verb.to_string(),
                group: path.group.clone(),
                resource: path.rbac_resource(),
                namespace: path.namespace.clone(),
                name: if verb == "create" { None } else { name.clone() },
            };
            if !rbac.allows(&attributes) {
                return Ok(forbidden(&attributes, &path));
            }
        }
        let rebuilt = Request::from_parts(parts, Body::from(body.clone()));
        if !matches!(verb, "create" | "update" | "patch") {
            return Ok(self.inner.send(rebuilt).await?);
        }
        if body.len() > MAX_REQUEST_BYTES {
            return Ok(too_large(&format!(
                "Request entity too large: limit is {MAX_REQUEST_BYTES}"
            )));
        }
        let object_path = name.as_deref().map(|n| path.object_path(n));
        let old = match &object_path {
            Some(p) if verb != "create" => get_json(&self.inner, p).await,
            _ => None,
        };
        let (res_parts, res_body) = send(&self.inner, rebuilt).await?;
        let respond = |parts: http::response::Parts, body: Bytes| {
            Ok(Response::from_parts(parts, Body::from(body)))
        };
        if !res_parts.status.is_success() {
            return respond(res_parts, res_body);
        }
        let new = match (&path.subresource, &object_path) {
            // A write to `scale` answers with a Scale: check the object it changed.
            (Some(s), Some(p)) if s == "scale" => get_json(&self.inner, p).await,
            _ => serde_json::from_slice::<Value>(&res_body).ok(),
        };
        let (Some(new), Some(object_path)) = (new, object_path) else {
            return respond(res_parts, res_body);
        };
        match check_write(&path, old.as_ref(), &new) {
            Ok(()) => respond(res_parts, res_body),
            Err(refusal) => {
                roll_back(&self.inner, &object_path, old.as_ref(), &new).await;
                Ok(refusal)
            }
        }
    }
}

impl tower::Service<Request<Body>> for Strict {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(self.clone().handle(req))
    }
}
