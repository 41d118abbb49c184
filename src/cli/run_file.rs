//! `inferops bench -f RUN.yaml`: the very BenchmarkRun the operator runs, validated like the
//! apiserver would (schema + CEL), mapped to a [`Plan`] by the same function the operator
//! uses ([`crate::contract::spec::plan`]).

use std::path::Path;

use anyhow::{Context, bail};

use crate::api::{BenchmarkRun, parse_documents, validate_object};
use crate::contract::plan::Plan;

/// The plan of a BenchmarkRun file, with its target URL and model when the spec names them
/// (an `inferenceServiceRef` target has neither outside the cluster: pass `--url`).
#[derive(Debug, Clone)]
pub struct FileRun {
    /// The plan with an empty target (filled from flags or the file).
    pub plan: Plan,
    /// `spec.target.url`.
    pub url: Option<String>,
    /// `spec.target.model`.
    pub model: Option<String>,
}

/// Read the first BenchmarkRun of `path`.
pub fn read(path: &Path) -> anyhow::Result<FileRun> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let docs = parse_documents(&text).with_context(|| format!("in {}", path.display()))?;
    let Some(doc) = docs
        .into_iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some("BenchmarkRun"))
    else {
        bail!("{} holds no BenchmarkRun document", path.display());
    };
    if let Err(errors) = validate_object(&doc, None) {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        bail!(
            "{} is not a valid BenchmarkRun:\n  {}",
            path.display(),
            lines.join("\n  ")
        );
    }
    let run: BenchmarkRun =
        serde_json::from_value(doc).with_context(|| format!("in {}", path.display()))?;
    let plan = crate::contract::spec::plan(&run.spec, "", "", 1, None)
        .with_context(|| format!("in {}", path.display()))?;
    Ok(FileRun {
        plan,
        url: run.spec.target.url.clone(),
        model: run.spec.target.model.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("manifests/examples")
            .join(name)
    }

    #[test]
    fn reads_the_operator_examples() {
        let r = read(&example("bench-concurrency-sweep.yaml")).unwrap();
        assert_eq!(r.plan.load.concurrency, [1, 2, 4, 8, 16, 32]);
        assert_eq!(r.url, None, "an inferenceServiceRef target has no URL here");
        let r = read(&example("bench-rate-saturation.yaml")).unwrap();
        assert!(r.plan.load.saturation.is_some());
    }

    #[test]
    fn invalid_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(
            &path,
            "apiVersion: inferops.dev/v1alpha1\nkind: BenchmarkRun\nmetadata: {name: x}\nspec:\n  target: {url: 'http://x:8000'}\n  load: {mode: concurrency, concurrency: [4, 0]}\n",
        )
        .unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("every load point must be > 0"), "{err}");
        std::fs::write(&path, "kind: InferenceService\n").unwrap();
        assert!(
            read(&path)
                .unwrap_err()
                .to_string()
                .contains("no BenchmarkRun")
        );
    }
}
