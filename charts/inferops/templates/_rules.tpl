{{/*
What the controllers call, verb by verb, and nothing else: tests/charts/rbac_calls.yaml lists
every API call site of src/controller/ and tests/charts/test_rbac.py checks these rules
against it both ways. Owned objects are written with server-side apply (an HTTP PATCH that
also needs `create` when the object does not exist yet); the reflectors of the controllers
list and watch. No Secrets unless rbac.tokenSecretAccess (the engine pods read the Hugging
Face token through their own secretKeyRef).
*/}}
{{- define "inferops.rules" -}}
# Reconciled kinds: reflectors (list/watch), the benchmark target and baseline (get), a
# BenchmarkRun's finalizer and the scale fallback of scaling studies (patch).
- apiGroups: ["inferops.dev"]
  resources: ["inferenceservices", "benchmarkruns"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["inferops.dev"]
  resources: ["inferenceservices/status", "benchmarkruns/status"]
  verbs: ["patch"]
# ownerReferences with blockOwnerDeletion need update on the owner's finalizers
# (OwnerReferencesPermissionEnforcement admission).
- apiGroups: ["inferops.dev"]
  resources: ["inferenceservices/finalizers", "benchmarkruns/finalizers"]
  verbs: ["update"]
# Scaling studies set the target's replicas through the scale subresource.
- apiGroups: ["inferops.dev"]
  resources: ["inferenceservices/scale"]
  verbs: ["patch"]
# Engine objects: applied, watched, looked up by name (name conflicts, replica handover).
# Never deleted by the operator: owner references garbage-collect them with their owner.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch"]
# PDB and HPA are also removed when the spec no longer asks for them.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# BenchmarkRun plan and results ConfigMaps. The load pods' Role grants get/patch on their own
# results ConfigMap; RBAC lets the operator grant only what it holds itself.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Load Jobs; deleted after ttlSecondsAfterFinished.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# The load pods' ServiceAccount, Role and RoleBinding: applied only.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create", "patch"]
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
# The engines' scrape objects: PodMonitor (Prometheus Operator) and PodMonitoring (GKE
# Managed Prometheus); the one the stack does not use is only looked up and removed.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["monitoring.googleapis.com"]
  resources: ["podmonitorings"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
{{- if .Values.rbac.kedaScaledObjects }}
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
{{- end }}
