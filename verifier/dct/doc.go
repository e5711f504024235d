// Package dct reads Docker Content Trust (Notary v1, TUF) trust data: which digest a notary collection signs for a
// tag, and whether a digest is a signed target. It uses theupdateframework/notary's client library for the TUF
// checks (signatures and thresholds, expiry, version rollback against what it saw before) and adds what a proxy
// needs on top: root keys pinned by the policy (never trust on first use), bounded and timed-out fetches, and a
// cache refreshed every so often and used while the server is down only until the trust data expires.
//
// It decides nothing: it reports what the trust data says, as facts for package policy. It must never trust a
// collection whose root is not signed by a pinned key, nor serve trust data past its expiry.
package dct
