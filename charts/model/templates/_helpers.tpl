{{/*
Expand the name of the chart.
*/}}
{{- define "model.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name, truncated to 63 chars (the DNS label limit).
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "model.fullname" -}}
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

{{/*
Chart name and version as used by the chart label.
*/}}
{{- define "model.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "model.labels" -}}
helm.sh/chart: {{ include "model.chart" . }}
{{ include "model.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/component: model-server
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "model.selectorLabels" -}}
app.kubernetes.io/name: {{ include "model.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the `helm test` pod (the NetworkPolicy admits it; nothing selects it).
*/}}
{{- define "model.testLabels" -}}
helm.sh/chart: {{ include "model.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The name of the service account to use.
*/}}
{{- define "model.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "model.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from values: [registry/]repository:tag[@digest]. Call with
(dict "registry" .Values.image.registry "repository" ... "tag" ... ["digest" ...]).
*/}}
{{- define "model.imageRef" -}}
{{- if .registry }}
{{- printf "%s/%s:%s" (trimSuffix "/" .registry) .repository .tag }}
{{- else }}
{{- printf "%s:%s" .repository .tag }}
{{- end }}
{{- with .digest }}@{{ . }}{{ end }}
{{- end }}

{{/*
The model server image; its tag defaults to the chart's appVersion, pinned by digest when one is
given.
*/}}
{{- define "model.appImage" -}}
{{- include "model.imageRef" (dict "registry" .Values.image.registry "repository" .Values.image.repository "tag" (.Values.image.tag | default .Chart.AppVersion) "digest" .Values.image.digest) }}
{{- end }}

{{/*
The Nginx sidecar image, pinned by digest when one is given (by default: images/upstream/Dockerfile's).
*/}}
{{- define "model.nginxImage" -}}
{{- include "model.imageRef" (dict "registry" .Values.image.registry "repository" .Values.nginx.image.repository "tag" .Values.nginx.image.tag "digest" .Values.nginx.image.digest) }}
{{- end }}

{{/*
The git commit the pod reports: the value, else the model server image tag.
*/}}
{{- define "model.gitCommit" -}}
{{- .Values.model.gitCommit | default (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Names of the two ConfigMaps.
*/}}
{{- define "model.uwsgiConfigName" -}}
{{- printf "%s-uwsgi" (include "model.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "model.nginxConfigName" -}}
{{- printf "%s-nginx" (include "model.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The hardened container securityContext (Pod Security Standards "restricted", in full).
*/}}
{{- define "model.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}
