// Package cache owns Portcullis's shared state and its blob content.
//
// It has two stores:
//
//   - [KV], a small key-value store with TTLs for tag resolutions and admission decisions. [Memory] serves a
//     single replica; [Redis] (go-redis v9 UniversalClient: single node, sentinel or cluster) serves a fleet.
//     Both pass the conformance suite in package cachetest.
//   - [Content], a content-addressed blob store on a CNCF Distribution storage driver (filesystem by default,
//     S3 for fleets) that commits only bytes whose digest it verified, and keeps a size budget by evicting the
//     least recently used objects.
//
// Everything here is a cache: it may be lost at any time without changing a decision, and a shared-cache
// outage surfaces as an error wrapping [ErrUnavailable] that callers treat as a miss. The package must never
// decide admission, speak HTTP or OCI error codes, or store bytes it has not verified against their digest.
package cache
