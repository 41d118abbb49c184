//! Act: carry out a [`Decision`] (finalizer, scale, load Job, stop, TTL) and write the
//! decided status so that fields the decision dropped are cleared.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::decide::{self, Act, Decision, FINALIZER};
use super::observe::World;
use super::{Context, Error};
use crate::api::{BenchmarkRun, InferenceService};
use crate::controller::apply;
use crate::render::benchmark_run::{self as render_run, RUN_LABEL};

/// Whether an API error is a refusal that retrying unchanged will not fix soon (RBAC,
/// validation, admission), as opposed to a conflict, throttling or a server problem.
fn is_refusal(e: &kube::Error) -> Option<String> {
    match e {
        kube::Error::Api(r) if (400..500).contains(&r.code) && r.code != 409 && r.code != 429 => {
            Some(r.message.clone())
        }
        _ => None,
    }
}

/// Carry out the actions of `d`; an object of the load Job that the API server refuses
/// turns the decision into [`decide::refused`] instead of an error.
pub async fn act(ctx: &Context, w: &World, d: Decision) -> Result<Decision, Error> {
    let run = &w.run;
    let ns = run
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    for a in d.actions.clone() {
        match a {
            Act::SetFinalizer(present) => set_finalizer(ctx, run, present).await?,
            Act::Scale(n) => {
                if let Some(r) = &run.spec.target.inference_service_ref {
                    scale_target(ctx, &ns, &r.name, n).await?;
                }
            }
            Act::StartLoad { slot, plan } => {
                let r = render_run::render(run, &plan, slot, &ctx.render);
                let mut objects: Vec<(String, Result<(), kube::Error>)> = Vec::new();
                let sa = &r.service_account;
                objects.push((
                    format!("ServiceAccount {}", sa.name_any()),
                    apply::apply(&ctx.client, sa).await.map(drop),
                ));
                objects.push((
                    format!("Role {}", r.role.name_any()),
                    apply::apply(&ctx.client, &r.role).await.map(drop),
                ));
                objects.push((
                    format!("RoleBinding {}", r.role_binding.name_any()),
                    apply::apply(&ctx.client, &r.role_binding).await.map(drop),
                ));
                objects.push((
                    format!("ConfigMap {}", r.plan.name_any()),
                    apply::apply(&ctx.client, &r.plan).await.map(drop),
                ));
                for cm in &r.results {
                    objects.push((
                        format!("ConfigMap {}", cm.name_any()),
                        apply::apply(&ctx.client, cm).await.map(drop),
                    ));
                }
                // The Job last, and only when everything it needs exists.
                if objects.iter().all(|(_, r)| r.is_ok()) {
                    objects.push((
                        format!("Job {}", r.job.name_any()),
                        apply::apply(&ctx.client, &r.job).await.map(drop),
                    ));
                }
                for (what, result) in objects {
                    match result {
                        Ok(()) => {}
                        Err(e) => {
                            if let Some(resp) = is_refusal(&e) {
                                tracing::warn!(object = %what, error = %e, "load object refused");
                                return Ok(decide::refused(w, d, &what, &resp));
                            }
                            return Err(e.into());
                        }
                    }
                }
            }
            Act::StopJob(name) => stop_job(ctx, &ns, &name).await?,
            Act::DeleteJobs => delete_jobs(ctx, run, &ns).await?,
        }
    }
    Ok(d)
}

/// Write the decided status (replacing the stored one: fields the decision dropped, such as
/// `scaling.currentReplicas` after a restore, are cleared) and publish Events for condition
/// transitions.
pub async fn write_status(
    ctx: &Context,
    run: &BenchmarkRun,
    d: &mut Decision,
) -> Result<(), Error> {
    let updates = std::mem::take(&mut d.conditions);
    let transitions =
        apply::set_conditions(&mut d.status.conditions, updates, run.metadata.generation);
    if run.status.as_ref() != Some(&d.status) {
        let api: Api<BenchmarkRun> =
            Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
        apply::replace_status(&api, &run.name_any(), run.status.as_ref(), &d.status).await?;
    }
    if !transitions.is_empty() {
        apply::publish_transitions(&ctx.recorder, &run.object_ref(&()), &transitions).await;
    }
    Ok(())
}

async fn set_finalizer(ctx: &Context, run: &BenchmarkRun, present: bool) -> Result<(), Error> {
    let api: Api<BenchmarkRun> =
        Api::namespaced(ctx.client.clone(), &run.namespace().unwrap_or_default());
    let mut finalizers: Vec<String> = run.finalizers().to_vec();
    finalizers.retain(|f| f != FINALIZER);
    if present {
        finalizers.push(FINALIZER.to_string());
    }
    let patch = json!({"metadata": {"finalizers": finalizers}});
    api.patch(
        &run.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Scale the target InferenceService through its scale subresource.
async fn scale_target(ctx: &Context, ns: &str, name: &str, replicas: i32) -> Result<(), Error> {
    let api: Api<InferenceService> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({"spec": {"replicas": replicas}});
    match api
        .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // An API without the scale subresource (an old CRD, a test double) answers 404/405
        // or with the object itself: patch the spec instead.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(())
        }
        Err(kube::Error::SerdeError(_)) => {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Suspend a load Job: the Job controller stops its pods; the Job stays for inspection.
async fn stop_job(ctx: &Context, ns: &str, name: &str) -> Result<(), Error> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({"spec": {"suspend": true}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// TTL: delete the load Jobs (results stay in status and the ConfigMaps).
async fn delete_jobs(ctx: &Context, run: &BenchmarkRun, ns: &str) -> Result<(), Error> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{RUN_LABEL}={}", render_run::label_value(&run.name_any()));
    for job in api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(&job.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
