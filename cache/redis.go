package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

const defaultKeyPrefix = "portcullis:"

// RedisOption configures a Redis.
type RedisOption func(*Redis)

// WithKeyPrefix sets the prefix put before every key, so several deployments (or tests) can share one
// Redis. Default: "portcullis:".
func WithKeyPrefix(p string) RedisOption {
	return func(r *Redis) { r.prefix = p }
}

// Redis is a KV on a Redis server, sentinel group or cluster, shared by every replica of the proxy.
// Errors other than a missing key wrap ErrUnavailable.
type Redis struct {
	client redis.UniversalClient
	prefix string
}

// NewRedis returns a KV on client, which it owns from now on: Close closes it. client must not be nil.
func NewRedis(client redis.UniversalClient, opts ...RedisOption) *Redis {
	r := &Redis{client: client, prefix: defaultKeyPrefix}
	for _, o := range opts {
		o(r)
	}
	return r
}

// RedisClient builds a go-redis UniversalClient with timeouts suited to a cache that must fail fast:
// dial 2s, read and write 1s, one retry. One address is a single node, several are a cluster, and a
// masterName selects sentinel mode (addrs are then the sentinels). db is ignored by clusters.
func RedisClient(addrs []string, masterName, username, password string, db int) redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:         addrs,
		MasterName:    masterName,
		Username:      username,
		Password:      password,
		DB:            db,
		DialTimeout:   2 * time.Second,
		ReadTimeout:   time.Second,
		WriteTimeout:  time.Second,
		MaxRetries:    1,
		DialerRetries: 1,
	})
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
	d := ttl.Val()
	if d < 0 { // -1: no expiry; -2: gone between the two commands
		d = 0
	}
	return val, d, nil
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

// Close closes the client.
func (r *Redis) Close() error {
	return r.client.Close()
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, op, err)
}
