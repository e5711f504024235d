// Package harbortest runs a stand-in Harbor scanner adapter for tests: an
// httptest server that speaks the Pluggable Scanner API v1.2 as
// harbor-scanner-trivy does, byte for byte where a client can tell (paths,
// media types, 202/302/200, Refresh-After, {"error":{"message"}} bodies with
// the status codes the spec and the Trivy adapter use).
//
// It cannot run a vulnerability database offline, so a scan's findings come
// from the test. But the pull is real: for every scan request it pulls the
// artifact back from the registry named in the request, with the
// Authorization header given in the request on every call to that registry,
// through go-containerregistry's remote package, fetching the manifest and
// every blob (child manifests of an index too) by digest and verifying each.
// A pull that fails makes the scan fail (the report endpoint answers 500), as
// with the real adapter. Requests records what each scan request asked for and
// how its pull went, so a test can prove the scanner pulled through Portcullis
// with the scanner's credential.
//
// This package is for tests only. It must never be imported by production
// code, and it must never touch the network beyond loopback.
package harbortest
