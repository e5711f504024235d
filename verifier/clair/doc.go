// Package clair is a client for Clair v4's HTTP API (quay/clair, httptransport/api/v1/openapi.yaml),
// the scanner Quay and older Harbor installs run. Portcullis uses it as a scan source beside the
// Harbor Pluggable Scanner API: it submits an image manifest to Clair's indexer, with layer URIs
// that pull through Portcullis with a scanner credential, reads the matcher's vulnerability report,
// and handles the notifier's webhook so that a vulnerability that lands later re-decides the
// images it affects at once.
//
// The protocol, as the client speaks it:
//
//	POST   /indexer/api/v1/index_report             {"hash","layers":[{"hash","uri","headers","media_type"}]}
//	       -> 201 IndexReport {"manifest_hash","state","success","err",...}
//	GET    /indexer/api/v1/index_report/{digest}    -> 200 IndexReport, while state is not IndexFinished
//	GET    /matcher/api/v1/vulnerability_report/{digest}
//	       -> 201 {"manifest_hash","packages","vulnerabilities","package_vulnerabilities",...}
//	webhook POST (from Clair) {"notification_id","callback"}
//	GET    /notifier/api/v1/notification/{id}?page_size=&next=
//	       -> 200 {"page":{"size","next"},"notifications":[{"id","manifest","reason","vulnerability"}]}
//	DELETE /notifier/api/v1/notification/{id}
//
// The package decides nothing and caches nothing: a report is a value (policy.ScanReport), an
// error means no report could be had and the caller fails closed. It must never import the proxy
// or admission.
package clair
