//! Accelerator profiles: `spec.accelerator` (GPU type, count, platform, spot, instance type)
//! becomes a node selector and tolerations. The table is documented in
//! `docs/accelerators.md`; keep the two in step.
//!
//! - GKE: `cloud.google.com/gke-accelerator: <gpu>`; spot adds `cloud.google.com/gke-spot:
//!   "true"` and a toleration for the matching taint.
//! - EKS, by `eksNodeLabels`: Karpenter's `karpenter.k8s.aws/instance-gpu-name: <gpu>`
//!   (default), EKS Auto Mode's `eks.amazonaws.com/instance-gpu-name: <gpu>`, or a required
//!   node affinity on `node.kubernetes.io/instance-type` (managed node groups); an
//!   `instanceType` pins `node.kubernetes.io/instance-type` in every scheme. The 80 GB A100
//!   also pins the instance family `p4de` (the `a100` GPU name also matches 40 GB p4d
//!   nodes). Spot adds `karpenter.sh/capacity-type: spot` (Karpenter, Auto Mode) or
//!   `eks.amazonaws.com/capacityType: SPOT` (instance-type scheme).
//! - generic: no node labels.
//!
//! Always: the `nvidia.com/gpu` `NoSchedule` toleration (operator `Exists`). Then the
//! `spec.scheduling` overrides win: node selector entries replace the profile's, tolerations
//! are appended.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;

use super::RenderError;
use crate::api::{AcceleratorSpec, AcceleratorType, EksNodeLabels, Platform, SchedulingSpec};

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
/// Karpenter (AWS provider) node label with the instance family (`p4de`).
pub const KARPENTER_INSTANCE_FAMILY_LABEL: &str = "karpenter.k8s.aws/instance-family";
/// EKS Auto Mode node label with the GPU model, lower case.
pub const AUTO_MODE_GPU_NAME_LABEL: &str = "eks.amazonaws.com/instance-gpu-name";
/// EKS Auto Mode node label with the instance family.
pub const AUTO_MODE_INSTANCE_FAMILY_LABEL: &str = "eks.amazonaws.com/instance-family";
/// EKS managed node group label with the capacity type (`ON_DEMAND` / `SPOT`).
pub const EKS_CAPACITY_TYPE_LABEL: &str = "eks.amazonaws.com/capacityType";
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

/// Every instance type of an EKS GPU family this table knows, with its GPUs.
pub fn eks_family_instance_types(family: &str) -> Vec<(String, u32)> {
    let sizes: &[&str] = match family {
        "g5" | "g6" | "g6e" => &[
            "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge",
            "48xlarge",
        ],
        "g4dn" => &[
            "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "metal",
        ],
        "p4de" => &["24xlarge"],
        "p5" => &["4xlarge", "48xlarge"],
        _ => &[],
    };
    sizes
        .iter()
        .filter_map(|size| {
            let t = format!("{family}.{size}");
            eks_instance_gpus(&t).map(|g| (t, g))
        })
        .collect()
}

