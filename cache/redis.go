package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

const defaultKeyPrefix = "portcullis:"

// RedisOption configures a Redis, RedisCollections, RedisJournal or RedisBus.
type RedisOption func(*redisConfig)

type redisConfig struct {
	prefix string
}

func newRedisConfig(opts []RedisOption) redisConfig {
	c := redisConfig{prefix: defaultKeyPrefix}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithKeyPrefix sets the prefix put before every key (and pub/sub channel), so several deployments (or tests) can
// share one Redis. Default: "portcullis:".
func WithKeyPrefix(p string) RedisOption {
	return func(c *redisConfig) { c.prefix = p }
}

// Redis is a KV on a Redis server, sentinel group or cluster, shared by every replica of the proxy.
// Errors other than a missing key wrap ErrUnavailable.
type Redis struct {
	client redis.UniversalClient
	prefix string
	health *redisHealth
}

// NewRedis returns a KV on client, which it owns from now on: Close closes it. client must not be nil.
func NewRedis(client redis.UniversalClient, opts ...RedisOption) *Redis {
	prefix := newRedisConfig(opts).prefix
	return &Redis{client: client, prefix: prefix, health: newRedisHealth(client, healthKey(prefix))}
}

// Get implements KV.
func (r *Redis) Get(ctx context.Context, key string) ([]byte, error) {
	val, err := r.client.Get(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	if err != nil {
		return nil, unavailable("get", err)
	}
	return val, nil
}

// GetTTL is Get with the key's remaining time to live (0: no expiry), read in one round trip.
func (r *Redis) GetTTL(ctx context.Context, key string) ([]byte, time.Duration, error) {
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, r.prefix+key)
		ttl = p.PTTL(ctx, r.prefix+key)
		return nil
	})
	if errors.Is(err, redis.Nil) || errors.Is(get.Err(), redis.Nil) {
		return nil, 0, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	if err != nil {
		return nil, 0, unavailable("get", err)
	}
	val, _ := get.Bytes()
	left, ok := remaining(ttl.Val())
	if !ok {
		// Expired between the two commands: a copy kept on the strength of this read would outlive it.
		return nil, 0, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	return val, left, nil
}

// remaining reads the PTTL answer for a key just read: how long it has left (0: no expiry), and false when it is
// gone (expired after the GET). PTTL answers -2 for a key that does not exist, -1 for one without expiry, and 0 for
// one in its last millisecond: that one has 1ms left, not "none", or a copy kept on its strength would outlive it.
func remaining(pttl time.Duration) (time.Duration, bool) {
	switch {
	case pttl == -2:
		return 0, false
	case pttl == -1:
		return 0, true
	case pttl < time.Millisecond:
		return time.Millisecond, true
	}
	return pttl, true
}

// Set implements KV. Redis keeps TTLs with millisecond precision; a ttl under 1ms becomes 1ms.
func (r *Redis) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl < 0 {
		ttl = 0 // go-redis reads -1 as KEEPTTL; ours means "no expiry"
	}
	if err := r.client.Set(ctx, r.prefix+key, val, ttl).Err(); err != nil {
		return unavailable("set", err)
	}
	return nil
}

// Delete implements KV.
func (r *Redis) Delete(ctx context.Context, key string) error {
	if err := r.client.Del(ctx, r.prefix+key).Err(); err != nil {
		return unavailable("delete", err)
	}
	return nil
}

// Healthy implements HealthChecker: nil while Redis answers PING. The answer is at most a second old and comes
// at once (only the first call waits for a PING, a second at most).
func (r *Redis) Healthy() error { return r.health.healthy() }

// Close closes the client.
func (r *Redis) Close() error {
	return r.client.Close()
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, op, err)
}
