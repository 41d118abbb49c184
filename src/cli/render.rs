//! `inferops render -f FILE`: validate each document as the apiserver would, then print every
//! object the operator would create, as multi-document YAML. The output is deterministic (no
//! timestamps, no generated names) so GitOps diffs stay stable.

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;

use crate::api::{BenchmarkRun, InferenceService, parse_documents, validate_object};
use crate::contract::spec as plan;
use crate::render::{RenderContext, benchmark_run, default_operator_image, inference_service};

/// Arguments of `inferops render`.
#[derive(clap::Args, Debug, Clone)]
pub struct RenderArgs {
    /// File with InferenceService / BenchmarkRun documents (multi-document YAML); `-` reads
    /// standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Namespace to render into; overrides `metadata.namespace` (default: the object's
    /// namespace, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Operator image (runs `engine.kind: sim` pods).
    #[arg(long, default_value_t = default_operator_image())]
    pub operator_image: String,
    /// The operator's rendering settings, to render what a so-configured operator applies.
    #[command(flatten)]
    pub settings: crate::render::RenderSettings,
}

/// Options of [`render_documents`].
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Namespace overriding `metadata.namespace`.
    pub namespace: Option<String>,
    /// The renderer context (operator image, default namespace).
    pub context: RenderContext,
}

/// The result of rendering a file.
#[derive(Debug, Clone, Default)]
pub struct RenderOutput {
    /// Multi-document YAML of every object, in document order.
    pub yaml: String,
    /// Notes for standard error (skipped documents).
    pub notes: Vec<String>,
}

fn describe(index: usize, doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("document {} ({kind} {name})", index + 1)
}

/// Validate and render every document of `yaml`. On failure, returns one line per problem,
/// each naming the document and the field path.
pub fn render_documents(yaml: &str, opts: &RenderOptions) -> Result<RenderOutput, Vec<String>> {
    let docs = parse_documents(yaml).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        if let Err(errors) = validate_object(doc, None) {
            problems.extend(
                errors
                    .into_iter()
                    .map(|e| format!("{}: {e}", describe(i, doc))),
            );
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut out = RenderOutput::default();
    let mut objects = Vec::new();
    // Served model names of the InferenceServices in this file, for BenchmarkRuns that
    // reference them.
    let served: std::collections::BTreeMap<String, String> = docs
        .iter()
        .filter(|d| d.get("kind").and_then(Value::as_str) == Some("InferenceService"))
        .filter_map(|d| serde_json::from_value::<InferenceService>(d.clone()).ok())
        .map(|i| {
            (
                i.metadata.name.clone().unwrap_or_default(),
                i.spec.served_model_name().to_string(),
            )
        })
        .collect();
    for (i, doc) in docs.into_iter().enumerate() {
        match doc.get("kind").and_then(Value::as_str) {
            Some("InferenceService") => {
                let what = describe(i, &doc);
                let mut isvc: InferenceService = match serde_json::from_value(doc) {
                    Ok(v) => v,
                    Err(e) => {
                        problems.push(format!("{what}: {e}"));
                        continue;
                    }
                };
                if let Some(ns) = &opts.namespace {
                    isvc.metadata.namespace = Some(ns.clone());
                }
                match inference_service::render(&isvc, &opts.context) {
                    Ok(r) => objects.extend(r.to_values()),
                    Err(e) => problems.push(format!("{what}: {e}")),
                }
            }
            Some("BenchmarkRun") => {
                let what = describe(i, &doc);
                let mut run: BenchmarkRun = match serde_json::from_value(doc) {
                    Ok(v) => v,
                    Err(e) => {
                        problems.push(format!("{what}: {e}"));
                        continue;
                    }
                };
                if let Some(ns) = &opts.namespace {
                    run.metadata.namespace = Some(ns.clone());
                }
                let ns = run
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| opts.context.default_namespace.clone());
                let (url, model) =
                    match (&run.spec.target.url, &run.spec.target.inference_service_ref) {
                        (Some(url), _) => (url.clone(), run.spec.target.model.clone()),
                        (None, Some(r)) => (
                            inference_service::endpoint(&r.name, &ns)
                                .trim_end_matches("/v1")
                                .to_string(),
                            run.spec
                                .target
                                .model
                                .clone()
                                .or_else(|| served.get(&r.name).cloned()),
                        ),
                        (None, None) => {
                            problems.push(format!(
                                "{what}: spec.target: set exactly one of inferenceServiceRef or url"
                            ));
                            continue;
                        }
                    };
                let model = model.unwrap_or_else(|| {
                    out.notes.push(format!(
                        "{what}: the model name is resolved from the target at run time; shown as <model>"
                    ));
                    "<model>".to_string()
                });
                let pods = run.spec.loadgen.parallelism.max(1) as u32;
                let slots: Vec<Option<i32>> = match &run.spec.scaling {
                    Some(s) => s.replicas.iter().map(|r| Some(*r)).collect(),
                    None => vec![None],
                };
                for slot in slots {
                    match plan::plan(&run.spec, &url, &model, pods, None) {
                        Ok(p) => objects.extend(
                            benchmark_run::render(&run, &p, slot, &opts.context).to_values(),
                        ),
                        Err(e) => problems.push(format!("{what}: {e}")),
                    }
                }
            }
            _ => problems.push(format!("{}: unsupported kind", describe(i, &doc))),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // A scaling study's sweeps share the ServiceAccount, Role, RoleBinding and results
    // ConfigMap: print each object once.
    let mut seen = std::collections::BTreeSet::new();
    objects.retain(|o| {
        seen.insert((
            o["kind"].as_str().unwrap_or_default().to_string(),
            o["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ))
    });
    out.yaml = objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("JSON values always serialize to YAML"))
        .collect::<Vec<_>>()
        .join("---\n");
    Ok(out)
}

impl RenderArgs {
    /// Run the subcommand: YAML on stdout, notes and errors on stderr; exits with status 1
    /// when any document is invalid.
    pub fn run(&self) -> anyhow::Result<()> {
        let text = if self.file.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        } else {
            std::fs::read_to_string(&self.file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", self.file.display()))?
        };
        let opts = RenderOptions {
            namespace: self.namespace.clone(),
            context: self.settings.apply(RenderContext {
                operator_image: self.operator_image.clone(),
                ..RenderContext::default()
            }),
        };
        match render_documents(&text, &opts) {
            Ok(out) => {
                for note in &out.notes {
                    eprintln!("{note}");
                }
                print!("{}", out.yaml);
                Ok(())
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("{}: {p}", self.file.display());
                }
                eprintln!(
                    "error: {}: {} problem(s); nothing rendered",
                    self.file.display(),
                    problems.len()
                );
                // A plain non-zero exit: the problems above are the whole message.
                std::process::exit(1)
            }
        }
    }
}
