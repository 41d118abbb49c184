//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder runs controllers.
//!
//! The rules (the same as client-go's leader election):
//!
//! - Expiry is judged by **this process's clock**: a candidate remembers the record it read
//!   (holder, `renewTime`, `resourceVersion`) and when it read it, and takes the Lease over
//!   only after the record has stayed unchanged for `leaseDurationSeconds` as measured
//!   locally. The holder's timestamps are never compared with the local clock, so clock
//!   skew between nodes cannot make two leaders.
//! - Every API call of an attempt is bounded by a timeout, so a hung request cannot keep a
//!   stale leader running.
//! - The holder renews every [`LeaderElector::retry_period`], and stops leading when it has
//!   not renewed successfully within [`LeaderElector::renew_deadline`], which is shorter than
//!   the lease duration: it steps down before any other candidate may take over.
//! - Writes use `replace` with the read `resourceVersion`, so two candidates racing for one
//!   Lease cannot both win.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why an election attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The API server answered with an error.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The API server did not answer in time.
    #[error("the Lease request did not complete within {0:?}")]
    Timeout(Duration),
}

/// The identity of a Lease record: it changes on every write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `spec.holderIdentity` (empty: released).
    pub holder: String,
    /// `spec.renewTime` as written by the holder (compared for equality only).
    pub renew_time: Option<String>,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<String>,
    /// `spec.leaseDurationSeconds`.
    pub lease_duration: Duration,
}

impl Record {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Record {
            holder: spec.holder_identity.unwrap_or_default(),
            renew_time: spec.renew_time.map(|t| t.0.to_string()),
            resource_version: lease.metadata.resource_version.clone(),
            lease_duration: Duration::from_secs(
                spec.lease_duration_seconds.unwrap_or(15).max(1) as u64
            ),
        }
    }
}

/// A record and the local time this process first saw it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The record.
    pub record: Record,
    /// Local (monotonic) time of the first read of this exact record.
    pub since: Instant,
}

/// Remember `current`: keeps the earlier observation time when the record has not changed
/// since `previous`, else starts the clock at `now`. Pure.
pub fn observe(previous: Option<&Observed>, current: Record, now: Instant) -> Observed {
    match previous {
        Some(p) if p.record == current => p.clone(),
        _ => Observed {
            record: current,
            since: now,
        },
    }
}

/// What a candidate should do with the Lease it just read. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: write a new `renewTime`.
    Renew,
    /// Unheld, or unchanged for a full lease duration of local time: take it over.
    TakeOver,
    /// Someone else holds it and it has not expired by local time.
    Wait,
}

/// Decide from what this process observed, by its own clock only. Pure.
pub fn decide(me: &str, observed: &Observed, now: Instant) -> Decision {
    let r = &observed.record;
    if r.holder == me {
        Decision::Renew
    } else if r.holder.is_empty() || now >= observed.since + r.lease_duration {
        Decision::TakeOver
    } else {
        Decision::Wait
    }
}

/// Whether a leader whose last successful renewal *started* at `last_renewed` must stop
/// leading at `now`. Pure.
pub fn must_step_down(last_renewed: Instant, now: Instant, renew_deadline: Duration) -> bool {
    now >= last_renewed + renew_deadline
}

/// The renew deadline for a lease duration: two thirds of it (10 s of 15 s), so a leader
/// that cannot renew stops before the others may take over.
pub fn renew_deadline_for(lease_duration: Duration) -> Duration {
    lease_duration * 2 / 3
}

/// How often the holder renews and candidates retry: a seventh of the lease duration (about
/// 2 s of 15 s), so several attempts fit into the renew deadline.
pub fn retry_period_for(lease_duration: Duration) -> Duration {
    (lease_duration / 7).max(Duration::from_millis(100))
}

