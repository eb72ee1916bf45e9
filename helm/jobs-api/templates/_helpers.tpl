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
Worker pools, each completed from the worker.* and autoscaling.* values it leaves out, as a YAML list
(templates read it with fromYamlArray). The pool named `default` keeps the names a single worker had
(<fullname>-worker, component `worker`), so an upgrade from a chart without pools changes no selector.
*/}}
{{- define "jobs-api.workerPools" -}}
{{- $w := .Values.worker }}
{{- $a := .Values.autoscaling }}
{{- $pools := list }}
{{- $seen := dict }}
{{- range $pool := .Values.workerPools }}
{{- if hasKey $seen $pool.name }}
{{- fail (printf "workerPools: the pool name %q is used twice" $pool.name) }}
{{- end }}
{{- $_ := set $seen $pool.name true }}
{{- $isDefault := eq $pool.name "default" }}
{{- $name := include "jobs-api.workerName" $ }}
{{- if not $isDefault }}
{{- $name = printf "%s-worker-%s" (include "jobs-api.fullname" $ | trunc (int (sub 52 (len $pool.name))) | trimSuffix "-") $pool.name }}
{{- end }}
{{- $mode := $pool.mode | default "deployment" }}
{{- if and (eq $mode "job") (not $a.enabled) }}
{{- fail (printf "workerPools %s: mode job is a KEDA ScaledJob and needs autoscaling.enabled" $pool.name) }}
{{- end }}
{{- /* a job pool keeps no idle pods unless asked: a --once pod waits for one job only */}}
{{- $min := ternary $pool.minReplicaCount (ternary 0 $a.minReplicaCount (eq $mode "job")) (hasKey $pool "minReplicaCount") }}
{{- $max := ternary $pool.maxReplicaCount $a.maxReplicaCount (hasKey $pool "maxReplicaCount") }}
{{- if gt (int $min) (int $max) }}
{{- fail (printf "workerPools %s: minReplicaCount must not exceed maxReplicaCount" $pool.name) }}
{{- end }}
{{- $env := merge (deepCopy ($pool.env | default dict)) ($w.extraEnv | default dict) }}
{{- $p := dict
  "name" $pool.name
  "fullName" $name
  "component" (ternary "worker" (printf "worker-%s" $pool.name) $isDefault)
  "mode" $mode
  "queues" ($pool.queues | default (list))
  "concurrency" ($pool.concurrency | default $w.concurrency)
  "taskModules" (ternary $pool.taskModules $w.taskModules (hasKey $pool "taskModules"))
  "image" (merge (deepCopy ($pool.image | default dict)) $w.image)
  "resources" ($pool.resources | default $w.resources)
  "nodeSelector" ($pool.nodeSelector | default $w.nodeSelector)
  "tolerations" ($pool.tolerations | default $w.tolerations)
  "affinity" ($pool.affinity | default $w.affinity)
  "podAnnotations" ($pool.podAnnotations | default $w.podAnnotations)
  "env" $env
  "replicaCount" (ternary $pool.replicaCount $w.replicaCount (hasKey $pool "replicaCount"))
  "minReplicaCount" $min
  "maxReplicaCount" $max }}
{{- $pools = append $pools $p }}
{{- end }}
{{- toYaml $pools }}
{{- end }}

{{/*
Names of every waiting list and the leases zset of a pool's queues, as jobs_core.keys.Keys computes
them (DESIGN-queues.md): per queue q, `hotqueue:q` for the default priority 5 and `hotqueue:q:p<p>` for
the others, highest priority first, then `<prefix>:q:leases` (one member per running job: KEDA's redis
scaler runs TYPE, then LLEN / ZCARD). Delayed and paused jobs are elsewhere, so KEDA never counts them. Call with (dict "ctx" $ "pool" $p); returns a YAML list of [trigger name, list].
*/}}
{{- define "jobs-api.poolLists" -}}
{{- $queues := .pool.queues | default (list .ctx.Values.config.queue) }}
{{- $out := list }}
{{- range $i, $q := $queues }}
{{- range $priority := list 9 8 7 6 5 4 3 2 1 0 }}
{{- $list := ternary (printf "hotqueue:%s" $q) (printf "hotqueue:%s:p%d" $q $priority) (eq $priority 5) }}
{{- $out = append $out (list (printf "q%d_waiting_p%d" $i $priority) $list) }}
{{- end }}
{{- $out = append $out (list (printf "q%d_running" $i) (printf "%s:%s:leases" $.ctx.Values.config.keyPrefix $q)) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
Whether a pool's workers patch their pod's deletion cost (scale-in order of a Deployment; a ScaledJob's
pods are never scaled in). Call with (dict "ctx" $ "pool" $p); "true" or "".
*/}}
{{- define "jobs-api.patchesPodCost" -}}
{{- if and .ctx.Values.worker.podDeletionCost (ne .pool.mode "job") }}true{{ end }}
{{- end }}

