package cache

import (
	"context"
	"fmt"
	"unicode/utf8"
)

// Collections are small named sets of records that must survive (allow and deny lists): a durable file in the
// data dir when embedded ([FileCollections]), Redis hashes in a fleet ([RedisCollections]). Records are opaque
// bytes keyed by id. Unlike [KV], this is not a cache: what Put stored stays until Delete removes it.
//
// Collection names are 1 to 64 of [a-z0-9._-], starting with a letter or digit; ids are 1 to 1024 bytes of valid
// UTF-8; a value is at most [MaxRecordSize]. Anything else is an error that does not wrap ErrUnavailable.
type Collections interface {
	// Put stores val under id in collection, replacing what was there. It returns once the record is durable.
	Put(ctx context.Context, collection, id string, val []byte) error
	// Delete removes one record; an absent record is ErrNotFound (so the API can answer 404).
	Delete(ctx context.Context, collection, id string) error
	// All returns every record of collection (an empty map for an unknown collection). The map and its values
	// are the caller's.
	All(ctx context.Context, collection string) (map[string][]byte, error)
}

// Journal is an append-only record log bounded in size (the audit log): the oldest records go first. The bound is
// given to the constructor, default [DefaultJournalMaxRecords] (100,000) records per journal name. [FileJournal] keeps it in the data dir, [RedisJournal]
// in a Redis stream.
//
// Names follow the rules of collection names; a record is at most [MaxRecordSize].
type Journal interface {
	// Append adds rec as the newest record of journal name. It returns once the record is durable.
	Append(ctx context.Context, name string, rec []byte) error
	// Range calls fn with records newest first until fn returns false. Records appended while Range runs may or
	// may not be seen; none is seen twice. rec is the caller's to keep.
	Range(ctx context.Context, name string, fn func(rec []byte) bool) error
}

// Bus carries change notices to every replica (Redis pub/sub in a fleet, in-process when embedded). A
// subscriber also gets the notices its own replica publishes.
//
// Delivery is asynchronous, in publication order per publisher, on one goroutine per subscription: fn is never
// called concurrently with itself and should return quickly. Notices can be lost (a lost connection, a subscriber
// that falls 10,000 notices behind); a subscriber that must not miss a change uses [GapSubscriber] to learn when
// to re-read the state. A topic is 1 to 256 bytes; a notice is at most [MaxRecordSize].
type Bus interface {
	// Publish sends msg to every subscriber of topic on every replica. It does not wait for subscribers and
	// never blocks for long: a fleet bus gives up after a few seconds with an error wrapping ErrUnavailable.
	Publish(ctx context.Context, topic string, msg []byte) error
	// Subscribe calls fn with every notice published on topic from the time it returns (a fleet bus waits, a
	// few seconds at most, for the server to confirm; if it cannot, it keeps trying in the background and
	// reports a gap once it succeeds). After cancel returns fn is not called again, except for a call already
	// running. A subscription to an invalid topic never delivers (Publish to one is an error).
	Subscribe(topic string, fn func(msg []byte)) (cancel func())
}

// GapSubscriber is a Bus that tells a subscriber when notices may have been lost, so it can re-read the state the
// notices are about instead of trusting a stale copy. [LocalBus] and [RedisBus] implement it.
type GapSubscriber interface {
	Bus
	// SubscribeGaps is Subscribe with gap called, in order with fn's calls, whenever notices on topic may have
	// been lost since the last call: the subscription was lost and is back, or the subscriber fell behind.
	SubscribeGaps(topic string, fn func(msg []byte), gap func()) (cancel func())
}

// HealthChecker is a store backed by a shared service that can say whether that service is reachable, cheaply
// enough to ask on every /readyz: a nil error means healthy. The Redis-backed types implement it, as does
// [Tiered] (for its shared tier and its invalidation bus).
type HealthChecker interface {
	Healthy() error
}

// MaxRecordSize bounds a Collections value, a Journal record and a Bus notice: 1 MiB. These are lists, audit
// records and change notices, not blobs.
const MaxRecordSize = 1 << 20

const (
	maxNameLen  = 64
	maxIDLen    = 1024
	maxTopicLen = 256
)

// checkName checks a collection, journal or topic name: it becomes a file name and part of a Redis key.
func checkName(kind, name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("cache: %s name %q: must be 1 to %d characters", kind, name, maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return fmt.Errorf("cache: %s name %q: only a-z, 0-9, '.', '_' and '-', starting with a letter or digit", kind, name)
		}
	}
	return nil
}

// checkID checks a Collections record id: any valid UTF-8 (it is a JSON string in the file store).
func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("cache: record id: must be 1 to %d bytes, got %d", maxIDLen, len(id))
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("cache: record id %q: not valid UTF-8", id)
	}
	return nil
}

func checkTopic(topic string) error {
	if topic == "" || len(topic) > maxTopicLen {
		return fmt.Errorf("cache: topic %q: must be 1 to %d bytes", topic, maxTopicLen)
	}
	return nil
}

func checkSize(what string, b []byte) error {
	if len(b) > MaxRecordSize {
		return fmt.Errorf("cache: %s of %d bytes is over the %d-byte limit", what, len(b), MaxRecordSize)
	}
	return nil
}

// DefaultJournalMaxRecords is the default bound of one journal: 100,000 records.
const DefaultJournalMaxRecords = 100000

// journalMax is the bound a journal constructor was given, or the default for n <= 0.
func journalMax(n int) int {
	if n <= 0 {
		return DefaultJournalMaxRecords
	}
	return n
}