/// One candidate for a Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    observed: Arc<Mutex<Option<Observed>>>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElector {
    /// A candidate `identity` for Lease `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration,
            renew_deadline: renew_deadline_for(lease_duration),
            observed: Arc::new(Mutex::new(None)),
        }
    }

    /// This candidate's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How often the holder renews and a candidate retries.
    pub fn retry_period(&self) -> Duration {
        retry_period_for(self.lease_duration)
    }

    /// How often the holder renews (the same as [`LeaderElector::retry_period`]).
    pub fn renew_interval(&self) -> Duration {
        self.retry_period()
    }

    /// How long the holder may go without a successful renewal before it stops leading;
    /// always shorter than the lease duration.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// The Lease duration.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    fn spec(&self, now: Timestamp, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.lease_duration.as_secs().max(1) as i32),
            acquire_time: acquire.or(Some(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Try once to acquire or renew, bounded by the renew deadline. `Ok(true)` when this
    /// candidate holds the Lease now.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaseError> {
        let limit = self.renew_deadline;
        match tokio::time::timeout(limit, self.attempt()).await {
            Ok(r) => r,
            Err(_) => Err(LeaseError::Timeout(limit)),
        }
    }

    fn remember(&self, lease: &Lease) -> Observed {
        let mut slot = self.observed.lock().expect("lease observation lock");
        let o = observe(slot.as_ref(), Record::of(lease), Instant::now());
        *slot = Some(o.clone());
        o
    }

    async fn attempt(&self) -> Result<bool, LeaseError> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(Timestamp::now(), None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.remember(&created);
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let observed = self.remember(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = match decide(&self.identity, &observed, Instant::now()) {
            Decision::Wait => return Ok(false),
            Decision::Renew => self.spec(Timestamp::now(), spec.acquire_time.clone(), transitions),
            Decision::TakeOver => self.spec(Timestamp::now(), None, transitions + 1),
        };
        lease.spec = Some(new_spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.remember(&written);
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Keep the Lease while `token` is not cancelled: renew every retry period; on losing
    /// the Lease, or on going a whole renew deadline without a successful renewal, cancel
    /// `token` so this process stops reconciling.
    pub async fn hold(self, token: CancellationToken) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.retry_period()) => {},
                _ = token.cancelled() => return,
            }
            let started = Instant::now();
            let left = (last_renewed + self.renew_deadline).saturating_duration_since(started);
            let result = match tokio::time::timeout(left, self.attempt()).await {
                Ok(r) => r,
                Err(_) => Err(LeaseError::Timeout(left)),
            };
            match result {
                Ok(true) => last_renewed = started,
                Ok(false) => {
                    tracing::error!("lost leadership; stopping");
                    token.cancel();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "renewing the leader lease"),
            }
            if must_step_down(last_renewed, Instant::now(), self.renew_deadline) {
                tracing::error!(
                    deadline = ?self.renew_deadline,
                    "could not renew the leader lease within the renew deadline; stopping"
                );
                token.cancel();
                return;
            }
        }
    }

    /// Give the Lease up (on shutdown) so a standby takes over without waiting for expiry.
    pub async fn release(&self) -> Result<(), LeaseError> {
        let limit = self.renew_deadline;
        let release = async {
            if let Some(mut lease) = self.api.get_opt(&self.name).await?
                && let Some(spec) = lease.spec.as_mut()
                && spec.holder_identity.as_deref() == Some(self.identity.as_str())
            {
                spec.holder_identity = None;
                spec.renew_time = None;
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await?;
            }
            Ok::<(), kube::Error>(())
        };
        match tokio::time::timeout(limit, release).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(LeaseError::Timeout(limit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renew: &str) -> Record {
        Record {
            holder: holder.into(),
            renew_time: Some(renew.into()),
            resource_version: Some(renew.into()),
            lease_duration: Duration::from_secs(15),
        }
    }

    #[test]
    fn expiry_is_judged_by_local_observation_not_the_holders_timestamps() {
        let t0 = Instant::now();
        // The holder's renewTime says "an hour ago" (its clock is off): that alone is no
        // expiry; the record must stay unchanged for a lease duration of *our* time.
        let o = observe(None, record("a", "2026-01-01T00:00:00Z"), t0);
        assert_eq!(decide("b", &o, t0), Decision::Wait);
        let t14 = t0 + Duration::from_secs(14);
        let o = observe(Some(&o), record("a", "2026-01-01T00:00:00Z"), t14);
        assert_eq!(
            o.since, t0,
            "unchanged record keeps its first observation time"
        );
        assert_eq!(decide("b", &o, t14), Decision::Wait);
        let t15 = t0 + Duration::from_secs(15);
        assert_eq!(decide("b", &o, t15), Decision::TakeOver);
        // A renewal (a new record) restarts the clock.
        let o = observe(Some(&o), record("a", "2026-01-01T00:00:05Z"), t15);
        assert_eq!(o.since, t15);
        assert_eq!(decide("b", &o, t15), Decision::Wait);
    }

    #[test]
    fn holder_renews_and_an_unheld_lease_is_free() {
        let t = Instant::now();
        let o = observe(None, record("a", "x"), t);
        assert_eq!(decide("a", &o, t), Decision::Renew);
        let o = observe(None, record("", "x"), t);
        assert_eq!(decide("b", &o, t), Decision::TakeOver);
    }

    #[test]
    fn the_renew_deadline_is_shorter_than_the_lease() {
        for secs in [3, 15, 60] {
            let lease = Duration::from_secs(secs);
            let deadline = renew_deadline_for(lease);
            assert!(deadline < lease, "{secs}s");
            assert!(
                retry_period_for(lease) * 3 <= deadline,
                "{secs}s: retries fit"
            );
        }
        let t = Instant::now();
        let d = Duration::from_secs(10);
        assert!(!must_step_down(t, t + Duration::from_secs(9), d));
        assert!(must_step_down(t, t + d, d));
    }
}
