package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
)

func TestTieredConformance(t *testing.T) {
	addr := cachetest.StartRedis(t)
	var n atomic.Int64
	cachetest.RunKV(t, func(t *testing.T) cache.KV {
		shared := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix(fmt.Sprintf("tiered%d:", n.Add(1))))
		return cache.NewTiered(cache.NewMemory(), shared, time.Minute)
	})
}

func TestTieredSurvivesSharedOutage(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	mk := func() *cache.Tiered {
		return cache.NewTiered(cache.NewMemory(), cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0)), time.Minute)
	}
	a, b := mk(), mk()
	defer a.Close()
	defer b.Close()
	if err := a.Set(ctx, "decision", []byte("allow"), time.Minute); err != nil {
		t.Fatal(err)
	}
	// Another replica sees it through the shared tier.
	if v, err := b.Get(ctx, "decision"); err != nil || string(v) != "allow" {
		t.Fatalf("other replica: %q %v", v, err)
	}
	admin := cache.RedisClient([]string{addr}, "", "", "", 0)
	defer admin.Close()
	_ = admin.ShutdownNoSave(ctx).Err()

	// Both replicas keep what they hold locally; a key neither has is a plain miss, not an outage error.
	for name, kv := range map[string]*cache.Tiered{"writer": a, "reader": b} {
		if v, err := kv.Get(ctx, "decision"); err != nil || string(v) != "allow" {
			t.Errorf("%s during outage: %q %v", name, v, err)
		}
		if _, err := kv.Get(ctx, "unknown"); !errors.Is(err, cache.ErrNotFound) {
			t.Errorf("%s: missing key during outage: %v, want ErrNotFound", name, err)
		}
	}
	// Writes land locally and report the shared failure.
	err := a.Set(ctx, "new", []byte("x"), time.Minute)
	if !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("set during outage: %v, want ErrUnavailable", err)
	}
	if v, err := a.Get(ctx, "new"); err != nil || string(v) != "x" {
		t.Errorf("local write during outage: %q %v", v, err)
	}
}
