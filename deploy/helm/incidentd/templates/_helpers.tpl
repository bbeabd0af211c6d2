{{/*
Chart name, truncated to 63 characters (a DNS label).
*/}}
{{- define "incidentd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: <release>-<chart>, or the release name when it already contains the chart
name. Truncated to 56 characters so that the "-worker" suffix still fits in 63.
*/}}
{{- define "incidentd.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "incidentd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels shared by every incidentd object of the release.
*/}}
{{- define "incidentd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "incidentd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "incidentd.labels" -}}
helm.sh/chart: {{ include "incidentd.chart" . }}
{{ include "incidentd.selectorLabels" . }}
app.kubernetes.io/version: {{ include "incidentd.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: incidentd
{{- end }}

{{/*
The components this release runs: "server" (both roles in one Deployment), or "api" and
"worker" when roles.split is true. Rendered as a JSON list.
*/}}
{{- define "incidentd.components" -}}
{{- if .Values.roles.split }}["api","worker"]{{ else }}["server"]{{ end }}
{{- end }}

{{/*
The component that serves REST and gRPC (behind the Service, scaled by the HPA).
*/}}
{{- define "incidentd.apiComponent" -}}
{{- if .Values.roles.split }}api{{ else }}server{{ end }}
{{- end }}

{{/*
Per-component helpers take (dict "root" $ "component" "server|api|worker").
*/}}
{{- define "incidentd.componentFullname" -}}
{{- if eq .component "server" }}
{{- include "incidentd.fullname" .root }}
{{- else }}
{{- printf "%s-%s" (include "incidentd.fullname" .root) .component }}
{{- end }}
{{- end }}

{{- define "incidentd.componentSelectorLabels" -}}
{{ include "incidentd.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "incidentd.componentLabels" -}}
{{ include "incidentd.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
INCIDENTD_ROLES of a component.
*/}}
{{- define "incidentd.componentRoles" -}}
{{- if eq .component "server" }}api,worker{{ else }}{{ .component }}{{ end }}
{{- end }}

{{/*
Image reference.
*/}}
{{- define "incidentd.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "incidentd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "incidentd.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "incidentd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "incidentd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Secret names. The database Secret: database.existingSecret, else <fullname> (made by
createSecret, or by you). The admin token and SMTP Secrets: their own existingSecret, else
<fullname> when createSecret is on, else the database Secret.
*/}}
{{- define "incidentd.databaseSecretName" -}}
{{- default (include "incidentd.fullname" .) .Values.database.existingSecret }}
{{- end }}

{{- define "incidentd.optionalSecretFallback" -}}
{{- if .Values.createSecret.enabled }}
{{- include "incidentd.fullname" . }}
{{- else }}
{{- include "incidentd.databaseSecretName" . }}
{{- end }}
{{- end }}

{{- define "incidentd.adminTokenSecretName" -}}
{{- default (include "incidentd.optionalSecretFallback" .) .Values.adminToken.existingSecret }}
{{- end }}

{{- define "incidentd.smtpSecretName" -}}
{{- default (include "incidentd.optionalSecretFallback" .) .Values.smtp.existingSecret }}
{{- end }}

{{/*
The Secret holding INCIDENTD_SECRET_KEY: secretKey.existingSecret, else the one the chart
generates (<fullname>-secret-key).
*/}}
{{- define "incidentd.secretKeySecretName" -}}
{{- default (printf "%s-secret-key" (include "incidentd.fullname" .)) .Values.secretKey.existingSecret }}
{{- end }}

{{/*
Environment variables read from Secrets (database URL and secret key required; admin token
and SMTP URL optional keys).
*/}}
{{- define "incidentd.secretEnv" -}}
- name: INCIDENTD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "incidentd.databaseSecretName" . }}
      key: {{ .Values.database.urlKey }}
- name: INCIDENTD_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "incidentd.adminTokenSecretName" . }}
      key: {{ .Values.adminToken.key }}
      optional: true
- name: INCIDENTD_SMTP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "incidentd.smtpSecretName" . }}
      key: {{ .Values.smtp.urlKey }}
      optional: true
- name: INCIDENTD_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "incidentd.secretKeySecretName" . }}
      key: {{ .Values.secretKey.key }}
{{- end }}

{{/*
terminationGracePeriodSeconds: preStop sleep + drain delay + shutdown timeout + margin,
or the explicit value, which must exceed the first three.
*/}}
{{- define "incidentd.terminationGracePeriodSeconds" -}}
{{- $s := .Values.shutdown }}
{{- $needed := add (int $s.preStopSleepSeconds) (int $s.drainDelaySeconds) (int $s.timeoutSeconds) }}
{{- if not (kindIs "invalid" $s.terminationGracePeriodSeconds) }}
{{- if le (int $s.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainDelaySeconds + timeoutSeconds (%d)" (int $s.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- int $s.terminationGracePeriodSeconds }}
{{- else }}
{{- add $needed (int $s.marginSeconds) }}
{{- end }}
{{- end }}

{{/*
Values checks shared by several templates.
*/}}
{{- define "incidentd.validate" -}}
{{- if and .Values.podDisruptionBudget.enabled (kindIs "invalid" .Values.podDisruptionBudget.minAvailable) (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (kindIs "invalid" .Values.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" .Values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling: set targetCPUUtilizationPercentage and/or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and .Values.metrics.port (or (eq (int .Values.metrics.port) (int .Values.containerPorts.http)) (eq (int .Values.metrics.port) (int .Values.containerPorts.grpc))) }}
{{- fail "metrics.port must differ from containerPorts.http and containerPorts.grpc" }}
{{- end }}
{{- end }}
