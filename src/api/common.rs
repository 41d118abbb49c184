//! Types shared by both kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key in a Secret of the same namespace. Only the reference is stored.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret.
    #[serde(default = "default_token_key")]
    pub key: String,
}

fn default_token_key() -> String {
    "token".to_string()
}

/// A reference to an object in the same namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalObjectRef {
    /// Object name.
    pub name: String,
}

pub(crate) fn default_true() -> bool {
    true
}
