package bench

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/internal/fleetsim"
	"github.com/portcullis/portcullis/policy"
)

// benchFleet: 1,000 nodes roll out 50 new images through 3 replicas sharing Redis and one content store.
func benchFleet(t *testing.T, rep *report) {
	r := fleetsim.Run(t, fleetsim.Options{Nodes: 1000, Images: 50, Replicas: 3, Parallel: 256, RedisAddr: cachetest.StartRedis(t)})
	t.Log(r)
	const row = "fleet: 1,000 nodes x 50 images, 3 replicas"
	rep.add(row, sysPortcullis, "wall s", r.Wall.Seconds(), true)
	rep.add(row, sysPortcullis, "pulls/s", float64(r.Pulls)/r.Wall.Seconds(), false)
	rep.add(row, sysPortcullis, "upstream requests", float64(r.Upstream), true)
	rep.add(row, sysPortcullis, "verifications", float64(r.Verifications), true)
	rep.note("fleet: %s", r)
	rep.check("7. fleet: upstream requests per tag (one TTL), per manifest digest, per blob digest", "<= 1 each",
		fmt.Sprintf("%d, %d, %d", r.MaxPerTag, r.MaxPerManifest, r.MaxPerBlob), r.MaxPerTag <= 1 && r.MaxPerManifest <= 1 && r.MaxPerBlob <= 1)
	rep.check("7. fleet: verifications per digest", "1", fmt.Sprintf("at most %d (%d for %d images)", r.MaxVerifications, r.Verifications, r.Images),
		r.MaxVerifications == 1)
}

// benchRedis: Redis round trips of the gate with Redis behind a local tier (as cmd/portcullis wires a fleet): a
// decision held in the local tier, and one made by another replica.
func benchRedis(t *testing.T, rep *report) {
	addr := cachetest.StartRedis(t)
	pol, err := policy.Parse([]byte("default:\n  mode: enforce\n"), "policy.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	replica := func() (*admission.Gate, *redisTrips) {
		trips := &redisTrips{}
		client := cache.RedisClient([]string{addr}, "", "", "", 0)
		client.AddHook(trips)
		bus := cache.NewRedisBus(cache.RedisClient([]string{addr}, "", "", "", 0), cache.WithKeyPrefix("bench:"))
		kv := cache.NewTiered(cache.NewMemory(), cache.NewRedis(client, cache.WithKeyPrefix("bench:")), 30*time.Second, admission.TieredOptions(bus)...)
		t.Cleanup(func() { _ = kv.Close(); _ = bus.Close() })
		g, err := admission.NewGate(pol, nothing{}, kv, admission.WithLogger(slog.New(slog.DiscardHandler)), admission.WithReports(admission.NewReports(kv, 0)))
		if err != nil {
			t.Fatal(err)
		}
		return g, trips
	}
	a, tripsA := replica()
	b, tripsB := replica()
	raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		digest.FromString("c").String() + `","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` +
		digest.FromString("l").String() + `","size":1}]}`)
	s := admission.Subject{Upstream: "registry.example", Repository: "bench/app", Tag: "v1", Digest: digest.FromBytes(raw),
		MediaType: "application/vnd.oci.image.manifest.v1+json", Manifest: raw}
	ctx := context.Background()
	admit := func(g *admission.Gate) {
		if v, err := g.Admit(ctx, s); err != nil || !v.Allowed {
			t.Fatalf("admit: %+v %v", v, err)
		}
	}
	admit(a)
	admit(a)
	tripsA.reset()
	const n = 1000
	for range n {
		admit(a)
	}
	local := float64(tripsA.trips.Load()) / n
	tripsB.reset()
	admit(b)
	miss := tripsB.trips.Load()
	const row = "Redis round trips per cached Admit"
	rep.add(row+", decision in the local tier", sysPortcullis, "round trips", local, true)
	rep.add(row+", decision made by another replica", sysPortcullis, "round trips", float64(miss), true)
	rep.check("6. Redis calls of an Admit whose decision is in the local tier", "0", fmt.Sprintf("%.2f per Admit over %d", local, n), local == 0)
	rep.check("6. Redis round trips of an Admit on a local miss", "<= 1", fmt.Sprintf("%d (%d commands, pipelined)", miss, tripsB.cmds.Load()), miss <= 1)
}

// nothing is evidence that finds nothing: the policy requires none.
type nothing struct{}

func (nothing) Gather(context.Context, admission.Subject, policy.Requirements, admission.GatherOptions) (policy.Facts, error) {
	return policy.Facts{}, nil
}

// redisTrips counts a go-redis client's round trips (a command, or a pipeline) and commands, leaving out what it
// sends when it opens a connection.
type redisTrips struct{ trips, cmds atomic.Int64 }

func (c *redisTrips) reset() { c.trips.Store(0); c.cmds.Store(0) }

func (c *redisTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *redisTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !connSetup(cmd) {
			c.trips.Add(1)
			c.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *redisTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !connSetup(cmds[0]) {
			c.trips.Add(1)
			c.cmds.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

func connSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select", "ping":
		return true
	}
	return false
}
