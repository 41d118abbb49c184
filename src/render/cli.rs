//! `inferops render -f FILE`: validate each document as the apiserver would, then print every
//! object the operator would create, as multi-document YAML. The output is deterministic (no
//! timestamps, no generated names) so GitOps diffs stay stable.

use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;

use super::{RenderContext, default_operator_image, inference_service};
use crate::api::{InferenceService, parse_documents, validate_object};

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
            Some("BenchmarkRun") => out.notes.push(format!(
                "{}: skipped: rendering BenchmarkRun objects is not implemented yet",
                describe(i, &doc)
            )),
            _ => problems.push(format!("{}: unsupported kind", describe(i, &doc))),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
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
            context: RenderContext {
                operator_image: self.operator_image.clone(),
                ..RenderContext::default()
            },
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
