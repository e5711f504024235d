// Package harbor is a client for the Harbor Pluggable Scanner API v1.2, the
// HTTP API that harbor-scanner-trivy, the Clair adapter and other scanner
// adapters implement (goharbor/pluggable-scanner-spec,
// api/spec/scanner-adapter-openapi-v1.2.yaml). Portcullis uses it to have an
// image scanned on pull: it asks the adapter to scan one artifact in a
// registry (Portcullis itself, with a credential the adapter pulls with) and
// waits for the vulnerability report.
//
// The protocol, as the client speaks it:
//
//	GET  /api/v1/metadata                 Accept: application/vnd.scanner.adapter.metadata+json; version=1.0
//	POST /api/v1/scan                     Content-Type: application/vnd.scanner.adapter.scan.request+json; version=1.0
//	     {"registry":{"url","authorization"},"artifact":{"repository","digest","mime_type"}}
//	     -> 202 {"id"}                     Accept: application/vnd.scanner.adapter.scan.response+json; version=1.0
//	GET  /api/v1/scan/{id}/report         Accept: application/vnd.security.vulnerability.report; version=1.1
//	     -> 302 while the scan runs (Refresh-After, the spec's header, or Retry-After: seconds)
//	     -> 200 the report; 404 unknown id; 500 the scan failed; 4xx/5xx {"error":{"message"}}
//
// Redirects are never followed: 302 means "not ready". The package decides
// nothing and caches nothing; a report is a value (policy.ScanReport, parsed by
// package report), an error means no report could be had and the caller fails
// closed. It must never import the proxy.
package harbor
