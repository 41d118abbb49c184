//! Kubernetes-style conditions (type, status, reason, message, lastTransitionTime,
//! observedGeneration) with typed types and reasons.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types used by both kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The object does what it is for (serving, or the run finished well).
    Ready,
    /// Work toward the desired state is under way.
    Progressing,
    /// Something is wrong that needs a person.
    Degraded,
    /// Prometheus could not be queried; client results are kept.
    MetricsUnavailable,
    /// A BenchmarkRun is worse than its baseline beyond the spec's thresholds.
    Regressed,
}

impl ConditionType {
    /// The `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::MetricsUnavailable => "MetricsUnavailable",
            ConditionType::Regressed => "Regressed",
        }
    }
}

/// A desired condition, before timestamps are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// Which condition.
    pub type_: ConditionType,
    /// True or false.
    pub status: bool,
    /// CamelCase machine-readable reason, e.g. `InsufficientGPU`.
    pub reason: &'static str,
    /// Sentence for people: what happened and what to do.
    pub message: String,
}

impl ConditionUpdate {
    /// A condition with the given status.
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

/// Find a condition by type.
pub fn find_condition(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Insert or replace a condition. `lastTransitionTime` changes only when the status flips,
/// as the Kubernetes API conventions require. Returns true when anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    generation: Option<i64>,
    now: Time,
) -> bool {
    let status = if update.status { "True" } else { "False" };
    let existing = conditions
        .iter()
        .position(|c| c.type_ == update.type_.as_str());
    let transition = match existing {
        Some(i) if conditions[i].status == status => conditions[i].last_transition_time.clone(),
        _ => now,
    };
    let new = Condition {
        type_: update.type_.as_str().to_string(),
        status: status.to_string(),
        reason: update.reason.to_string(),
        message: update.message,
        last_transition_time: transition,
        observed_generation: generation,
    };
    match existing {
        Some(i) if conditions[i] == new => false,
        Some(i) => {
            conditions[i] = new;
            true
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut c = Vec::new();
        let up = |status, reason| ConditionUpdate::new(ConditionType::Ready, status, reason, "m");
        assert!(set_condition(
            &mut c,
            up(false, "Deploying"),
            Some(1),
            t(10)
        ));
        assert!(set_condition(
            &mut c,
            up(false, "ModelDownloading"),
            Some(1),
            t(20)
        ));
        assert_eq!(c[0].last_transition_time, t(10));
        assert_eq!(c[0].reason, "ModelDownloading");
        assert!(!set_condition(
            &mut c,
            up(false, "ModelDownloading"),
            Some(1),
            t(30)
        ));
        assert!(set_condition(&mut c, up(true, "Available"), Some(2), t(40)));
        assert_eq!(c[0].last_transition_time, t(40));
        assert_eq!(c[0].status, "True");
        assert_eq!(c[0].observed_generation, Some(2));
        assert_eq!(c.len(), 1);
    }
}
