{{/* The chart name, possibly overridden. */}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The base name of every object: the release name, plus the chart name unless the release already has it. */}}
{{- define "portcullis.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component (proxy, redis, node). */}}
{{- define "portcullis.selector" -}}
app.kubernetes.io/name: {{ include "portcullis.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "portcullis.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Whether the proxy uses Redis (bundled or external). */}}
{{- define "portcullis.redisEnabled" -}}
{{- if or .Values.redis.bundled.enabled .Values.redis.external.addrs -}}true{{- end -}}
{{- end -}}

{{/* The TLS Secret the proxy serves with (and nodes take ca.crt from). */}}
{{- define "portcullis.tlsSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "portcullis.fullname" .) -}}
{{- else -}}
{{- required "tls.enabled needs tls.secretName or tls.certManager.enabled" .Values.tls.secretName -}}
{{- end -}}
{{- end -}}

{{/* A Secret key for an upstream's name (registry hosts may hold ':'). */}}
{{- define "portcullis.upstreamKey" -}}
{{- . | replace ":" "_" -}}
{{- end -}}

{{/* The environment variable Kubernetes sets for the Service's address: <SERVICE>_SERVICE_HOST. */}}
{{- define "portcullis.serviceHostEnv" -}}
{{- printf "%s_SERVICE_HOST" (include "portcullis.fullname" . | upper | replace "-" "_") -}}
{{- end -}}

{{/* The URL nodes pull through. */}}
{{- define "portcullis.nodeURL" -}}
{{- if .Values.nodeConfig.portcullisURL -}}
{{- .Values.nodeConfig.portcullisURL -}}
{{- else -}}
{{- $scheme := ternary "https" "http" .Values.tls.enabled -}}
{{- $host := default (printf "$(%s)" (include "portcullis.serviceHostEnv" .)) .Values.service.clusterIP -}}
{{- printf "%s://%s:%d" $scheme $host (int .Values.service.port) -}}
{{- end -}}
{{- end -}}

{{/* A secret value kept across upgrades: the existing Secret's key if there is one, else a new random one. */}}
{{- define "portcullis.keepOrGenerate" -}}
{{- $existing := lookup "v1" "Secret" .namespace .name -}}
{{- if and $existing (index ($existing.data | default dict) .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- randAlphaNum 48 | b64enc | b64enc -}}
{{- end -}}
{{- end -}}

{{/* Whole seconds of a duration value such as "10s", "2m" or "1h" (what the shutdown settings use). */}}
{{- define "portcullis.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "ms" $d -}}0
{{- else if hasSuffix "s" $d -}}{{ trimSuffix "s" $d | int }}
{{- else if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | int) 60 }}
{{- else if hasSuffix "h" $d -}}{{ mul (trimSuffix "h" $d | int) 3600 }}
{{- else -}}{{ fail (printf "duration %q: want a number of s, m or h" $d) }}
{{- end -}}
{{- end -}}
