// Package deploy holds the Kubernetes install of Portcullis: the Helm chart in helm/portcullis (the proxy
// Deployment, its Service, PodDisruptionBudget, NetworkPolicy, monitoring objects, Redis, and the node DaemonSet
// that runs `portcullis nodeconfig` and `portcullis nodecheck`).
//
// It has no Go code of its own: its tests render the chart with the Helm CLI pinned in tools/helm, for the
// default values and each file in helm/portcullis/ci, and decode every object strictly into its Kubernetes API
// type, so a misspelt field in a template fails the build instead of being dropped by the API server.
package deploy
