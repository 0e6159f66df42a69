{{/*
Names. Every namespaced object is named after the release ("fullname"); cluster-scoped
objects (ClusterRoles, ClusterRoleBindings, the admission policy) also carry the release
namespace, so two releases of the same name in different namespaces never collide.
*/}}

{{- define "oauth-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oauth-operator.fullname" -}}
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

{{/* Prefix of cluster-scoped object names: <release namespace>-<fullname>. */}}
{{- define "oauth-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "oauth-operator.fullname" .) | trunc 200 | trimSuffix "-" }}
{{- end }}

{{- define "oauth-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "oauth-operator.labels" -}}
helm.sh/chart: {{ include "oauth-operator.chart" . }}
{{ include "oauth-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: oauth-operator
{{- end }}

{{- define "oauth-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "oauth-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Per component: call with (dict "root" $ "component" "controller"). */}}
{{- define "oauth-operator.componentLabels" -}}
{{ include "oauth-operator.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "oauth-operator.componentSelectorLabels" -}}
{{ include "oauth-operator.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Object names of the two components. */}}
{{- define "oauth-operator.controllerName" -}}
{{- printf "%s-controller" (include "oauth-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oauth-operator.serverName" -}}
{{- printf "%s-server" (include "oauth-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "oauth-operator.controllerServiceAccountName" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (include "oauth-operator.controllerName" .) .Values.controller.serviceAccount.name }}
{{- else }}
{{- required "controller.serviceAccount.name is required when controller.serviceAccount.create=false (never the shared default ServiceAccount: RBAC and the secret guard apply to it)" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "oauth-operator.serverServiceAccountName" -}}
{{- if .Values.server.serviceAccount.create }}
{{- default (include "oauth-operator.serverName" .) .Values.server.serviceAccount.name }}
{{- else }}
{{- required "server.serviceAccount.name is required when server.serviceAccount.create=false (never the shared default ServiceAccount: RBAC and the secret guard apply to it)" .Values.server.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The signing-key Secret the controller creates and rotates and the server reads. */}}
{{- define "oauth-operator.signingKeySecret" -}}
{{- printf "%s-signing-keys" (include "oauth-operator.fullname" .) | trunc 253 }}
{{- end }}

{{/* The Secret of the upstream identity providers' client secrets, which the server reads. */}}
{{- define "oauth-operator.upstreamSecret" -}}
{{- default (printf "%s-upstream-secrets" (include "oauth-operator.fullname" .) | trunc 253) .Values.upstream.secretName }}
{{- end }}

{{/* The controller's leader-election Lease. */}}
{{- define "oauth-operator.leaseName" -}}
{{- include "oauth-operator.controllerName" . }}
{{- end }}

{{/* The image reference: a digest, when given, wins over the tag. */}}
{{- define "oauth-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/* The issuer, checked: required, absolute http(s) URL, no trailing slash. */}}
{{- define "oauth-operator.issuer" -}}
{{- $issuer := required "issuer is required: set --set issuer=https://<the token server's external URL> (the `iss` of every token; the token endpoint is <issuer>/token)" .Values.issuer }}
{{- if not (regexMatch "^https?://[^/?#\\s]+(/[^?#\\s]*)?$" $issuer) }}
{{- fail (printf "issuer %q must be an absolute http(s) URL without query or fragment, such as https://auth.example.com" $issuer) }}
{{- end }}
{{- if hasSuffix "/" $issuer }}
{{- fail (printf "issuer %q must not end with a slash: clients compare `iss` byte for byte" $issuer) }}
{{- end }}
{{- $issuer }}
{{- end }}

{{/* The watched namespaces, without duplicates, in the order given. */}}
{{- define "oauth-operator.watchNamespaces" -}}
{{- range $ns := uniq .Values.watchNamespaces }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" $ns) }}
{{- fail (printf "watchNamespaces: %q is not a namespace name" $ns) }}
{{- end }}
{{ $ns }}
{{- end }}
{{- end }}

{{/* Flags both components take. */}}
{{- define "oauth-operator.commonArgs" -}}
{{- range $ns := uniq .Values.watchNamespaces }}
- --namespace={{ $ns }}
{{- end }}
- --operator-namespace=$(POD_NAMESPACE)
- --signing-key-secret={{ include "oauth-operator.signingKeySecret" . }}
- --issuer={{ include "oauth-operator.issuer" . }}
- --log-format={{ .Values.logFormat }}
- --max-concurrent-hashes={{ .Values.maxConcurrentHashes }}
{{- range $issuer := uniq .Values.federation.issuers }}
- --federated-issuer={{ $issuer }}
{{- end }}
{{- with .Values.server.defaultAudience }}
- --default-audience={{ . }}
{{- end }}
- --audience-ownership={{ include "oauth-operator.audienceOwnership" . }}
{{- if .Values.tenancy.namespaceSelectors }}
- --namespace-selectors
{{- end }}
{{- end }}

{{/*
What the token server does with audiences no OAuthResource claims: the value when set;
otherwise Enforce for a new installation and Warn for an upgrade of one that predates the
setting (its server Deployment exists without the flag), keeping what an earlier release
of this chart chose. `helm template` cannot look at the cluster and renders Enforce: a
GitOps tool upgrading an installation must set the value (docs/multi-tenancy.md).
*/}}
{{- define "oauth-operator.audienceOwnership" -}}
{{- if .Values.tenancy.audienceOwnership -}}
{{ .Values.tenancy.audienceOwnership }}
{{- else -}}
{{- $existing := lookup "apps/v1" "Deployment" .Release.Namespace (include "oauth-operator.serverName" .) -}}
{{- if $existing -}}
{{- $found := "Warn" -}}
{{- range $c := $existing.spec.template.spec.containers -}}
{{- range $a := $c.args -}}
{{- if hasPrefix "--audience-ownership=" $a -}}
{{- $found = trimPrefix "--audience-ownership=" $a -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{ $found }}
{{- else -}}
Enforce
{{- end -}}
{{- end -}}
{{- end }}

{{/* Environment both components get. */}}
{{- define "oauth-operator.commonEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
{{- end }}

{{/* The restricted Pod Security profile, pod level. */}}
{{- define "oauth-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The restricted Pod Security profile, container level. */}}
{{- define "oauth-operator.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Scheduling for one component: the component's own settings, merged over (maps) or
replacing (lists, affinity) the chart-wide ones. Call with (dict "root" $ "c" .Values.controller "component" "controller").
*/}}
{{- define "oauth-operator.scheduling" -}}
{{- $root := .root }}
{{- $c := .c }}
{{- $nodeSelector := merge (deepCopy ($c.nodeSelector | default dict)) ($root.Values.nodeSelector | default dict) }}
{{- with $nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($c.tolerations | default $root.Values.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($c.affinity | default $root.Values.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
topologySpreadConstraints:
{{- with $c.topologySpreadConstraints }}
  {{- toYaml . | nindent 2 }}
{{- else }}
  # Default: spread replicas over nodes and zones when the scheduler can, never block.
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "oauth-operator.componentSelectorLabels" (dict "root" $root "component" .component) | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "oauth-operator.componentSelectorLabels" (dict "root" $root "component" .component) | nindent 8 }}
{{- end }}
{{- with ($c.priorityClassName | default $root.Values.priorityClassName) }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* Pod annotations for one component: chart-wide, then the component's own. */}}
{{- define "oauth-operator.podAnnotations" -}}
{{- $a := merge (deepCopy (.c.podAnnotations | default dict)) (.root.Values.podAnnotations | default dict) }}
{{- with $a }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{- define "oauth-operator.podLabels" -}}
{{- $l := merge (deepCopy (.c.podLabels | default dict)) (.root.Values.podLabels | default dict) }}
{{- with $l }}
{{- toYaml . }}
{{- end }}
{{- end }}

{{/* Fails on settings that cannot work together. */}}
{{- define "oauth-operator.validate" -}}
{{- $_ := include "oauth-operator.issuer" . }}
{{- $_ = include "oauth-operator.watchNamespaces" . }}
{{- if not (has .Values.logFormat (list "text" "json")) }}
{{- fail (printf "logFormat must be text or json, not %q" .Values.logFormat) }}
{{- end }}
{{- if not (has .Values.signing.algorithm (list "ES256" "EdDSA" "RS256")) }}
{{- fail (printf "signing.algorithm must be ES256, EdDSA or RS256, not %q" .Values.signing.algorithm) }}
{{- end }}
{{- $min := int .Values.tokenLifetime.min }}
{{- $max := int .Values.tokenLifetime.max }}
{{- if or (lt $min 60) (gt $max 3600) (gt $min $max) }}
{{- fail (printf "tokenLifetime must satisfy 60 <= min (%d) <= max (%d) <= 3600 (the CRD's bounds)" $min $max) }}
{{- end }}
{{- if eq (include "oauth-operator.controllerServiceAccountName" .) (include "oauth-operator.serverServiceAccountName" .) }}
{{- fail "the controller and the token server need ServiceAccounts of their own: their permissions differ" }}
{{- end }}
{{- if and (gt (int .Values.controller.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "controller.replicas > 1 needs leaderElection.enabled=true: replicas without a leader would all reconcile" }}
{{- end }}
{{- end }}
