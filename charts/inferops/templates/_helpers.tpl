{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "inferops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, unless it already contains the chart name. */}}
{{- define "inferops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "inferops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "inferops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "inferops.labels" -}}
helm.sh/chart: {{ include "inferops.chart" . }}
{{ include "inferops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: inferops
{{- end }}

{{- define "inferops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inferops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator image; the tag defaults to the chart's appVersion. */}}
{{- define "inferops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Namespaces the operator watches in namespaced mode (the release namespace by default). */}}
{{- define "inferops.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces }}
{{- join "," .Values.operator.watchNamespaces }}
{{- else if .Values.rbac.namespaced }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* DCGM label names: "ns" and "pod" keys, from monitoring.gpuLabels. */}}
{{- define "inferops.gpuNsLabel" -}}
{{- if eq .Values.monitoring.gpuLabels "gke-managed" }}exported_namespace{{ else }}namespace{{ end }}
{{- end }}
{{- define "inferops.gpuPodLabel" -}}
{{- if eq .Values.monitoring.gpuLabels "gke-managed" }}exported_pod{{ else }}pod{{ end }}
{{- end }}

{{/*
Whether the cluster serves an API (group/version/Kind), from .Capabilities; always true with
monitoring.checkAPIs: false (offline `helm template` without --api-versions).
Usage: include "inferops.hasAPI" (dict "root" $ "gvk" "monitoring.coreos.com/v1/ServiceMonitor")
*/}}
{{- define "inferops.hasAPI" -}}
{{- if or (not .root.Values.monitoring.checkAPIs) (.root.Capabilities.APIVersions.Has .gvk) }}true{{ end }}
{{- end }}

{{/* The API that tells the chosen monitoring stack is installed. */}}
{{- define "inferops.stackGVK" -}}
{{- if eq .Values.monitoring.stack "gmp" }}monitoring.googleapis.com/v1/PodMonitoring{{ else }}monitoring.coreos.com/v1/ServiceMonitor{{ end }}
{{- end }}

{{/*
Whether a ConfigMap for a monitoring component (dashboards, prometheus-adapter,
kube-state-metrics) may be rendered into `namespace`: always into the release namespace;
into another namespace (e.g. kube-prometheus-stack's `monitoring`) only when the monitoring
stack's API is served, so a cluster without it does not fail on a missing namespace.
Usage: include "inferops.monitoringNamespaceOK" (dict "root" $ "namespace" "monitoring")
*/}}
{{- define "inferops.monitoringNamespaceOK" -}}
{{- $ns := default .root.Release.Namespace .namespace }}
{{- if or (eq $ns .root.Release.Namespace) (eq .root.Values.monitoring.stack "none") (include "inferops.hasAPI" (dict "root" .root "gvk" (include "inferops.stackGVK" .root))) }}true{{ end }}
{{- end }}

{{/* KEY=VALUE,KEY=VALUE of a map, sorted by key (INFEROPS_PODMONITOR_LABELS). */}}
{{- define "inferops.keyValues" -}}
{{- $out := list }}
{{- range $k, $v := . }}{{ $out = append $out (printf "%s=%s" $k $v) }}{{ end }}
{{- join "," $out }}
{{- end }}

{{/* Names of the pull secrets of sim and load pods (INFEROPS_IMAGE_PULL_SECRETS). */}}
{{- define "inferops.workloadPullSecrets" -}}
{{- if .Values.operator.workloadImagePullSecrets }}
{{- join "," .Values.operator.workloadImagePullSecrets }}
{{- else }}
{{- $out := list }}
{{- range .Values.imagePullSecrets }}{{ $out = append $out .name }}{{ end }}
{{- join "," $out }}
{{- end }}
{{- end }}
