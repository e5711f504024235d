// Package notarytest runs a real notary-server (Docker Content Trust, Notary v1) for tests and signs with the
// real notary client library, as `notary init`, `notary add` and `notary publish` (and `docker trust sign`) do.
//
// The server is the notary-server v0.7.0 binary pinned by the nested module tools/notary (it needs an older
// Prometheus client than the main module's), built once with `go tool -n notary-server` and the nested module's
// patch (tools/notary/_patch: delegation uploads, see internal/gotool), and started on a free port with memory
// storage, local signing of the timestamp and snapshot, and a TLS certificate made here.
// Nothing touches the network beyond the loopback.
//
// This package is for tests only. Production code must never import it.
package notarytest
