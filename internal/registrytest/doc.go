// Package registrytest runs a real OCI registry in-process for tests: the
// upstream that Portcullis proxies in integration and proxy tests.
//
// By default the registry is CNCF Distribution v3 (registry/handlers.App on the
// inmemory storage driver, deletes enabled) behind httptest. Distribution does
// not implement the referrers API, which is deliberate: callers must fall back
// to the sha256-<hex> tag schema. WithGGCR swaps in go-containerregistry's
// pkg/registry, which does serve referrers.
//
// Around the registry sit, from the outside in: a request counter (Hits), any
// fault-injection middleware (WithMiddleware) and an optional bearer-token gate
// backed by a separate in-test token server (WithBearerAuth).
//
// Seeding helpers (PushRandomImage, PushRandomIndex, ...) talk to the same
// storage through a private side door, so they are never counted in Hits,
// never hit the middleware and never ask the token server for a token. The
// counters therefore describe only the traffic of the code under test.
//
// This package is for tests only. It must never be imported by production
// code, and it must never touch the network beyond loopback.
package registrytest
