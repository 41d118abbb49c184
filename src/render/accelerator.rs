//! Accelerator profiles: `spec.accelerator` (GPU type, count, platform, spot, instance type)
//! becomes a node selector and tolerations. The table is documented in
//! `docs/accelerators.md`; keep the two in step.
//!
//! - GKE: `cloud.google.com/gke-accelerator: <gpu>`; spot adds `cloud.google.com/gke-spot:
//!   "true"` and a toleration for the matching taint.
//! - EKS: Karpenter's `karpenter.k8s.aws/instance-gpu-name: <gpu>`, or
//!   `node.kubernetes.io/instance-type` when `instanceType` is set; spot adds
//!   `karpenter.sh/capacity-type: spot`.
//! - generic: no node labels.
//!
//! Always: the `nvidia.com/gpu` `NoSchedule` toleration (operator `Exists`). Then the
//! `spec.scheduling` overrides win: node selector entries replace the profile's, tolerations
//! are appended.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;

use super::RenderError;
use crate::api::{AcceleratorSpec, AcceleratorType, Platform, SchedulingSpec};

/// The extended resource name of NVIDIA GPUs (device plugin).
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// GKE node label selecting the GPU model.
pub const GKE_ACCELERATOR_LABEL: &str = "cloud.google.com/gke-accelerator";
/// GKE node label (and taint key) of Spot VMs.
pub const GKE_SPOT_LABEL: &str = "cloud.google.com/gke-spot";
/// Karpenter (AWS provider) node label with the GPU model, lower case.
pub const KARPENTER_GPU_NAME_LABEL: &str = "karpenter.k8s.aws/instance-gpu-name";
/// Karpenter node label with the capacity type (`spot` / `on-demand`).
pub const KARPENTER_CAPACITY_TYPE_LABEL: &str = "karpenter.sh/capacity-type";
/// Well-known node label with the cloud instance type.
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";

/// What a GPU type looks like on one platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformOffer {
    /// Node label value (GKE accelerator name or Karpenter GPU name).
    pub label_value: &'static str,
    /// Machine / instance family that carries this GPU.
    pub family: &'static str,
    /// GPUs per node the family offers.
    pub counts: &'static [u32],
}

/// The GKE offer for a GPU type, if GKE has it.
pub fn gke_offer(gpu: AcceleratorType) -> Option<PlatformOffer> {
    use AcceleratorType::*;
    let offer = |label_value, family, counts| PlatformOffer {
        label_value,
        family,
        counts,
    };
    match gpu {
        NvidiaL4 => Some(offer("nvidia-l4", "g2", &[1, 2, 4, 8])),
        NvidiaT4 => Some(offer("nvidia-tesla-t4", "n1 (+T4)", &[1, 2, 4])),
        NvidiaA100_80gb => Some(offer("nvidia-a100-80gb", "a2-ultragpu", &[1, 2, 4, 8])),
        NvidiaH100_80gb => Some(offer("nvidia-h100-80gb", "a3-highgpu", &[1, 2, 4, 8])),
        NvidiaA10g | NvidiaL40s => None,
    }
}

/// The EKS offer for a GPU type: instance family, Karpenter GPU name, counts.
pub fn eks_offer(gpu: AcceleratorType) -> PlatformOffer {
    use AcceleratorType::*;
    let (label_value, family, counts): (_, _, &'static [u32]) = match gpu {
        NvidiaL4 => ("l4", "g6", &[1, 4, 8]),
        NvidiaA10g => ("a10g", "g5", &[1, 4, 8]),
        NvidiaT4 => ("t4", "g4dn", &[1, 4, 8]),
        NvidiaL40s => ("l40s", "g6e", &[1, 4, 8]),
        NvidiaA100_80gb => ("a100", "p4de", &[8]),
        NvidiaH100_80gb => ("h100", "p5", &[1, 8]),
    };
    PlatformOffer {
        label_value,
        family,
        counts,
    }
}

