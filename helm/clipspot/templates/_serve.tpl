{{/*
The Ray Serve config embedded as RayService.spec.serveConfigV2: the same shape as
deploy/serve.yaml (validated by tests with ray.serve.schema.ServeDeploySchema).
Changing only this part is applied in place by KubeRay: replica counts and autoscaling scale
in place, user_config (batch size) reconfigures live replicas, anything else rolls them.
*/}}

{{/* The drain grace in whole seconds (Serve's graceful_shutdown_timeout_s, the pods' termination grace). */}}
{{- define "clipspot.drainGrace" -}}
{{- $grace := required "serve.drainGraceS is required (seconds a stopping replica may drain)" .Values.serve.drainGraceS -}}
{{- int (ceil (float64 $grace)) -}}
{{- end }}

{{/* One Serve deployment override. Args: d (values entry), name, gpus, root. */}}
{{- define "clipspot.serveDeployment" -}}
- name: {{ .name }}
  max_ongoing_requests: {{ .d.maxOngoingRequests }}
  graceful_shutdown_timeout_s: {{ include "clipspot.drainGrace" .root }}
  {{- if .d.autoscaling }}
  autoscaling_config:
    {{- /* camelCase values -> AutoscalingConfig's snake_case, so any of its fields can be set. */}}
    {{- range $key, $value := .d.autoscaling }}
    {{ snakecase $key }}: {{ toJson $value }}
    {{- end }}
  {{- else }}
  num_replicas: {{ required (printf "serve deployment %s needs autoscaling or numReplicas" .name) .d.numReplicas }}
  {{- end }}
  ray_actor_options:
    num_cpus: {{ .d.numCpus }}
    num_gpus: {{ .gpus }}
  {{- with .d.batch }}
  user_config:
    max_batch_size: {{ .maxBatchSize }}
  {{- end }}
{{- end }}

{{- define "clipspot.serveConfig" -}}
{{- $serve := .Values.serve -}}
{{- $spotter := $serve.textSpotter -}}
{{- if lt (float64 $spotter.maxOngoingRequests) (float64 $spotter.batch.maxBatchSize) }}
{{- fail "serve.textSpotter.maxOngoingRequests must be >= serve.textSpotter.batch.maxBatchSize (batches form from the requests in flight on a replica)" }}
{{- end -}}
proxy_location: {{ $serve.proxyLocation }}
http_options:
  host: 0.0.0.0
  port: {{ $serve.httpPort }}
grpc_options:
  port: {{ $serve.grpcPort }}
  enable_reflection: {{ $serve.enableReflection }}
  {{- if not (kindIs "invalid" $serve.requestTimeoutS) }}
  request_timeout_s: {{ $serve.requestTimeoutS }}
  {{- end }}
  grpc_servicer_functions:
    {{- toYaml $serve.grpcServicerFunctions | nindent 4 }}
applications:
  - name: {{ $serve.appName }}
    route_prefix: {{ $serve.routePrefix }}
    import_path: {{ $serve.importPath }}
    {{- $args := deepCopy (default (dict) $serve.args) }}
    {{- if .Values.auth.tokenSecret }}
    {{- $_ := set $args "token_file" (printf "/etc/clipspot/tokens/%s" .Values.auth.tokenSecretKey) }}
    {{- end }}
    {{- with $args }}
    args:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    deployments:
      {{- include "clipspot.serveDeployment" (dict "name" "StreamIngress" "d" $serve.streamIngress "gpus" 0 "root" .) | nindent 6 }}
      {{- include "clipspot.serveDeployment" (dict "name" "TextSpotter" "d" $spotter "gpus" (ternary $spotter.numGpus 0 .Values.gpu.enabled) "root" .) | nindent 6 }}
{{- end }}
