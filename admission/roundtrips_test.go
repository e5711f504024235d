package admission

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/cache/cachetest"
)

// roundTrips counts what a go-redis client sends: each command on its own and each pipeline is one round trip.
type roundTrips struct{ trips, cmds atomic.Int64 }

func (c *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if connSetup(cmd) {
			return next(ctx, cmd)
		}
		c.trips.Add(1)
		c.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (c *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && connSetup(cmds[0]) {
			return next(ctx, cmds)
		}
		c.trips.Add(1)
		c.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// connSetup tells the commands go-redis sends when it opens a connection (HELLO, CLIENT SETINFO, AUTH, SELECT)
// from the KV's own.
func connSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select":
		return true
	}
	return false
}

func (c *roundTrips) reset()              { c.trips.Store(0); c.cmds.Store(0) }
func (c *roundTrips) atMost(n int64) bool { return c.trips.Load() <= n }
func (c *roundTrips) none() bool          { return c.trips.Load() == 0 }
func (c *roundTrips) String() string {
	return fmt.Sprintf("%d round trips (%d commands)", c.trips.Load(), c.cmds.Load())
}

// replica is one Portcullis's gate over the fleet's shared state (fleetKV, as cmd/portcullis wires it); trips counts
// the KV's Redis traffic.
func newRedisReplica(t *testing.T, addr, prefix string, signed map[digest.Digest]bool) (*gateFixture, *roundTrips) {
	t.Helper()
	trips := &roundTrips{}
	f := newGateFixture(t, fleetKV(t, addr, prefix, trips))
	f.ev.signed = signed
	return f, trips
}

// TestCachedAdmitRedisRoundTrips: with Redis behind a local tier, a decision this replica holds locally costs no
// Redis call at all (its facts epoch included, though no report was ever posted), and a decision another replica
// made costs one round trip (epoch, decision and grant read in one pipeline), after which it is local too.
func TestCachedAdmitRedisRoundTrips(t *testing.T) {
	addr := cachetest.StartRedis(t)
	s := image(t, "v1", digest.FromString("layer"))
	signed := map[digest.Digest]bool{s.Digest: true}
	a, tripsA := newRedisReplica(t, addr, "rt:", signed)
	b, tripsB := newRedisReplica(t, addr, "rt:", signed)
	ctx := context.Background()

	if d := a.admit(t, s); !d.Allowed || d.Evaluation == nil {
		t.Fatalf("first admit on replica A: %+v; want allowed by evaluation", d)
	}
	a.admit(t, s) // the facts epoch's absence is now known locally too
	tripsA.reset()
	for range 3 {
		if d := a.admit(t, s); !d.Allowed || d.Evaluation != nil {
			t.Fatalf("cached admit on A: %+v", d)
		}
	}
	if !tripsA.none() {
		t.Errorf("3 cached admits on the replica that decided: %v; want none", tripsA)
	}

	tripsB.reset()
	if d := b.admit(t, s); !d.Allowed || d.Evaluation != nil {
		t.Fatalf("admit on replica B: %+v; want allowed from A's decision", d)
	}
	if !tripsB.atMost(1) {
		t.Errorf("admit on replica B of a decision made on A: %v; want at most 1 round trip", tripsB)
	}
	if n := b.ev.n(s.Digest); n != 0 {
		t.Errorf("replica B gathered evidence %d times; want 0 (A decided)", n)
	}
	tripsB.reset()
	b.admit(t, s)
	c, _ := b.g.parsed.parse(s)
	for _, blob := range c.Blobs() { // what the node asks for next
		if ok, err := b.g.AllowBlob(ctx, s.Upstream, s.Repository, blob.Digest); err != nil || !ok {
			t.Fatalf("AllowBlob(%s) on B: %v %v", blob.Digest, ok, err)
		}
	}
	if !tripsB.none() {
		t.Errorf("a second admit and the image's blob checks on B: %v; want none", tripsB)
	}

	// A report posted on A changes the epoch: B hears of it on the bus and decides afresh, as before.
	a.report(t, s.Digest, "critical")
	deadline := time.Now().Add(5 * time.Second)
	for b.admit(t, s).Allowed {
		if time.Now().After(deadline) {
			t.Fatal("replica B still admits the image 5s after a critical report was posted on A")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
