// Package cache owns Portcullis's shared state and its blob content.
//
// It has these stores:
//
//   - [KV], a small key-value store with TTLs for tag resolutions and admission decisions. [Memory] serves a
//     single replica; [Redis] (go-redis v9 UniversalClient: single node, sentinel or cluster, TLS and ACL users,
//     see [NewRedisClient]) serves a fleet, usually behind a local tier ([Tiered]) whose copies of keys that must
//     change everywhere at once are dropped on every replica when they change ([WithInvalidation]).
//   - [Collections] and [Journal], the state that must survive (allow and deny lists, the audit log): files in
//     the data dir when embedded ([FileCollections], [FileJournal]), written so that a crash at any moment leaves
//     the old or the new state, and Redis hashes and streams in a fleet ([RedisCollections], [RedisJournal]).
//   - [Bus], change notices to every replica: in-process ([LocalBus]) or Redis pub/sub ([RedisBus]).
//   - [Content], a content-addressed blob store on a CNCF Distribution storage driver (filesystem by default,
//     S3 for fleets) that commits only bytes whose digest it verified, and keeps a size budget by evicting the
//     least recently used objects.
//
// What replicas write to Redis can be authenticated with an HMAC under a key Redis does not hold ([SignedKV],
// [SignedCollections]): a value that fails the check reads as absent. Each store interface has one conformance
// suite in package cachetest that every implementation passes, against a real redis-server for Redis.
//
// The KV is a cache: it may be lost at any time without changing a decision. A shared store outage surfaces as an
// error wrapping [ErrUnavailable] that callers treat as a miss (KV) or as "could not do it" (Collections, Journal,
// Bus), never as absence. The package must never decide admission, speak HTTP or OCI error codes, or store bytes
// it has not verified against their digest.
package cache