/// GPUs on one EKS GPU instance type (`g5.12xlarge` -> 4), for the families above; `None`
/// for sizes this table does not know (they are not rejected).
pub fn eks_instance_gpus(instance_type: &str) -> Option<u32> {
    let (family, size) = instance_type.split_once('.')?;
    let gpus = match (family, size) {
        ("g5" | "g6" | "g6e", "12xlarge" | "24xlarge") => 4,
        ("g5" | "g6" | "g6e", "48xlarge") => 8,
        ("g5" | "g6" | "g6e", "xlarge" | "2xlarge" | "4xlarge" | "8xlarge" | "16xlarge") => 1,
        ("g4dn", "12xlarge") => 4,
        ("g4dn", "metal") => 8,
        ("g4dn", "xlarge" | "2xlarge" | "4xlarge" | "8xlarge" | "16xlarge") => 1,
        ("p4de", "24xlarge") => 8,
        ("p5", "48xlarge") => 8,
        ("p5", "4xlarge") => 1,
        _ => return None,
    };
    Some(gpus)
}

/// The user-facing name of a GPU type (`nvidia-l4`).
pub fn type_name(gpu: AcceleratorType) -> String {
    serde_json::to_value(gpu)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Node placement for the engine pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// Node selector (sorted, so output is deterministic).
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations, profile first, then the user's.
    pub tolerations: Vec<Toleration>,
}

fn count_list(counts: &[u32]) -> String {
    let parts: Vec<String> = counts.iter().map(u32::to_string).collect();
    match parts.len() {
        0 => String::new(),
        1 => parts[0].clone(),
        n => format!("{} or {}", parts[..n - 1].join(", "), parts[n - 1]),
    }
}

fn check_count(count: u32, offer: &PlatformOffer, platform: &str) -> Result<(), RenderError> {
    if offer.counts.contains(&count) {
        return Ok(());
    }
    let list = count_list(offer.counts);
    Err(RenderError::unsupported(
        "spec.accelerator.count",
        format!(
            "{count} GPUs is not offered by {platform} {} instances ({list})",
            offer.family
        ),
        format!("use {list}"),
    ))
}

