// Package proxy is Portcullis's HTTP edge: the read-only OCI distribution API that clients pull through.
//
// It owns routing (which upstream a request is for), tag resolution, the pull-through of manifests and
// blobs into the content store, admission orchestration and the mapping of every inner error to an OCI
// error body. It is the only package that speaks OCI error codes.
//
// It must never serve bytes whose digest it has not verified, never serve a manifest before its admission
// decision, and never make an outbound request for an upstream that is not configured.
package proxy
