package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
)

// TestLease: one holder at a time, fleet-wide on Redis (also through the signed and tiered layers) and within a
// process on Memory; only the holder renews or releases; a lease not renewed lapses.
func TestLease(t *testing.T) {
	addr := cachetest.StartRedis(t)
	for _, tc := range []struct {
		name string
		new  func(t *testing.T) (a, b cache.Leaser)
	}{
		{"memory", func(t *testing.T) (cache.Leaser, cache.Leaser) {
			m := cache.NewMemory()
			t.Cleanup(func() { _ = m.Close() })
			return m, m
		}},
		{"redis, two replicas through tiered and signed", func(t *testing.T) (cache.Leaser, cache.Leaser) {
			replica := func() cache.Leaser {
				s, err := cache.NewSigned(cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix("lease-test:")),
					[]byte("0123456789abcdef0123456789abcdef"))
				if err != nil {
					t.Fatal(err)
				}
				tiered := cache.NewTiered(cache.NewMemory(), s, time.Minute)
				t.Cleanup(func() { _ = tiered.Close() })
				return tiered
			}
			return replica(), replica()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tc.new(t)
			ctx := context.Background()
			la, err := a.Lease(ctx, "blob/x", 300*time.Millisecond)
			if err != nil || la == nil {
				t.Fatalf("first lease: %v %v", la, err)
			}
			if lb, err := b.Lease(ctx, "blob/x", time.Second); err != nil || lb != nil {
				t.Fatalf("second lease while held: %v %v; want none", lb, err)
			}
			if lo, err := b.Lease(ctx, "blob/other", time.Second); err != nil || lo == nil {
				t.Fatalf("a lease on another name: %v %v", lo, err)
			}
			if !la.Renew(ctx, 300*time.Millisecond) {
				t.Fatal("the holder could not renew")
			}
			la.Release(ctx)
			lb, err := b.Lease(ctx, "blob/x", 200*time.Millisecond)
			if err != nil || lb == nil {
				t.Fatalf("lease after release: %v %v", lb, err)
			}
			la.Release(ctx) // the old holder's late release must not drop b's lease
			if l, _ := a.Lease(ctx, "blob/x", time.Second); l != nil {
				t.Fatal("an old holder's release dropped the new holder's lease")
			}
			if la.Renew(ctx, time.Second) {
				t.Error("an old holder renewed a lease it no longer holds")
			}
			time.Sleep(300 * time.Millisecond) // b does not renew: its lease lapses
			if l, err := a.Lease(ctx, "blob/x", time.Second); err != nil || l == nil {
				t.Fatalf("lease after the last one lapsed: %v %v", l, err)
			}
		})
	}
}
