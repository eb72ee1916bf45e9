{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "jobs-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release name, plus the chart name unless the release name already has it.
*/}}
{{- define "jobs-api.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "jobs-api.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. Call with (dict "ctx" $ "component" "api").
*/}}
{{- define "jobs-api.labels" -}}
helm.sh/chart: {{ include "jobs-api.chart" .ctx }}
{{ include "jobs-api.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: jobs-api
{{- end }}

{{/*
Selector labels. Call with (dict "ctx" $ "component" "api").
*/}}
{{- define "jobs-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobs-api.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Names of the objects, one place. */}}
{{- define "jobs-api.apiName" -}}{{ include "jobs-api.fullname" . | trunc 56 | trimSuffix "-" }}-api{{- end }}
{{- define "jobs-api.workerName" -}}{{ include "jobs-api.fullname" . | trunc 53 | trimSuffix "-" }}-worker{{- end }}
{{- define "jobs-api.redisName" -}}{{ include "jobs-api.fullname" . | trunc 54 | trimSuffix "-" }}-redis{{- end }}
{{- define "jobs-api.schedulesName" -}}{{ include "jobs-api.fullname" . | trunc 50 | trimSuffix "-" }}-schedules{{- end }}
{{- define "jobs-api.configName" -}}{{ include "jobs-api.fullname" . | trunc 53 | trimSuffix "-" }}-config{{- end }}
{{- define "jobs-api.apiKeysGeneratedName" -}}{{ include "jobs-api.fullname" . | trunc 54 | trimSuffix "-" }}-api-keys{{- end }}

{{/*
Secret holding the Redis password, and its key.
*/}}
{{- define "jobs-api.redisSecretName" -}}
{{- .Values.redis.auth.existingSecret | default (include "jobs-api.redisName" .) }}
{{- end }}
{{- define "jobs-api.redisSecretKey" -}}
{{- if .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecretPasswordKey }}{{ else }}redis-password{{ end }}
{{- end }}

{{/*
Secret holding the API keys file, and its key.
*/}}
{{- define "jobs-api.apiKeysSecretName" -}}
{{- .Values.apiKeys.existingSecret | default (include "jobs-api.apiKeysGeneratedName" .) }}
{{- end }}
{{- define "jobs-api.apiKeysSecretKey" -}}
{{- if .Values.apiKeys.existingSecret }}{{ .Values.apiKeys.existingSecretKey }}{{ else }}api-keys{{ end }}
{{- end }}

{{/*
Where Redis is: standalone (one in-chart pod), sentinel (in-chart primary + replicas + sentinels) or external.
redis.enabled=false is the older spelling of external.
*/}}
{{- define "jobs-api.redisMode" -}}
{{- if not .Values.redis.enabled }}external{{ else }}{{ .Values.redis.mode }}{{ end }}
{{- end }}
{{- define "jobs-api.redisSentinelName" -}}{{ include "jobs-api.fullname" . | trunc 51 | trimSuffix "-" }}-sentinel{{- end }}
{{- define "jobs-api.redisHaConfigName" -}}{{ include "jobs-api.fullname" . | trunc 48 | trimSuffix "-" }}-redis-config{{- end }}

{{/*
Sentinel addresses (host:port,...) the pods and KEDA ask for the primary: the in-chart sentinels (their
pods' stable names, fully qualified for the KEDA operator in another namespace) or redis.external.sentinels.
Empty when Redis is not behind Sentinel.
*/}}
{{- define "jobs-api.redisSentinels" -}}
{{- $mode := include "jobs-api.redisMode" . }}
{{- if eq $mode "sentinel" }}
{{- $name := include "jobs-api.redisSentinelName" . }}
{{- $out := list }}
{{- range $i := until (int .Values.redis.sentinel.sentinels) }}
{{- $out = append $out (printf "%s-%d.%s.%s.svc.%s:26379" $name $i $name $.Release.Namespace $.Values.clusterDomain) }}
{{- end }}
{{- join "," $out }}
{{- else if eq $mode "external" }}
{{- .Values.redis.external.sentinels }}
{{- end }}
{{- end }}

{{/*
Whether the sentinels take a password (the Redis one): always in-chart, redis.external.sentinelAuth outside.
*/}}
{{- define "jobs-api.redisSentinelAuth" -}}
{{- if and (include "jobs-api.redisSentinels" .) (or (eq (include "jobs-api.redisMode" .) "sentinel") .Values.redis.external.sentinelAuth) }}true{{ end }}
{{- end }}

{{/*
The Sentinel master name the pods and KEDA ask for.
*/}}
{{- define "jobs-api.redisSentinelMaster" -}}
{{- if eq (include "jobs-api.redisMode" .) "sentinel" }}{{ .Values.redis.sentinel.masterName }}{{ else }}{{ .Values.redis.external.masterName }}{{ end }}
{{- end }}

{{/*
The Redis URL the pods use when Redis is not behind Sentinel: the in-chart StatefulSet, or redis.external.url.
*/}}
{{- define "jobs-api.redisUrl" -}}
{{- if eq (include "jobs-api.redisMode" .) "standalone" }}
{{- printf "redis://%s:6379/0" (include "jobs-api.redisName" .) }}
{{- else }}
{{- required "redis.external.url (or redis.external.sentinels) is required when redis.mode=external" .Values.redis.external.url }}
{{- end }}
{{- end }}

{{/*
Whether the pods talk TLS to Redis: a rediss:// URL, or redis.external.tls behind external sentinels.
*/}}
{{- define "jobs-api.redisTls" -}}
{{- if include "jobs-api.redisSentinels" . }}{{ if and (eq (include "jobs-api.redisMode" .) "external") .Values.redis.external.tls }}true{{ end }}
{{- else if hasPrefix "rediss://" (include "jobs-api.redisUrl" .) }}true{{ end }}
{{- end }}

{{/*
host:port of Redis as seen from the KEDA operator (another namespace: fully qualified name).
*/}}
{{- define "jobs-api.redisAddress" -}}
{{- if eq (include "jobs-api.redisMode" .) "standalone" }}
{{- printf "%s.%s.svc.%s:6379" (include "jobs-api.redisName" .) .Release.Namespace .Values.clusterDomain }}
{{- else }}
{{- $u := urlParse (include "jobs-api.redisUrl" .) }}
{{- if contains ":" $u.host }}{{ $u.host }}{{ else }}{{ $u.host }}:6379{{ end }}
{{- end }}
{{- end }}

{{/*
Redis database index from the URL path (default 0).
*/}}
{{- define "jobs-api.redisDatabase" -}}
{{- if include "jobs-api.redisSentinels" . }}0{{ else }}
{{- $path := (urlParse (include "jobs-api.redisUrl" .)).path | trimPrefix "/" }}
{{- $path | default "0" }}
{{- end }}
{{- end }}

{{/*
Whether the pods get REDIS_PASSWORD from a Secret.
*/}}
{{- define "jobs-api.redisAuth" -}}
{{- if or (ne (include "jobs-api.redisMode" .) "external") .Values.redis.auth.enabled }}true{{ end }}
{{- end }}

{{/*
Image reference. Call with the image values map.
*/}}
{{- define "jobs-api.image" -}}
{{- printf "%s:%s" .repository (toString .tag) }}
{{- end }}

{{/*
Env vars both services read: Redis password, from the Secret.
*/}}
{{- define "jobs-api.redisPasswordEnv" -}}
{{- if include "jobs-api.redisAuth" . -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "jobs-api.redisSecretName" . }}
      key: {{ include "jobs-api.redisSecretKey" . }}
{{- if include "jobs-api.redisSentinelAuth" . }}
{{- /* the in-chart sentinels take the Redis password too (requirepass in sentinel.conf) */}}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "jobs-api.redisSecretName" . }}
      key: {{ include "jobs-api.redisSecretKey" . }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Pod annotations that roll the pods when the config or a chart-managed Secret changes.
*/}}
{{- define "jobs-api.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/redis-secret: {{ (printf "%s%s" (include (print .Template.BasePath "/secret-redis.yaml") .) (include "jobs-api.redisSecretName" .)) | sha256sum }}
checksum/api-keys-secret: {{ (printf "%s%s" (include (print .Template.BasePath "/secret-api-keys.yaml") .) (include "jobs-api.apiKeysSecretName" .)) | sha256sum }}
{{- end }}

{{/*
Spread the Redis or sentinel pods over nodes (redis.sentinel.antiAffinity: soft = preferred, hard = required).
Call with (dict "ctx" $ "component" "redis").
*/}}
{{- define "jobs-api.redisAntiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "jobs-api.selectorLabels" . | fromYaml)) }}
affinity:
  podAntiAffinity:
    {{- if eq .ctx.Values.redis.sentinel.antiAffinity "hard" }}
    requiredDuringSchedulingIgnoredDuringExecution:
      - {{- toYaml $term | nindent 8 }}
    {{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          {{- toYaml $term | nindent 10 }}
    {{- end }}
{{- end }}