{{/*
The worker container of a pool (Deployment and ScaledJob alike). Call with (dict "ctx" $ "pool" $p).
*/}}
{{- define "jobs-api.workerContainer" -}}
{{- $ := .ctx }}
{{- $p := .pool -}}
- name: worker
  image: {{ include "jobs-api.image" $p.image }}
  imagePullPolicy: {{ $p.image.pullPolicy }}
  {{- if eq $p.mode "job" }}
  # one job per pod: claim one, run it, exit (KEDA starts a pod per waiting job)
  args: ["--once"]
  {{- end }}
  envFrom:
    - configMapRef:
        name: {{ include "jobs-api.configName" $ }}
    {{- with $.Values.worker.envFrom }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- with $p.queues }}
    - name: JOBS_QUEUES
      value: {{ join "," . | quote }}
    {{- end }}
    - name: JOBS_CONCURRENCY
      value: {{ $p.concurrency | quote }}
    - name: JOBS_DRAIN_SECONDS
      value: {{ $.Values.worker.drainSeconds | quote }}
    {{- with $p.taskModules }}
    - name: JOBS_TASK_MODULES
      value: {{ . | quote }}
    {{- end }}
    {{- if $.Values.worker.metricsPort }}
    - name: JOBS_WORKER_METRICS_PORT
      value: {{ $.Values.worker.metricsPort | quote }}
    {{- end }}
    {{- include "jobs-api.redisPasswordEnv" $ | nindent 4 }}
    {{- if include "jobs-api.patchesPodCost" . }}
    # the worker patches this pod's deletion cost (unset = it does not try)
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- end }}
    {{- range $name, $value := $p.env }}
    - name: {{ $name }}
      value: {{ $value | toString | quote }}
    {{- end }}
  {{- if $.Values.worker.metricsPort }}
  ports:
    - name: metrics
      containerPort: {{ $.Values.worker.metricsPort }}
  {{- end }}
  # `jobs-worker check` exits 0 while the worker loop keeps touching its health file.
  startupProbe:
    exec:
      command: ["jobs-worker", "check"]
    periodSeconds: 2
    timeoutSeconds: 5
    failureThreshold: 30
  {{- if ne $p.mode "job" }}
  readinessProbe:
    exec:
      command: ["jobs-worker", "check"]
    periodSeconds: 10
    timeoutSeconds: 5
  {{- end }}
  livenessProbe:
    exec:
      command: ["jobs-worker", "check"]
    periodSeconds: 15
    timeoutSeconds: 5
    failureThreshold: 4
  resources:
    {{- toYaml $p.resources | nindent 4 }}
  securityContext:
    {{- toYaml $.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- with $.Values.worker.volumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The pod spec of a pool's workers, after `spec:`. Call with (dict "ctx" $ "pool" $p).
*/}}
{{- define "jobs-api.workerPodSpec" -}}
{{- $ := .ctx }}
{{- $p := .pool -}}
serviceAccountName: {{ include "jobs-api.workerName" $ }}
{{- if not (include "jobs-api.patchesPodCost" .) }}
# nothing to call the Kubernetes API for: no token in pods that run task code
automountServiceAccountToken: false
{{- end }}
terminationGracePeriodSeconds: {{ $.Values.worker.terminationGracePeriodSeconds }}
{{- if eq $p.mode "job" }}
restartPolicy: Never
{{- end }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
containers:
  {{- include "jobs-api.workerContainer" . | nindent 2 }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
  {{- with $.Values.worker.volumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $p.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $p.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $p.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
KEDA redis triggers of a pool: one per waiting list and leases zset (running jobs) of its queues.
Call with (dict "ctx" $ "pool" $p).
*/}}
{{- define "jobs-api.poolTriggers" -}}
{{- $ := .ctx }}
{{- $p := .pool }}
{{- $tls := include "jobs-api.redisTls" $ }}
{{- $sentinels := include "jobs-api.redisSentinels" $ }}
{{- /* a ScaledJob pod runs one job; a Deployment pod runs `concurrency` */}}
{{- $perPod := ternary 1 $p.concurrency (eq $p.mode "job") }}
{{- range $trigger := include "jobs-api.poolLists" . | fromYamlArray }}
{{- if $sentinels }}
# behind Sentinel: KEDA asks the sentinels for the primary, as the pods do
- type: redis-sentinel
  name: {{ index $trigger 0 }}
  metadata:
    addresses: {{ $sentinels | quote }}
    sentinelMaster: {{ include "jobs-api.redisSentinelMaster" $ | quote }}
{{- else }}
- type: redis
  name: {{ index $trigger 0 }}
  metadata:
    address: {{ include "jobs-api.redisAddress" $ | quote }}
{{- end }}
    databaseIndex: {{ include "jobs-api.redisDatabase" $ | quote }}
    listName: {{ index $trigger 1 | quote }}
    listLength: {{ $perPod | quote }}
    {{- if $tls }}
    enableTLS: "true"
    {{- end }}
  {{- if include "jobs-api.redisAuth" $ }}
  authenticationRef:
    name: {{ include "jobs-api.workerName" $ }}
  {{- end }}
{{- end }}
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
