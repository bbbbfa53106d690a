{{/* Names, labels and the pieces shared by the head and worker pod templates. */}}

{{- define "clipspot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Kept short: KubeRay appends "-raycluster-xxxxx" and service suffixes to this name. */}}
{{- define "clipspot.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "clipspot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clipspot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clipspot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "clipspot.labels" -}}
helm.sh/chart: {{ include "clipspot.chart" . }}
{{ include "clipspot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "clipspot.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Secret holding the bundled Redis password (chart-made or the user's). */}}
{{- define "clipspot.redisSecretName" -}}
{{- .Values.redis.existingSecret | default (printf "%s-redis" (include "clipspot.fullname" .)) }}
{{- end }}

{{/* Secret holding an external Redis URL (chart-made from redis.external.url, or the user's). */}}
{{- define "clipspot.redisUrlSecretName" -}}
{{- .Values.redis.external.existingSecret | default (printf "%s-redis-url" (include "clipspot.fullname" .)) }}
{{- end }}

{{/*
Bundled Redis password: the value given, else the one already in the cluster (so upgrades
do not rotate it under running replicas), else a new random one.
*/}}
{{- define "clipspot.redisPassword" -}}
{{- if .Values.redis.password }}
{{- .Values.redis.password }}
{{- else }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "clipspot.redisSecretName" .) }}
{{- if and $secret $secret.data (index $secret.data "redis-password") }}
{{- index $secret.data "redis-password" | b64dec }}
{{- else }}
{{- randAlphaNum 32 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment of every Ray container: Serve replicas inherit it from the raylet. */}}
{{- define "clipspot.rayEnv" -}}
{{- $root := .root -}}
- name: CLIPSPOT_WEIGHTS
  value: {{ $root.Values.model.weights | quote }}
- name: CLIPSPOT_DEVICE
  value: {{ .device | quote }}
# The root filesystem is read-only: caches (torch, onnxruntime, pip) go to the /tmp emptyDir.
- name: XDG_CACHE_HOME
  value: /tmp/cache
{{- if $root.Values.model.reader }}
- name: CLIPSPOT_READER
  value: {{ $root.Values.model.reader | quote }}
{{- end }}
- name: CLIPSPOT_TORCH_THREADS
  value: {{ $root.Values.model.torchThreads | quote }}
- name: OMP_NUM_THREADS
  value: {{ $root.Values.model.torchThreads | quote }}
{{- if $root.Values.redis.enabled }}
- name: CLIPSPOT_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "clipspot.redisSecretName" $root }}
      key: redis-password
- name: CLIPSPOT_REDIS_URL
  value: {{ printf "redis://:$(CLIPSPOT_REDIS_PASSWORD)@%s-redis:6379/%v" (include "clipspot.fullname" $root) $root.Values.redis.db | quote }}
{{- else }}
- name: CLIPSPOT_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "clipspot.redisUrlSecretName" $root }}
      key: {{ $root.Values.redis.external.existingSecretKey | default "redis-url" }}
{{- end }}
{{- end }}

{{/* Container ports of every Ray container; KubeRay's Serve Service picks up serve-*. */}}
{{- define "clipspot.rayPorts" -}}
- name: serve-grpc
  containerPort: {{ .Values.serve.grpcPort }}
  protocol: TCP
- name: serve
  containerPort: {{ .Values.serve.httpPort }}
  protocol: TCP
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end }}

{{/* Mounts of every Ray container (head and workers). */}}
{{- define "clipspot.rayMounts" -}}
- name: dshm
  mountPath: /dev/shm
- name: tmp
  mountPath: /tmp
{{- if and (not .Values.redis.enabled) .Values.redis.external.caSecret }}
- name: redis-ca
  mountPath: /etc/clipspot/redis-ca
  readOnly: true
{{- end }}
{{- if .Values.auth.tokenSecret }}
- name: clipspot-tokens
  mountPath: /etc/clipspot/tokens
  readOnly: true
{{- end }}
{{- end }}

{{- define "clipspot.podAnnotations" -}}
{{- if .Values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{- define "clipspot.volumes" -}}
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .shmSize }}
# The root filesystem is read-only (securityContext): Ray's session dir, logs and spilled
# objects, Python's and nginx's temp files live here. Disk-backed, no size limit (spilling).
- name: tmp
  emptyDir: {}
{{- if and (not .root.Values.redis.enabled) .root.Values.redis.external.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ .root.Values.redis.external.caSecret }}
    defaultMode: 0444
{{- end }}
{{- if .root.Values.auth.tokenSecret }}
- name: clipspot-tokens
  secret:
    secretName: {{ .root.Values.auth.tokenSecret }}
    defaultMode: 0440
{{- end }}
{{- if .root.Values.tls.enabled }}
- name: grpc-tls
  secret:
    secretName: {{ required "tls.secretName is required when tls.enabled" .root.Values.tls.secretName }}
    defaultMode: 0440
- name: grpc-tls-proxy
  configMap:
    name: {{ include "clipspot.fullname" .root }}-tls-proxy
{{- end }}
{{- end }}

{{/* nginx terminating TLS on tls.port and forwarding HTTP/2 to Serve's plaintext gRPC port. */}}
{{- define "clipspot.tlsSidecar" -}}
{{- if .Values.tls.enabled -}}
- name: grpc-tls-proxy
  image: {{ printf "%s:%s" .Values.tls.proxyImage.repository .Values.tls.proxyImage.tag }}
  imagePullPolicy: {{ .Values.tls.proxyImage.pullPolicy }}
  ports:
    - name: serve-grpc-tls
      containerPort: {{ .Values.tls.port }}
      protocol: TCP
  readinessProbe:
    tcpSocket:
      port: {{ .Values.tls.port }}
    periodSeconds: 10
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
    # nginx-unprivileged's user; group 100 (fsGroup) may read the key (mode 0440).
    runAsUser: 101
    runAsGroup: 100
  resources:
    {{- toYaml .Values.tls.resources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: grpc-tls
      mountPath: /etc/clipspot/tls
      readOnly: true
    - name: grpc-tls-proxy
      mountPath: /etc/nginx/nginx.conf
      subPath: nginx.conf
      readOnly: true
{{- end }}
{{- end }}
