//! The first thing a load pod checks: does the target answer, and does it serve the model?
//! The answer the operator reads when it does not ([`TargetProblem`], written next to the
//! results), and the pure choice of the model to send ([`resolve_model`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why the target cannot be benchmarked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "camelCase")]
pub enum TargetProblem {
    /// `GET /v1/models` never succeeded within the wait.
    #[serde(rename_all = "camelCase")]
    Unreachable {
        /// The last error (status, or a short server message; never a response body).
        error: String,
        /// How long the load generator tried.
        #[serde(with = "super::plan::duration")]
        waited: Duration,
    },
    /// The model is not among those served.
    #[serde(rename_all = "camelCase")]
    ModelNotFound {
        /// The model asked for.
        model: String,
        /// What the target serves.
        served: Vec<String>,
    },
    /// No model was named and the target serves several (or none).
    #[serde(rename_all = "camelCase")]
    ModelAmbiguous {
        /// What the target serves.
        served: Vec<String>,
    },
}

impl std::fmt::Display for TargetProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetProblem::Unreachable { error, waited } => write!(
                f,
                "the target does not answer GET /v1/models ({error}); gave up after {}",
                humantime::format_duration(*waited)
            ),
            TargetProblem::ModelNotFound { model, served } => write!(
                f,
                "model {model:?} is not served (it serves {}); fix the model name",
                list(served)
            ),
            TargetProblem::ModelAmbiguous { served } if served.is_empty() => {
                write!(f, "the target lists no model in /v1/models")
            }
            TargetProblem::ModelAmbiguous { served } => write!(
                f,
                "the target serves {} models ({}); name one",
                served.len(),
                list(served)
            ),
        }
    }
}

fn list(served: &[String]) -> String {
    if served.is_empty() {
        "nothing".into()
    } else {
        served.join(", ")
    }
}

/// The model to send: `wanted` when served, else the only one served.
pub fn resolve_model(wanted: Option<&str>, served: &[String]) -> Result<String, TargetProblem> {
    match wanted.filter(|m| !m.trim().is_empty()) {
        Some(m) if served.iter().any(|s| s == m) => Ok(m.to_string()),
        Some(m) => Err(TargetProblem::ModelNotFound {
            model: m.to_string(),
            served: served.to_vec(),
        }),
        None if served.len() == 1 => Ok(served[0].clone()),
        None => Err(TargetProblem::ModelAmbiguous {
            served: served.to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|m| m.to_string()).collect()
    }

    #[test]
    fn a_named_model_must_be_served() {
        assert_eq!(resolve_model(Some("a"), &s(&["a", "b"])).unwrap(), "a");
        let e = resolve_model(Some("qwen2"), &s(&["qwen"])).unwrap_err();
        assert!(matches!(e, TargetProblem::ModelNotFound { .. }));
        assert!(e.to_string().contains("\"qwen2\"") && e.to_string().contains("qwen"));
    }

    #[test]
    fn without_a_name_the_only_model_is_taken() {
        assert_eq!(resolve_model(None, &s(&["only"])).unwrap(), "only");
        assert_eq!(resolve_model(Some(" "), &s(&["only"])).unwrap(), "only");
        let e = resolve_model(None, &s(&["a", "b"])).unwrap_err();
        assert_eq!(e.to_string(), "the target serves 2 models (a, b); name one");
        let e = resolve_model(None, &[]).unwrap_err();
        assert!(e.to_string().contains("no model"), "{e}");
    }

    #[test]
    fn problems_round_trip_as_json() {
        for p in [
            TargetProblem::Unreachable {
                error: "GET http://x/v1/models: connection refused".into(),
                waited: Duration::from_secs(90),
            },
            TargetProblem::ModelNotFound {
                model: "m".into(),
                served: s(&["n"]),
            },
            TargetProblem::ModelAmbiguous { served: s(&[]) },
        ] {
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<TargetProblem>(&text).unwrap(), p);
        }
    }
}
