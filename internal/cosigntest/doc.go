// Package cosigntest makes real cosign signatures in tests: it builds the
// cosign CLI pinned by the module (cosign v2 through the `tool` directive in
// go.mod, cosign v3 through the nested module tools/cosign3), generates key
// pairs with it, signs and attests images in an in-process registry, and plays
// a Fulcio-like certificate authority for keyless signatures.
//
// Every cosign run is offline: HOME, TUF_ROOT and DOCKER_CONFIG point into a
// temporary directory, SIGSTORE_NO_CACHE is set, nothing is uploaded to a
// transparency log and no trusted root is fetched (the helpers pass
// --tlog-upload=false, or a signing config without a transparency log and a
// local --trusted-root). A helper that would need the internet is a bug.
//
// The cosign binaries are built once per test binary (the go command caches
// them across runs too) and shared by every test; building is the only slow
// step.
//
// This package is for tests only. Production code must never import it.
package cosigntest