/// The GPU toleration every GPU pod carries.
pub fn gpu_toleration() -> Toleration {
    Toleration {
        key: Some(GPU_RESOURCE.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some("NoSchedule".to_string()),
        ..Default::default()
    }
}

/// Node selector and tolerations derived from `spec.accelerator` alone.
pub fn profile(acc: &AcceleratorSpec) -> Result<Placement, RenderError> {
    let mut placement = Placement {
        tolerations: vec![gpu_toleration()],
        ..Default::default()
    };
    if acc.count == 0 {
        return Err(RenderError::invalid(
            "spec.accelerator.count",
            "0 GPUs per replica",
            "set count to at least 1 (or use engine.kind: sim for no GPU)",
        ));
    }
    let gpu = type_name(acc.type_);
    if acc.instance_type.is_some() && acc.platform != Platform::Eks {
        return Err(RenderError::invalid(
            "spec.accelerator.instanceType",
            "instanceType is only used with platform eks",
            "remove instanceType or set platform: eks",
        ));
    }
    match acc.platform {
        Platform::Gke => {
            let Some(offer) = gke_offer(acc.type_) else {
                return Err(RenderError::unsupported(
                    "spec.accelerator.type",
                    format!("{gpu} is not offered on GKE"),
                    "on GKE use accelerator.type nvidia-l4, nvidia-t4, nvidia-a100-80gb or \
                     nvidia-h100-80gb, or set platform: eks (or generic)",
                ));
            };
            check_count(acc.count, &offer, "GKE")?;
            placement
                .node_selector
                .insert(GKE_ACCELERATOR_LABEL.into(), offer.label_value.into());
            if acc.spot {
                placement
                    .node_selector
                    .insert(GKE_SPOT_LABEL.into(), "true".into());
                placement.tolerations.push(Toleration {
                    key: Some(GKE_SPOT_LABEL.into()),
                    operator: Some("Equal".into()),
                    value: Some("true".into()),
                    effect: Some("NoSchedule".into()),
                    ..Default::default()
                });
            }
        }
        Platform::Eks => {
            let offer = eks_offer(acc.type_);
            if let Some(instance_type) = &acc.instance_type {
                let family = instance_type.split('.').next().unwrap_or_default();
                if family != offer.family {
                    return Err(RenderError::unsupported(
                        "spec.accelerator.instanceType",
                        format!(
                            "{instance_type} is not a {} instance, the family with {gpu}",
                            offer.family
                        ),
                        format!(
                            "use a {}.* instance type or change accelerator.type",
                            offer.family
                        ),
                    ));
                }
                if let Some(gpus) = eks_instance_gpus(instance_type)
                    && acc.count > gpus
                {
                    return Err(RenderError::unsupported(
                        "spec.accelerator.count",
                        format!(
                            "{} GPUs do not fit on {instance_type}, which has {gpus}",
                            acc.count
                        ),
                        format!(
                            "lower count to {gpus} or pick a larger {} instance type",
                            offer.family
                        ),
                    ));
                }
                placement
                    .node_selector
                    .insert(INSTANCE_TYPE_LABEL.into(), instance_type.clone());
            } else {
                placement
                    .node_selector
                    .insert(KARPENTER_GPU_NAME_LABEL.into(), offer.label_value.into());
            }
            check_count(acc.count, &offer, "EKS")?;
            if acc.spot {
                placement
                    .node_selector
                    .insert(KARPENTER_CAPACITY_TYPE_LABEL.into(), "spot".into());
            }
        }
        Platform::Generic => {}
    }
    Ok(placement)
}

/// Apply `spec.scheduling` over a placement: node selector entries win, tolerations are
/// appended (skipping exact duplicates).
pub fn apply_overrides(mut placement: Placement, scheduling: Option<&SchedulingSpec>) -> Placement {
    if let Some(s) = scheduling {
        for (k, v) in &s.node_selector {
            placement.node_selector.insert(k.clone(), v.clone());
        }
        for t in &s.tolerations {
            if !placement.tolerations.contains(t) {
                placement.tolerations.push(t.clone());
            }
        }
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(type_: AcceleratorType, count: u32, platform: Platform) -> AcceleratorSpec {
        AcceleratorSpec {
            type_,
            count,
            platform,
            spot: false,
            instance_type: None,
        }
    }

    #[test]
    fn gke_l4_spot() {
        let mut a = acc(AcceleratorType::NvidiaL4, 1, Platform::Gke);
        a.spot = true;
        let p = profile(&a).unwrap();
        assert_eq!(p.node_selector[GKE_ACCELERATOR_LABEL], "nvidia-l4");
        assert_eq!(p.node_selector[GKE_SPOT_LABEL], "true");
        assert_eq!(p.tolerations[0], gpu_toleration());
    }

    #[test]
    fn eks_count_error_names_field_and_fix() {
        let e = profile(&acc(AcceleratorType::NvidiaA10g, 3, Platform::Eks)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.accelerator.count: 3 GPUs is not offered by EKS g5 instances (1, 4 or 8); use 1, 4 or 8"
        );
    }

    #[test]
    fn eks_instance_type_must_match_family() {
        let mut a = acc(AcceleratorType::NvidiaA10g, 1, Platform::Eks);
        a.instance_type = Some("g6.xlarge".into());
        let e = profile(&a).unwrap_err();
        assert_eq!(e.field(), "spec.accelerator.instanceType");
        a.instance_type = Some("g5.2xlarge".into());
        let p = profile(&a).unwrap();
        assert_eq!(p.node_selector[INSTANCE_TYPE_LABEL], "g5.2xlarge");
        assert!(!p.node_selector.contains_key(KARPENTER_GPU_NAME_LABEL));
        a.count = 4;
        let e = profile(&a).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.accelerator.count: 4 GPUs do not fit on g5.2xlarge, which has 1; lower count \
             to 1 or pick a larger g5 instance type"
        );
        a.instance_type = Some("g5.12xlarge".into());
        assert!(profile(&a).is_ok());
    }

    #[test]
    fn gke_has_no_a10g() {
        let e = profile(&acc(AcceleratorType::NvidiaA10g, 1, Platform::Gke)).unwrap_err();
        assert_eq!(e.field(), "spec.accelerator.type");
        assert!(e.to_string().contains("not offered on GKE"));
    }

    #[test]
    fn overrides_win() {
        let p = profile(&acc(AcceleratorType::NvidiaL4, 1, Platform::Gke)).unwrap();
        let s = SchedulingSpec {
            node_selector: [(GKE_ACCELERATOR_LABEL.to_string(), "x".to_string())].into(),
            tolerations: vec![gpu_toleration()],
            ..Default::default()
        };
        let p = apply_overrides(p, Some(&s));
        assert_eq!(p.node_selector[GKE_ACCELERATOR_LABEL], "x");
        assert_eq!(p.tolerations.len(), 1);
    }
}
