package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Entry is one key's answer in a batch read: its value and remaining time to live (0: none), or the error Get
// would have returned (wrapping ErrNotFound when absent).
type Entry struct {
	Val []byte
	TTL time.Duration
	Err error
}

// BatchGetter is a KV that reads several keys, with their TTLs, in one round trip. *Redis and *SignedKV (over a
// BatchGetter) implement it; Tiered uses it to fill its local tier (Prefetch).
type BatchGetter interface {
	// GetBatch returns one Entry per key, in order. Its error means none could be read (the store is down).
	GetBatch(ctx context.Context, keys []string) ([]Entry, error)
}

var (
	_ BatchGetter = (*Redis)(nil)
	_ BatchGetter = (*SignedKV)(nil)
)

// GetBatch implements BatchGetter: GET and PTTL of every key in one pipeline.
func (r *Redis) GetBatch(ctx context.Context, keys []string) ([]Entry, error) {
	gets := make([]*redis.StringCmd, len(keys))
	ttls := make([]*redis.DurationCmd, len(keys))
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			gets[i] = p.Get(ctx, r.prefix+k)
			ttls[i] = p.PTTL(ctx, r.prefix+k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("get", err)
	}
	out := make([]Entry, len(keys))
	for i, k := range keys {
		val, err := gets[i].Bytes()
		left, exists := remaining(ttls[i].Val())
		switch {
		case errors.Is(err, redis.Nil), err == nil && !exists: // gone, or expired just after the GET
			out[i].Err = fmt.Errorf("%w: %q", ErrNotFound, k)
		case err != nil:
			out[i].Err = unavailable("get", err)
		default:
			out[i].Val, out[i].TTL = val, left
		}
	}
	return out, nil
}

// GetBatch implements BatchGetter when the wrapped KV does (otherwise it reads the keys one by one): every value
// is verified as Get verifies it, and its TTL is never past the signed expiry.
func (s *SignedKV) GetBatch(ctx context.Context, keys []string) ([]Entry, error) {
	bg, ok := s.kv.(BatchGetter)
	if !ok {
		out := make([]Entry, len(keys))
		for i, k := range keys {
			out[i].Val, out[i].TTL, out[i].Err = s.GetTTL(ctx, k)
		}
		return out, nil
	}
	raw, err := bg.GetBatch(ctx, keys)
	if err != nil {
		return nil, err
	}
	for i := range raw {
		if raw[i].Err != nil {
			continue
		}
		v, left, err := s.open(keys[i], raw[i].Val)
		if err != nil {
			raw[i] = Entry{Err: err}
			continue
		}
		if left > 0 && (raw[i].TTL <= 0 || left < raw[i].TTL) {
			raw[i].TTL = left
		}
		raw[i].Val = v
	}
	return raw, nil
}
