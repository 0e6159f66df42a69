{{/*
RBAC rules, least privilege. "watch" rules apply in every watched namespace (cluster-wide
when watchNamespaces is empty); "operator" rules only in the release namespace.
Secrets cannot be narrowed by label in RBAC: the ValidatingAdmissionPolicy in
secret-guard.yaml confines writes to Secrets labelled app.kubernetes.io/managed-by=oauth-operator.
*/}}

{{- define "oauth-operator.controllerWatchRules" -}}
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthclients", "initialaccesstokens"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthclients/status", "initialaccesstokens/status"]
  verbs: ["get", "patch", "update"]
# OAuthResources: who holds each audience is reported in their status (replaced onto the
# version read), and each client's status says what the resources grant it.
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthresources"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthresources/status"]
  verbs: ["update"]
# The Secrets and verifiers it creates name their OAuthClient or InitialAccessToken as
# controller owner (blockOwnerDeletion), which clusters running the
# OwnerReferencesPermissionEnforcement admission plugin (OpenShift) check against this.
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthclients/finalizers", "initialaccesstokens/finalizers"]
  verbs: ["update"]
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthclientverifiers", "initialaccesstokenverifiers"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Watches only Secrets labelled app.kubernetes.io/managed-by=oauth-operator and reads
# brought-your-own Secrets by name; RBAC cannot express either restriction.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
# Whether each ServiceAccount an OAuthClient names exists (its status says), by name.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{- define "oauth-operator.controllerOperatorRules" -}}
# Garbage collection of the token server's expired records.
- apiGroups: ["oauth-operator.dev"]
  resources: ["revokedtokens", "oauthgrants"]
  verbs: ["get", "list", "watch", "delete"]
# The signing-key Secret, by name. `create` cannot be limited by name (the name is not
# known to RBAC before the object exists), so it is a rule of its own; the secret guard
# still only admits labelled Secrets.
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ include "oauth-operator.signingKeySecret" . | quote }}]
  verbs: ["get", "list", "watch", "update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
{{- if .Values.leaderElection.enabled }}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: [{{ include "oauth-operator.leaseName" . | quote }}]
  verbs: ["get", "update", "patch"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
{{- end }}
{{- end }}

{{- define "oauth-operator.serverWatchRules" -}}
# The read path: the index is fed by these watches (OAuthResources: who may have a token
# for which audience, decided per request from the index).
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthclientverifiers", "initialaccesstokenverifiers", "oauthresources"]
  verbs: ["list", "watch"]
# ServiceAccount tokens as client assertions: one is accepted only while its ServiceAccount
# exists with the UID it names. The issuer's keys (/openid/v1/jwks) are readable by every
# ServiceAccount through the cluster's default system:service-account-issuer-discovery role.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["list", "watch"]
# Dynamic client registration (RFC 7591/7592).
- apiGroups: ["oauth-operator.dev"]
  resources: ["initialaccesstokens"]
  verbs: ["get"]
- apiGroups: ["oauth-operator.dev"]
  resources: ["initialaccesstokens/status"]
  verbs: ["update"]
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthclients"]
  verbs: ["get", "create", "patch", "delete"]
# The registration Secret names its OAuthClient as controller owner (see the controller).
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthclients/finalizers"]
  verbs: ["update"]
# The Secret of hashes of a registered client: create only, never read.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
{{- end }}

{{- define "oauth-operator.serverOperatorRules" -}}
- apiGroups: ["oauth-operator.dev"]
  resources: ["revokedtokens"]
  verbs: ["list", "watch", "create"]
# The built-in users and the upstream identity providers, read only: the server never
# writes them.
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthusers", "oauthupstreams"]
  verbs: ["list", "watch"]
# A redeemed authorization code is created (a second create of the same name is how a
# reused code is caught); a refresh reads its grant and replaces it with the
# resourceVersion read. Never listed, watched or deleted.
- apiGroups: ["oauth-operator.dev"]
  resources: ["oauthgrants"]
  verbs: ["create", "get", "update"]
# Only the signing-key Secret (watched with fieldSelector metadata.name=<it>).
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ include "oauth-operator.signingKeySecret" . | quote }}]
  verbs: ["get", "list", "watch"]
# And the upstream providers' client secrets, the same way.
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ include "oauth-operator.upstreamSecret" . | quote }}]
  verbs: ["get", "list", "watch"]
{{- end }}
