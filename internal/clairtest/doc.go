// Package clairtest is a stand-in for Clair v4 (quay/clair) in tests: its indexer, matcher and
// notifier HTTP API as published (httptransport/api/v1/openapi.yaml and the JSON schemas in
// httptransport/types/v1): the same paths, media types, JSON field names, index states and
// status codes (201 for a new index report and for a vulnerability report, 404 with
// {"code","message"} for an unknown manifest). Its vulnerability database is what the test says
// (the real one cannot be fetched here); what it does for real is fetch every layer it is
// given, from the layer's URI with the layer's headers, and check its digest, as Clair's
// indexer does, so a test sees Clair pull through Portcullis with the scanner credential.
package clairtest
