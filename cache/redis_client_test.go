package cache_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
)

// After a command finds Redis hung, the next ones fail at once (ErrRedisCooldown) instead of each waiting out the
// timeouts; what is not Redis failing to answer (a missing key, an error reply, the caller giving up) starts no
// cooldown; and once Redis answers again the client works without a restart.
func TestRedisCooldown(t *testing.T) {
	srv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{})
	client := cache.RedisClient([]string{srv.Addr}, "", "", "", 0)
	kv := cache.NewRedis(client, cache.WithKeyPrefix("cool:"))
	defer kv.Close()
	ctx := context.Background()
	if err := kv.Set(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	get := func(ctx context.Context) error { _, err := kv.Get(ctx, "k"); return err }
	// worksNow fails unless a command right after the step is sent and answered: no cooldown started.
	worksNow := func(t *testing.T) {
		t.Helper()
		if err := get(ctx); err != nil {
			t.Errorf("Get right after: %v; want the value (no cooldown)", err)
		}
	}
	for _, tc := range []struct {
		name string
		step func(t *testing.T)
	}{
		{"a missing key", func(t *testing.T) {
			if _, err := kv.Get(ctx, "missing"); !errors.Is(err, cache.ErrNotFound) {
				t.Fatalf("Get(missing): %v", err)
			}
		}},
		{"an error reply", func(t *testing.T) {
			if err := client.Do(ctx, "NOSUCHCOMMAND").Err(); err == nil {
				t.Fatal("NOSUCHCOMMAND answered")
			}
		}},
		{"the caller giving up", func(t *testing.T) {
			srv.Freeze()
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			err := get(short)
			srv.Thaw()
			if !errors.Is(err, cache.ErrUnavailable) {
				t.Fatalf("Get with a 100ms deadline on a hung Redis: %v", err)
			}
		}},
	} {
		t.Run(tc.name+" starts no cooldown", func(t *testing.T) {
			tc.step(t)
			worksNow(t)
		})
	}

	t.Run("a hung Redis starts one", func(t *testing.T) {
		srv.Freeze()
		first := get(ctx)
		if !errors.Is(first, cache.ErrUnavailable) || errors.Is(first, cache.ErrRedisCooldown) {
			t.Errorf("first Get on a hung Redis: %v; want the timeout, wrapping ErrUnavailable", first)
		}
		// Every command now fails without being sent: writes, pipelines (GetTTL) and the health probe's PING too.
		failed := time.Now() // the last command that went to Redis and timed out
		for name, op := range map[string]func() error{
			"get":    func() error { return get(ctx) },
			"set":    func() error { return kv.Set(ctx, "k", []byte("w"), 0) },
			"getTTL": func() error { _, _, err := kv.GetTTL(ctx, "k"); return err },
			"ping":   func() error { return client.Ping(ctx).Err() },
		} {
			late := time.Since(failed) > 800*time.Millisecond // near the 1s cooldown's end: a loaded machine
			err := op()
			switch {
			case late && !errors.Is(err, cache.ErrRedisCooldown):
				t.Logf("%s came %v after the last failure, past the cooldown: %v", name, time.Since(failed), err)
				failed = time.Now()
			case !errors.Is(err, cache.ErrRedisCooldown):
				t.Errorf("%s right after: %v; want ErrRedisCooldown", name, err)
			case name != "ping" && !errors.Is(err, cache.ErrUnavailable):
				t.Errorf("%s right after: %v; want it wrapped in ErrUnavailable", name, err)
			}
		}
		srv.Thaw()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := get(ctx)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Get still failing 10s after Redis was thawed: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// A Redis that answers but refuses writes is not healthy: a replica reached directly (READONLY) makes every store's
// Healthy fail, naming the refusal, where a PING alone passed; the same stores on the primary are healthy, and so
// is a bus on the replica (subscribing works there).
func TestRedisHealthyRefusesReadOnly(t *testing.T) {
	primary := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{})
	replica := cachetest.StartRedisReplica(t, primary, cachetest.RedisServerOptions{})
	stores := func(addr string) map[string]cache.HealthChecker {
		client := cache.RedisClient([]string{addr}, "", "", "", 0)
		t.Cleanup(func() { _ = client.Close() })
		return map[string]cache.HealthChecker{
			"kv":          cache.NewRedis(client, cache.WithKeyPrefix("ro:")),
			"collections": cache.NewRedisCollections(client, cache.WithKeyPrefix("ro:")),
			"journal":     cache.NewRedisJournal(client, 100, cache.WithKeyPrefix("ro:")),
		}
	}
	for name, hc := range stores(primary.Addr) {
		if err := hc.Healthy(); err != nil {
			t.Errorf("%s on the primary: Healthy() = %v", name, err)
		}
	}
	for name, hc := range stores(replica.Addr) {
		err := hc.Healthy()
		if !errors.Is(err, cache.ErrUnavailable) || !strings.Contains(err.Error(), "READONLY") {
			t.Errorf("%s on the replica: Healthy() = %v; want ErrUnavailable naming READONLY", name, err)
		}
	}
	client := cache.RedisClient([]string{replica.Addr}, "", "", "", 0)
	t.Cleanup(func() { _ = client.Close() })
	bus := cache.NewRedisBus(client, cache.WithKeyPrefix("ro:"))
	defer bus.Close()
	if err := bus.Healthy(); err != nil {
		t.Errorf("bus on the replica: Healthy() = %v", err)
	}
}
