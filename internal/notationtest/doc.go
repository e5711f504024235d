// Package notationtest signs images the way the Notation CLI does, with notation-go's own
// signer, for tests: a certificate authority and leaf certificates made in the test, and
// signatures pushed as OCI referrers (through the referrers API, or the fallback tag on
// registries without it) with oras-go, as `notation sign` pushes them.
//
// It is test support: it fails the test on any error and never touches the network beyond
// the registry it is given.
package notationtest
