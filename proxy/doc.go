// Package proxy is Portcullis's HTTP edge: the read-only OCI distribution API that clients pull through.
//
// It owns routing (which upstream a request is for), tag resolution, the pull-through of manifests and blobs
// into the content store and the download spool, the mapping of every inner error to an OCI error body, and the
// edge's metrics. It is the only package that speaks OCI error codes.
//
// It asks admission whether to serve through the small interfaces in admission.go (Admitter, BlobGate, LastGood,
// Admitted, ScannerAccess) and never imports the verifier: deciding is admission's job. It must never serve bytes
// whose digest it has not verified, never serve a manifest (HEAD included) before its admission decision, and
// never make an outbound request for an upstream that is not configured.
package proxy
