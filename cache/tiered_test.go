package cache_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// replica is one proxy replica's shared state: a Tiered KV on its own Redis client, with its changes to "epoch/"
// keys announced on its own RedisBus.
func replica(t *testing.T, kvAddr, busAddr string, opts ...cache.TieredOption) *cache.Tiered {
	t.Helper()
	busClient := cache.RedisClient([]string{busAddr}, "", "", "", 0)
	bus := cache.NewRedisBus(busClient)
	kv := cache.NewTiered(cache.NewMemory(), cache.NewRedis(cache.RedisClient([]string{kvAddr}, "", "", "", 0)), 30*time.Second,
		append([]cache.TieredOption{cache.WithInvalidation(bus, "epoch/")}, opts...)...)
	t.Cleanup(func() {
		_ = kv.Close()
		_ = bus.Close()
		_ = busClient.Close()
	})
	return kv
}

// waitValue polls kv until key reads want and returns how long that took; it fails after within.
func waitValue(t *testing.T, kv cache.KV, key, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		v, err := kv.Get(context.Background(), key)
		if string(v) == want || (want == "" && errors.Is(err, cache.ErrNotFound)) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s still reads %q (%v) %v after the change; want %q", key, v, err, within, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// A change to a digest's facts epoch on one replica is seen by the others within a second, not after the
// local tier's 30s.
func TestTieredInvalidationFleetWide(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	a, b := replica(t, addr, addr), replica(t, addr, addr)
	const key = "epoch/sha256:0123"
	var lat []time.Duration
	for i := range 20 {
		want := fmt.Sprint("e", i)
		if err := a.Set(ctx, key, []byte(want), time.Hour); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, waitValue(t, b, key, want, time.Second))
		// b now holds the value in its local tier: the next round's change must reach it there.
	}
	slices.Sort(lat)
	t.Logf("replica B saw replica A's change after: min %v, median %v, max %v (20 changes)", lat[0], lat[len(lat)/2], lat[len(lat)-1])

	// Deleting is a change too.
	if err := a.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	waitValue(t, b, key, "", time.Second)

	// Keys without the prefix keep the local tier's behaviour: the other replica's copy stays as it was.
	if err := a.Set(ctx, "tag/x", []byte("1"), time.Hour); err != nil {
		t.Fatal(err)
	}
	waitValue(t, b, "tag/x", "1", time.Second)
	if err := a.Set(ctx, "tag/x", []byte("2"), time.Hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if v, _ := b.Get(ctx, "tag/x"); string(v) != "1" {
		t.Errorf("tag/x on B = %q; a key without the prefix was invalidated", v)
	}
}

// A notice that never came (here: a write that bypassed the Tiered) is made up for when the subscription is
// lost and back: the gap drops every local copy of an invalidated key.
func TestTieredInvalidationGapDropsLocalCopies(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	b := replica(t, addr, addr)
	raw := cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0))
	defer raw.Close()
	const key = "epoch/sha256:0123"
	if err := raw.Set(ctx, key, []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	waitValue(t, b, key, "1", time.Second)
	if err := raw.Set(ctx, key, []byte("2"), 0); err != nil { // no notice
		t.Fatal(err)
	}
	if v, _ := b.Get(ctx, key); string(v) != "1" {
		t.Fatalf("B reads %q; the test needs its local copy to be stale", v)
	}
	admin := cache.RedisClient([]string{addr}, "", "", "", 0)
	defer admin.Close()
	if err := admin.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// Not a Get while the subscription is down (that reads the shared tier): once it is back, the local copy must
	// be gone.
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	for b.Healthy() != nil {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the subscription is not back 5s after it was cut: %v", b.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := waitValue(t, b, key, "2", time.Second)
	t.Logf("B read the new value %v after its subscription was back", took)
}

// While the bus is down, notices may be missed, so invalidated keys are read from the shared tier; the local copy
// is only the fallback when the shared tier is down too.
func TestTieredInvalidationBusDown(t *testing.T) {
	kvSrv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{})
	busSrv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{})
	ctx := context.Background()
	b := replica(t, kvSrv.Addr, busSrv.Addr)
	raw := cache.NewRedis(cache.RedisClient([]string{kvSrv.Addr}, "", "", "", 0))
	defer raw.Close()
	const key = "epoch/sha256:0123"
	if err := raw.Set(ctx, key, []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	waitValue(t, b, key, "1", time.Second)
	if err := b.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v before the outage", err)
	}

	busSrv.Stop()
	start := time.Now()
	for b.Healthy() == nil {
		if time.Since(start) > 5*time.Second {
			t.Fatal("Healthy() still nil 5s after the bus went down")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := raw.Set(ctx, key, []byte("2"), 0); err != nil { // the notice could not have reached B
		t.Fatal(err)
	}
	waitValue(t, b, key, "2", 50*time.Millisecond)

	kvSrv.Stop() // now the shared tier too: B answers from what it holds
	if v, err := b.Get(ctx, key); err != nil || string(v) != "1" {
		t.Errorf("with both down: %q, %v; want the local copy", v, err)
	}
}

// The KV conformance suite holds with invalidation on for every key.
func TestTieredInvalidationConformance(t *testing.T) {
	addr := cachetest.StartRedis(t)
	var n atomic.Int64
	cachetest.RunKV(t, func(t *testing.T) cache.KV {
		client := cache.RedisClient([]string{addr}, "", "", "", 0)
		p := cache.WithKeyPrefix(fmt.Sprintf("tinv%d:", n.Add(1)))
		bus := cache.NewRedisBus(client, p)
		t.Cleanup(func() { _ = bus.Close() })
		return cache.NewTiered(cache.NewMemory(), cache.NewRedis(client, p), time.Minute, cache.WithInvalidation(bus, ""))
	})
}

// A WithSharedFirst key is read from the shared tier every time: another replica's change is seen at once, without
// a notice; the local copy answers only while the shared tier is down.
func TestTieredSharedFirst(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	mk := func() *cache.Tiered {
		return cache.NewTiered(cache.NewMemory(), cache.NewRedis(cache.RedisClient([]string{addr}, "", "", "", 0)), time.Minute,
			cache.WithSharedFirst("report/"))
	}
	a, b := mk(), mk()
	defer a.Close()
	defer b.Close()
	for _, k := range []string{"report/d", "decision/d"} {
		if err := a.Set(ctx, k, []byte("one"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if v, err := b.Get(ctx, k); err != nil || string(v) != "one" {
			t.Fatalf("%s on the other replica: %q %v", k, v, err)
		}
		if err := a.Set(ctx, k, []byte("two"), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := b.Get(ctx, "report/d"); err != nil || string(v) != "two" {
		t.Errorf("shared-first key changed on another replica: %q %v, want two at once", v, err)
	}
	if v, _ := b.Get(ctx, "decision/d"); string(v) != "one" {
		t.Errorf("other key: %q, want the local copy (one) until it lapses", v)
	}
	if _, hit, _ := b.Peek(ctx, "report/d"); hit {
		t.Error("Peek answered a shared-first key from the local copy")
	}
	admin := cache.RedisClient([]string{addr}, "", "", "", 0)
	defer admin.Close()
	_ = admin.ShutdownNoSave(ctx).Err()
	if v, err := b.Get(ctx, "report/d"); err != nil || string(v) != "two" {
		t.Errorf("shared-first key with the shared tier down: %q %v, want the copy of the last read (two)", v, err)
	}
}
