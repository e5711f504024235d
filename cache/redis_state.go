package cache

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The Redis keys of the durable state, next to the KV's keys under the same prefix. KV keys never start with these
// words (admission/keys.go and proxy/tags.go build them all):
//
//	<prefix>collection/<name>   hash: field = record id, value = record           RedisCollections
//	<prefix>journal/<name>      stream, capped by XADD MAXLEN: field r = record    RedisJournal
//	<prefix>bus/<topic>         pub/sub channel (not a key)                        RedisBus
//	<prefix>health              the time of the last health probe, 10s TTL         Redis, RedisCollections, RedisJournal
//
// These are not a cache: Redis must persist them (appendonly yes) or a Redis restart loses the lists and the audit.

func collectionKey(prefix, name string) string { return prefix + "collection/" + name }
func journalKey(prefix, name string) string    { return prefix + "journal/" + name }
func busChannel(prefix, topic string) string   { return prefix + "bus/" + topic }
func healthKey(prefix string) string           { return prefix + "health" }

// RedisCollections is [Collections] in Redis hashes, one a collection, shared by every replica. Errors from Redis
// wrap ErrUnavailable. It does not own the client: closing it is the caller's business.
type RedisCollections struct {
	client redis.UniversalClient
	prefix string
	health *redisHealth
}

var (
	_ Collections   = (*RedisCollections)(nil)
	_ HealthChecker = (*RedisCollections)(nil)
)

// NewRedisCollections returns Collections on client. Options: WithKeyPrefix (default "portcullis:").
func NewRedisCollections(client redis.UniversalClient, opts ...RedisOption) *RedisCollections {
	return &RedisCollections{client: client, prefix: newRedisConfig(opts).prefix, health: newRedisHealth(client, healthKey(newRedisConfig(opts).prefix))}
}

// Put implements Collections with HSET.
func (c *RedisCollections) Put(ctx context.Context, collection, id string, val []byte) error {
	if err := checkRecord(collection, id, val); err != nil {
		return err
	}
	if err := c.client.HSet(ctx, collectionKey(c.prefix, collection), id, val).Err(); err != nil {
		return unavailable("hset", err)
	}
	return nil
}

// Delete implements Collections with HDEL.
func (c *RedisCollections) Delete(ctx context.Context, collection, id string) error {
	if err := checkRecord(collection, id, nil); err != nil {
		return err
	}
	n, err := c.client.HDel(ctx, collectionKey(c.prefix, collection), id).Result()
	if err != nil {
		return unavailable("hdel", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %s/%q", ErrNotFound, collection, id)
	}
	return nil
}

// All implements Collections with HGETALL.
func (c *RedisCollections) All(ctx context.Context, collection string) (map[string][]byte, error) {
	if err := checkName("collection", collection); err != nil {
		return nil, err
	}
	m, err := c.client.HGetAll(ctx, collectionKey(c.prefix, collection)).Result()
	if err != nil {
		return nil, unavailable("hgetall", err)
	}
	out := make(map[string][]byte, len(m))
	for id, v := range m {
		out[id] = []byte(v)
	}
	return out, nil
}

// Healthy implements HealthChecker, as Redis.Healthy does.
func (c *RedisCollections) Healthy() error { return c.health.healthy() }

// RedisJournal is [Journal] in Redis streams, one a journal, capped exactly at the bound by XADD MAXLEN, shared by
// every replica. Errors from Redis wrap ErrUnavailable. It does not own the client.
type RedisJournal struct {
	client redis.UniversalClient
	prefix string
	max    int64
	health *redisHealth
}

var (
	_ Journal       = (*RedisJournal)(nil)
	_ HealthChecker = (*RedisJournal)(nil)
)

// journalPage is how many records Range reads from Redis at a time.
const journalPage = 256

// NewRedisJournal returns a Journal on client keeping the newest maxRecords records of each journal (<= 0: the
// default, 100,000). Options: WithKeyPrefix (default "portcullis:").
func NewRedisJournal(client redis.UniversalClient, maxRecords int, opts ...RedisOption) *RedisJournal {
	return &RedisJournal{client: client, prefix: newRedisConfig(opts).prefix, max: int64(journalMax(maxRecords)), health: newRedisHealth(client, healthKey(newRedisConfig(opts).prefix))}
}

// Append implements Journal with XADD ... MAXLEN = bound.
func (j *RedisJournal) Append(ctx context.Context, name string, rec []byte) error {
	if err := checkName("journal", name); err != nil {
		return err
	}
	if err := checkSize("journal record", rec); err != nil {
		return err
	}
	err := j.client.XAdd(ctx, &redis.XAddArgs{
		Stream: journalKey(j.prefix, name),
		MaxLen: j.max,
		Values: []any{"r", rec},
	}).Err()
	if err != nil {
		return unavailable("xadd", err)
	}
	return nil
}

// Range implements Journal with XREVRANGE, a page at a time; a page starts below the last id seen, so records
// appended meanwhile are neither seen nor make another one come twice.
func (j *RedisJournal) Range(ctx context.Context, name string, fn func(rec []byte) bool) error {
	if err := checkName("journal", name); err != nil {
		return err
	}
	key := journalKey(j.prefix, name)
	top := "+"
	for left := j.max; left > 0; {
		msgs, err := j.client.XRevRangeN(ctx, key, top, "-", min(journalPage, left)).Result()
		if err != nil {
			return unavailable("xrevrange", err)
		}
		for _, m := range msgs {
			left--
			r, _ := m.Values["r"].(string)
			if !fn([]byte(r)) {
				return nil
			}
		}
		if int64(len(msgs)) < journalPage {
			return nil
		}
		top = "(" + msgs[len(msgs)-1].ID
	}
	return nil
}

// Healthy implements HealthChecker, as Redis.Healthy does.
func (j *RedisJournal) Healthy() error { return j.health.healthy() }
