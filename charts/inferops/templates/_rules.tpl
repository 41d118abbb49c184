{{/*
What the controllers read and write, and nothing else (no Secrets unless
rbac.tokenSecretAccess: the engine pods read the Hugging Face token Secret themselves through
a secretKeyRef). Owned objects are applied with
server-side apply (create + patch) and removed when a feature is turned off (delete).
*/}}
{{- define "inferops.rules" -}}
- apiGroups: ["inferops.dev"]
  resources: ["inferenceservices", "benchmarkruns"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["inferops.dev"]
  resources: ["inferenceservices/status", "benchmarkruns/status"]
  verbs: ["get", "patch", "update"]
# ownerReferences with blockOwnerDeletion need update on the owner's finalizers.
- apiGroups: ["inferops.dev"]
  resources: ["inferenceservices/finalizers", "benchmarkruns/finalizers"]
  verbs: ["update"]
# Scaling studies set the target's replicas through the scale subresource.
- apiGroups: ["inferops.dev"]
  resources: ["inferenceservices/scale"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "persistentvolumeclaims", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Plan and results ConfigMaps of BenchmarkRuns. The load pods' Role grants get/patch on their
# own results ConfigMap; RBAC lets the operator grant only what it holds itself.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.rbac.tokenSecretAccess }}
# Opt-in (rbac.tokenSecretAccess): check that spec.model.tokenSecretRef exists.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- if .Values.rbac.podMonitors }}
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- if .Values.rbac.kedaScaledObjects }}
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}
{{- end }}