/// CPU cores and memory (GiB) requested per GPU: what the smallest instance of the GPU's
/// families leaves allocatable after system daemons (e.g. 4 vCPU / 16 GiB on g5.xlarge,
/// g6.xlarge and g2-standard-4), so one GPU pod always fits its smallest node.
pub fn host_requests_per_gpu(gpu: AcceleratorType) -> (u32, u32) {
    use AcceleratorType::*;
    match gpu {
        NvidiaL4 | NvidiaA10g => (2, 10),
        NvidiaT4 => (2, 8),
        NvidiaL40s => (2, 24),
        NvidiaA100_80gb => (8, 96),
        NvidiaH100_80gb => (12, 160),
    }
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
    /// Required node affinity: the node's label `key` must be one of the values (used for
    /// the instance-type scheme on EKS, where one GPU exists in several instance sizes).
    pub required_node_labels: Vec<(String, Vec<String>)>,
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
    if acc.eks_node_labels.is_some() && acc.platform != Platform::Eks {
        return Err(RenderError::invalid(
            "spec.accelerator.eksNodeLabels",
            "eksNodeLabels is only used with platform eks",
            "remove eksNodeLabels or set platform: eks",
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
        Platform::Eks => eks_placement(acc, &gpu, &mut placement)?,
        Platform::Generic => {}
    }
    Ok(placement)
}

fn eks_placement(
    acc: &AcceleratorSpec,
    gpu: &str,
    placement: &mut Placement,
) -> Result<(), RenderError> {
    let offer = eks_offer(acc.type_);
    let scheme = acc.eks_node_labels.unwrap_or_default();
    let sel = &mut placement.node_selector;
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
        match eks_instance_gpus(instance_type) {
            // One pinned instance: any count up to its GPUs (several replicas share it).
            Some(gpus) if acc.count > gpus => {
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
            Some(_) => {}
            None => check_count(acc.count, &offer, "EKS")?,
        }
        sel.insert(INSTANCE_TYPE_LABEL.into(), instance_type.clone());
    } else {
        check_count(acc.count, &offer, "EKS")?;
        // `a100` is also the GPU name of the 40 GB p4d: pin the 80 GB family.
        let pin_family = acc.type_ == AcceleratorType::NvidiaA100_80gb;
        match scheme {
            EksNodeLabels::Karpenter => {
                sel.insert(KARPENTER_GPU_NAME_LABEL.into(), offer.label_value.into());
                if pin_family {
                    sel.insert(KARPENTER_INSTANCE_FAMILY_LABEL.into(), offer.family.into());
                }
            }
            EksNodeLabels::AutoMode => {
                sel.insert(AUTO_MODE_GPU_NAME_LABEL.into(), offer.label_value.into());
                if pin_family {
                    sel.insert(AUTO_MODE_INSTANCE_FAMILY_LABEL.into(), offer.family.into());
                }
            }
            EksNodeLabels::InstanceType => {
                let types: Vec<String> = eks_family_instance_types(offer.family)
                    .into_iter()
                    .filter(|(_, gpus)| *gpus >= acc.count)
                    .map(|(t, _)| t)
                    .collect();
                placement
                    .required_node_labels
                    .push((INSTANCE_TYPE_LABEL.into(), types));
            }
        }
    }
    if acc.spot {
        match scheme {
            EksNodeLabels::Karpenter | EksNodeLabels::AutoMode => {
                placement
                    .node_selector
                    .insert(KARPENTER_CAPACITY_TYPE_LABEL.into(), "spot".into());
            }
            EksNodeLabels::InstanceType => {
                placement
                    .node_selector
                    .insert(EKS_CAPACITY_TYPE_LABEL.into(), "SPOT".into());
            }
        }
    }
    Ok(())
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
            eks_node_labels: None,
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
    fn a_pinned_instance_type_accepts_any_count_up_to_its_gpus() {
        // g5 families offer 1, 4 or 8 GPUs, but two of a g5.12xlarge's four are fine
        // (tensorParallelSize 2); five are not.
        let mut a = acc(AcceleratorType::NvidiaA10g, 2, Platform::Eks);
        a.instance_type = Some("g5.12xlarge".into());
        let p = profile(&a).unwrap();
        assert_eq!(p.node_selector[INSTANCE_TYPE_LABEL], "g5.12xlarge");
        a.count = 3;
        assert!(profile(&a).is_ok());
        a.count = 5;
        assert_eq!(profile(&a).unwrap_err().field(), "spec.accelerator.count");
        // Without a pinned instance the family's counts still apply.
        a.instance_type = None;
        a.count = 2;
        assert_eq!(profile(&a).unwrap_err().field(), "spec.accelerator.count");
    }

    #[test]
    fn eks_label_schemes() {
        let mut a = acc(AcceleratorType::NvidiaL4, 1, Platform::Eks);
        a.spot = true;
        let p = profile(&a).unwrap();
        assert_eq!(p.node_selector[KARPENTER_GPU_NAME_LABEL], "l4");
        assert_eq!(p.node_selector[KARPENTER_CAPACITY_TYPE_LABEL], "spot");

        a.eks_node_labels = Some(EksNodeLabels::AutoMode);
        let p = profile(&a).unwrap();
        assert_eq!(p.node_selector[AUTO_MODE_GPU_NAME_LABEL], "l4");
        assert!(!p.node_selector.contains_key(KARPENTER_GPU_NAME_LABEL));
        assert_eq!(p.node_selector[KARPENTER_CAPACITY_TYPE_LABEL], "spot");

        a.eks_node_labels = Some(EksNodeLabels::InstanceType);
        a.count = 4;
        let p = profile(&a).unwrap();
        assert!(!p.node_selector.contains_key(KARPENTER_GPU_NAME_LABEL));
        assert!(!p.node_selector.contains_key(AUTO_MODE_GPU_NAME_LABEL));
        assert_eq!(p.node_selector[EKS_CAPACITY_TYPE_LABEL], "SPOT");
        let (key, types) = &p.required_node_labels[0];
        assert_eq!(key, INSTANCE_TYPE_LABEL);
        assert_eq!(types, &["g6.12xlarge", "g6.24xlarge", "g6.48xlarge"]);
    }

    #[test]
    fn a100_80gb_on_eks_never_matches_40gb_p4d_nodes() {
        for scheme in [EksNodeLabels::Karpenter, EksNodeLabels::AutoMode] {
            let mut a = acc(AcceleratorType::NvidiaA100_80gb, 8, Platform::Eks);
            a.eks_node_labels = Some(scheme);
            let p = profile(&a).unwrap();
            let family = match scheme {
                EksNodeLabels::Karpenter => KARPENTER_INSTANCE_FAMILY_LABEL,
                _ => AUTO_MODE_INSTANCE_FAMILY_LABEL,
            };
            assert_eq!(p.node_selector[family], "p4de", "{scheme:?}");
        }
        let mut a = acc(AcceleratorType::NvidiaA100_80gb, 8, Platform::Eks);
        a.eks_node_labels = Some(EksNodeLabels::InstanceType);
        let p = profile(&a).unwrap();
        assert_eq!(p.required_node_labels[0].1, ["p4de.24xlarge"]);
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
