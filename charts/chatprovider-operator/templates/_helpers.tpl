{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "chatprovider.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: the release name, unless it already contains the chart name. */}}
{{- define "chatprovider.fullname" -}}
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

{{- define "chatprovider.operatorName" -}}
{{- printf "%s" (include "chatprovider.fullname" .) }}
{{- end }}

{{- define "chatprovider.relayName" -}}
{{- printf "%s-relay" (include "chatprovider.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chatprovider.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "chatprovider.operatorName" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "chatprovider.relayServiceAccount" -}}
{{- if .Values.relay.serviceAccount.create }}
{{- default (include "chatprovider.relayName" .) .Values.relay.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.relay.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels ----------------------------------------------------------------------------------- */}}

{{- define "chatprovider.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "chatprovider.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chatprovider
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: include with (list $ "operator") or (list $ "relay"). */}}
{{- define "chatprovider.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "chatprovider.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "chatprovider.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "chatprovider.labels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Settings -------------------------------------------------------------------------------- */}}

{{- define "chatprovider.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Which ServiceAccounts need TokenReview + SubjectAccessReview (kubernetes auth). */}}
{{- define "chatprovider.operatorReviews" -}}
{{- if and (eq .Values.relay.mode "embedded") (eq .Values.relay.auth "kubernetes") }}true{{ end }}
{{- end }}
{{- define "chatprovider.relayReviews" -}}
{{- if and (eq .Values.relay.mode "separate") (eq .Values.relay.auth "kubernetes") }}true{{ end }}
{{- end }}

{{/* Fail early on combinations the schema cannot express. */}}
{{- define "chatprovider.validate" -}}
{{- if and .Values.rbac.namespaced (not .Values.watchNamespaces) }}
{{- fail "rbac.namespaced=true needs watchNamespaces: the Roles are created in those namespaces only" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (eq .Values.relay.mode "none") }}
{{- fail "serviceMonitor.enabled=true needs a relay (relay.mode embedded or separate): the metrics are the relay's" }}
{{- end }}
{{- end }}

{{/* The quota counters' Redis: quotas.redis.url, else the one the chart deploys
     (quotas.redis.deploy), else none (counters in memory). */}}
{{- define "chatprovider.redisName" -}}
{{- printf "%s-redis" (include "chatprovider.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chatprovider.quotaRedisUrl" -}}
{{- if .Values.quotas.redis.url }}
{{- .Values.quotas.redis.url }}
{{- else if .Values.quotas.redis.deploy }}
{{- printf "redis://%s.%s.svc:%d/0" (include "chatprovider.redisName" .) .Release.Namespace (int .Values.quotas.redis.server.port) }}
{{- end }}
{{- end }}

{{/* Environment both Deployments set besides their settings (templates/_settings.tpl). */}}
{{- define "chatprovider.podEnv" -}}
# kopf's identity and the Lease holder's name; without POD_ID kopf asks getpass.getuser(),
# which needs a passwd entry for the uid.
- name: POD_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
# The Lease lives in the release's namespace.
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- with .Values.quotas.redis.passwordSecret }}
{{- if .name }}
# The quota counters' Redis password, from a Secret (never a value in the chart).
- name: CHATPROVIDER_QUOTA_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end }}

{{/* RBAC rules ------------------------------------------------------------------------------ */}}

{{/* The operator: read providers, write their status only, post Events, read referenced
     Secrets and ConfigMaps (one object at a time: GET, or LIST/WATCH with a name selector). */}}
{{- define "chatprovider.operatorRules" -}}
- apiGroups: ["ai.chatprovider.dev"]
  resources: ["chatproviders"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["ai.chatprovider.dev"]
  resources: ["chatproviders/status"]
  verbs: ["patch"]
- apiGroups: ["ai.chatprovider.dev"]
  resources: ["chatquotas"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["ai.chatprovider.dev"]
  resources: ["chatquotas/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if eq .Values.relay.mode "embedded" }}
{{ include "chatprovider.passiveHealthRules" . }}
{{- end }}
{{ include "chatprovider.referencedObjectRules" . }}
{{ include "chatprovider.chatModelRules" . }}
- apiGroups: ["ai.chatprovider.dev"]
  resources: ["chatmodels/status"]
  verbs: ["patch"]
{{- end }}

{{/* The standalone relay: read providers, the objects they reference and the quotas it
     enforces; passive health (the refresh annotation, Events). */}}
{{- define "chatprovider.relayRules" -}}
- apiGroups: ["ai.chatprovider.dev"]
  resources: ["chatproviders", "chatquotas"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{ include "chatprovider.passiveHealthRules" . }}
{{ include "chatprovider.referencedObjectRules" . }}
{{ include "chatprovider.chatModelRules" . }}
{{- end }}

{{/* Virtual models (docs/relay.md): both read ChatModels; the operator also writes their
     status (chatmodels/status: patch, in operatorRules). */}}
{{- define "chatprovider.chatModelRules" -}}
- apiGroups: ["ai.chatprovider.dev"]
  resources: ["chatmodels"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* Passive health (docs/relay.md): a relay that takes a provider out of routing asks the
     operator to re-check it by changing the refresh annotation, a merge patch of
     metadata.annotations only; the admission policy lets the relay's account change nothing
     else (templates/admission-policy.yaml). */}}
{{- define "chatprovider.passiveHealthRules" -}}
- apiGroups: ["ai.chatprovider.dev"]
  resources: ["chatproviders"]
  verbs: ["patch"]
{{- end }}

{{- define "chatprovider.referencedObjectRules" -}}
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get", "list", "watch"]
{{- with .Values.rbac.resourceNames }}
  resourceNames: {{ toJson . }}
{{- end }}
{{- end }}

{{/* kopf's observers: CRDs, to find (and follow) chatproviders; with namespaces listed,
     namespaces too (without, kopf retries listing them for minutes before it starts). */}}
{{- define "chatprovider.discoveryRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}
