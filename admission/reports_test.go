package admission

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/policy"
)

// fleetKV is one replica's KV: Redis behind a local tier, wired as cmd/portcullis wires a fleet member. hooks see the
// KV's Redis traffic from after its connection is made (the bus has a client of its own).
func fleetKV(t *testing.T, addr, prefix string, hooks ...redis.Hook) *cache.Tiered {
	t.Helper()
	p := cache.WithKeyPrefix(prefix)
	client := cache.RedisClient([]string{addr}, "", "", "", 0)
	if err := client.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for _, h := range hooks {
		client.AddHook(h)
	}
	bus := cache.NewRedisBus(cache.RedisClient([]string{addr}, "", "", "", 0), p)
	kv := cache.NewTiered(cache.NewMemory(), cache.NewRedis(client, p), 30*time.Second, TieredOptions(bus)...)
	t.Cleanup(func() { _ = kv.Close(); _ = bus.Close() })
	return kv
}

// factsReplica is one replica's Reports on its fleetKV.
func factsReplica(t *testing.T, addr, prefix string) *Reports {
	t.Helper()
	return NewReports(fleetKV(t, addr, prefix), 0)
}

// A report or VEX posted on one replica is what another replica decides on next, at once: the facts epoch it moved
// makes that replica decide again, and a copy of the old facts in its local tier must not be what it decides on
// (a clean report replaced by one with a critical finding would be admitted for the life of the new decision).
func TestFactsPostedOnAnotherReplica(t *testing.T) {
	addr := cachetest.StartRedis(t)
	ctx := context.Background()
	a, b := factsReplica(t, addr, "facts:"), factsReplica(t, addr, "facts:")
	d := digest.FromString("image")

	if err := a.Put(ctx, policy.SourceCI, d, &policy.ScanReport{Scanner: "clean"}); err != nil {
		t.Fatal(err)
	}
	if r, ok := b.Get(ctx, policy.SourceCI, d); !ok || r.Scanner != "clean" {
		t.Fatalf("B's first read: %+v %v", r, ok)
	}
	if err := a.Put(ctx, policy.SourceCI, d, &policy.ScanReport{Scanner: "critical"}); err != nil {
		t.Fatal(err)
	}
	if r, ok := b.Get(ctx, policy.SourceCI, d); !ok || r.Scanner != "critical" {
		t.Errorf("B's read right after A posted a new report: %+v %v, want the new one", r, ok)
	}

	// Two replicas adding VEX statements about one image at once lose none of them.
	const each = 8
	var wg sync.WaitGroup
	for i := range 2 * each {
		rs := a
		if i%2 == 1 {
			rs = b
		}
		wg.Go(func() {
			st := policy.VEXStatement{IDs: []string{fmt.Sprintf("CVE-2026-%d", i)}, Status: "not_affected", Time: time.Unix(1_800_000_000, 0)}
			if _, err := rs.PutVEX(ctx, d, []policy.VEXStatement{st}); err != nil {
				t.Errorf("PutVEX %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for name, rs := range map[string]*Reports{"A": a, "B": b} {
		var ids []string
		for _, st := range rs.VEX(ctx, d) {
			ids = append(ids, st.IDs...)
		}
		slices.Sort(ids)
		if len(ids) != 2*each {
			t.Errorf("%s reads %d VEX statements after %d posts at once: %v", name, len(ids), 2*each, ids)
		}
	}
}

// Every key that holds posted facts is under one of sharedFirstKeyPrefixes, which serve reads from Redis every time.
func TestFactsKeysAreSharedFirst(t *testing.T) {
	d := digest.FromString("image")
	for _, k := range []string{reportKey(policy.SourceCI, d), reportKey(policy.SourceScanner, d), vexStatementsKey(d)} {
		if !slices.ContainsFunc(sharedFirstKeyPrefixes(), func(p string) bool { return strings.HasPrefix(k, p) }) {
			t.Errorf("%s is not under sharedFirstKeyPrefixes %q", k, sharedFirstKeyPrefixes())
		}
	}
}
