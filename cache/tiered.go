package cache

import (
	"context"
	"errors"
	"time"
)

// Tiered is a KV with a local tier in front of a shared one: what this replica wrote or read recently is answered
// locally, and a shared store outage degrades to the local tier instead of failing. Writes go to both; a local
// copy of a value read from the shared tier lives at most maxLocal, and never past its shared TTL when the shared
// tier can tell it (TTLGetter).
type Tiered struct {
	local    KV
	shared   KV
	maxLocal time.Duration
}

var _ KV = (*Tiered)(nil)

// NewTiered layers local in front of shared. maxLocal bounds how long a value read from the shared tier is kept
// locally; default (<= 0) 30s.
func NewTiered(local, shared KV, maxLocal time.Duration) *Tiered {
	if maxLocal <= 0 {
		maxLocal = 30 * time.Second
	}
	return &Tiered{local: local, shared: shared, maxLocal: maxLocal}
}

// Get answers from the local tier, else from the shared one (copying the value locally). A shared outage is a
// miss, not an error: the caller works on without shared state.
func (t *Tiered) Get(ctx context.Context, key string) ([]byte, error) {
	if v, err := t.local.Get(ctx, key); err == nil {
		return v, nil
	}
	var v []byte
	var err error
	ttl := t.maxLocal
	if tg, ok := t.shared.(TTLGetter); ok {
		var left time.Duration
		v, left, err = tg.GetTTL(ctx, key)
		if left > 0 && left < ttl {
			ttl = left
		}
	} else {
		v, err = t.shared.Get(ctx, key)
	}
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil, errors.Join(ErrNotFound, err)
		}
		return nil, err
	}
	_ = t.local.Set(ctx, key, v, ttl)
	return v, nil
}

// TTLGetter is a KV that can tell a key's remaining time to live (0: none) with its value. *Redis implements it.
type TTLGetter interface {
	GetTTL(ctx context.Context, key string) ([]byte, time.Duration, error)
}

var _ TTLGetter = (*Redis)(nil)

// Set writes both tiers. It fails only when the local tier fails; a shared outage is returned wrapped in
// ErrUnavailable after the local write succeeded, so callers may log it and go on.
func (t *Tiered) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if err := t.local.Set(ctx, key, val, ttl); err != nil {
		return err
	}
	return t.shared.Set(ctx, key, val, ttl)
}

// Delete removes key from both tiers.
func (t *Tiered) Delete(ctx context.Context, key string) error {
	return errors.Join(t.local.Delete(ctx, key), t.shared.Delete(ctx, key))
}

// Close closes both tiers.
func (t *Tiered) Close() error { return errors.Join(t.local.Close(), t.shared.Close()) }
