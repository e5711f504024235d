// Package upstream is the read-only client Portcullis uses to talk to one upstream OCI registry.
//
// It owns the upstream side of the wire: the HTTP transport stack (user agent, retries with backoff,
// Bearer/Basic auth challenges with a per-client token cache), bounded reads of every response body,
// digest verification of manifests, and the mapping of upstream failures to sentinel errors
// (ErrNotFound, ErrUnavailable, ...) that the proxy turns into OCI error codes.
//
// It must never write to an upstream, never send credentials to a host other than the registry (or,
// for the token exchange, the token realm), never connect to a private, loopback or link-local address
// a redirect or token realm names unless the registry itself lives on one of that kind or the operator
// allowed it (checked on the address dialled, not on a separate look-up), and never return manifest
// bytes that do not match the digest they were asked for. Blob bodies are streamed, not buffered: verifying
// them is the caller's job.
package upstream
