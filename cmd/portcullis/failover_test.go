package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// sentinelFleet is two replicas reaching Redis through a sentinel that watches a primary and its replica, with
// timings short enough for a test: the primary is held down after 500ms without an answer.
type sentinelFleet struct {
	fleet
	primary, replica *cachetest.RedisServer
	sentinel         string
}

// failoverPrefix is the fleet's key prefix; its bus channels are failoverPrefix+"bus/<topic>".
const failoverPrefix = "fo:"

func startSentinelFleet(t *testing.T) *sentinelFleet {
	t.Helper()
	primary := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{})
	f := &sentinelFleet{primary: primary, replica: cachetest.StartRedisReplica(t, primary, cachetest.RedisServerOptions{}),
		sentinel: cachetest.StartRedisSentinelWith(t, primary, cachetest.SentinelOptions{DownAfter: 500 * time.Millisecond,
			FailoverTimeout: 5 * time.Second})}
	f.up, f.bin, f.key = registrytest.New(t), cosigntest.Binary(t), bytes.Repeat([]byte{9}, 32)
	// Signed by the release key, and no finding above medium in a CI report (none needed).
	f.startReplicas(t, "  scan: {maxSeverity: medium, sources: [ci], onMissing: allow}\n",
		configs.Redis{Addrs: []string{f.sentinel}, MasterName: cachetest.SentinelMaster, KeyPrefix: failoverPrefix})
	return f
}

// sigLookups counts the upstream GETs of the digest's cosign signature tag: a verification.
func (f *sentinelFleet) sigLookups(repo, hex string) int {
	return f.up.Hits().CountPath(http.MethodGet, "/v2/"+repo+"/manifests/sha256-"+hex+".sig")
}

// ready reports whether the replica's /readyz says ready and not degraded: its Redis state and its bus
// subscription are up.
func ready(t *testing.T, a *app) bool {
	c, body := httpGet(t, "http://"+a.opsAddr.String()+"/readyz")
	return c == http.StatusOK && !strings.Contains(body, "degraded")
}

// TestRedisFailover: the Redis primary is SIGKILLed under a fleet that reaches it through a sentinel, which
// promotes the replica. Meanwhile admitted images keep serving and new images are decided locally (as in an
// outage); once the sentinel has promoted the replica, both Portcullis replicas work again without a restart:
// decisions are shared, list changes are made and reach the other replica, the bus carries invalidations again.
// The old primary then comes back as a replica of the new one, and nothing breaks.
func TestRedisFailover(t *testing.T) {
	f := startSentinelFleet(t)
	ctx := context.Background()
	_, bad := f.pushAdmittedAndDenied(t, "fo")
	// Redis replicates asynchronously: what the primary acknowledged in its last moments may be lost in a
	// failover. Wait until the replica has it all, so that the test is about Portcullis, not about that.
	old := redis.NewClient(&redis.Options{Addr: f.primary.Addr})
	if n, err := old.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d %v", n, err)
	}
	_ = old.Close()

	// Pushed before the kill, decided after it.
	_, during := f.push(t, "fo/during:v1", true)
	f.push(t, "fo/unsigned:v1", false)

	f.primary.Stop()
	killed := time.Now()
	t.Run("during the failover", func(t *testing.T) {
		for _, r := range []*app{f.a, f.b} {
			start := time.Now()
			if _, err := crane.Pull(r.addr.String()+"/fo/good:v1", crane.Insecure); err != nil {
				t.Errorf("admitted image: %v", err)
			}
			// A new decision is made locally (as with Redis down): a signed image is admitted, an unsigned one
			// denied, each within the client timeouts.
			for _, c := range []struct {
				path string
				want int
			}{
				{"/v2/fo/during/manifests/" + during.String(), http.StatusOK},
				{"/v2/fo/unsigned/manifests/v1", http.StatusForbidden},
				{"/v2/fo/bad/manifests/" + bad.String(), http.StatusForbidden},
			} {
				callStart := time.Now()
				if got, _ := get(t, r, c.path); got != c.want {
					t.Errorf("%s: %d, want %d", c.path, got, c.want)
				}
				if took := time.Since(callStart); took > 15*time.Second {
					t.Errorf("%s took %v; the Redis client's timeouts should bound it", c.path, took)
				}
			}
			t.Logf("replica %s answered four pulls %v after the kill, in %v", r.addr, start.Sub(killed).Round(time.Millisecond),
				time.Since(start).Round(time.Millisecond))
		}
		if m, err := cachetest.MasterAddr(ctx, f.sentinel); err == nil && m == f.primary.Addr {
			t.Logf("the sentinel had not promoted the replica yet")
		}
	})

	// The sentinel promotes the replica: poll it rather than sleep.
	var master string
	if took, ok := within(30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		master, _ = cachetest.MasterAddr(ctx, f.sentinel)
		return master == f.replica.Addr
	}); !ok {
		t.Fatalf("the sentinel did not promote the replica within 30s (master %q)", master)
	} else {
		t.Logf("the sentinel promoted the replica %v after the kill (%v of it polled here)", time.Since(killed).Round(time.Millisecond), took.Round(time.Millisecond))
	}
	promoted := time.Now()
	rdb := redis.NewClient(&redis.Options{Addr: f.replica.Addr})
	t.Cleanup(func() { _ = rdb.Close() })

	// works checks, with no restart of either replica, that the fleet is one proxy again on the current master.
	works := func(t *testing.T, tag string) {
		t.Helper()
		for _, r := range []*app{f.a, f.b} {
			if took, ok := within(20*time.Second, func() bool { return ready(t, r) }); !ok {
				t.Fatalf("replica %s still degraded 20s on", r.addr)
			} else {
				t.Logf("replica %s ready again, %v on", r.addr, took.Round(time.Millisecond))
			}
		}
		// Both replicas listen on the current master again: pub/sub has resumed.
		if _, ok := within(10*time.Second, func() bool {
			subs, err := rdb.PubSubNumSub(ctx, failoverPrefix+"bus/"+cache.InvalidationTopic).Result()
			return err == nil && subs[failoverPrefix+"bus/"+cache.InvalidationTopic] == 2
		}); !ok {
			subs, err := rdb.PubSubNumSub(ctx, failoverPrefix+"bus/"+cache.InvalidationTopic).Result()
			t.Errorf("subscribers on the master: %v %v; want 2", subs, err)
		}
		// A new decision made on A is shared: B does not verify again.
		_, d := f.push(t, "fo/"+tag+":v1", true)
		if c, _ := get(t, f.a, "/v2/fo/"+tag+"/manifests/"+d.String()); c != http.StatusOK {
			t.Fatalf("new signed image on A: %d", c)
		}
		f.up.Hits().Reset()
		if c, _ := get(t, f.b, "/v2/fo/"+tag+"/manifests/"+d.String()); c != http.StatusOK {
			t.Fatalf("new signed image on B: %d", c)
		}
		if n := f.sigLookups("fo/"+tag, d.Hex); n != 0 {
			t.Errorf("B made %d signature look-ups for a decision A had made: decisions are not shared", n)
		}
		// A list change on B is made and reaches A.
		code, body := adminCall(t, f.b, http.MethodPost, "/admin/v1/deny",
			fmt.Sprintf(`{"match": %q, "reason": "after the failover"}`, f.up.Host()+"/fo/"+tag+"@"+d.String()))
		if code != http.StatusCreated {
			t.Fatalf("deny on B: %d %s", code, body)
		}
		if _, ok := answersWithin(t, f.a, "/v2/fo/"+tag+"/manifests/"+d.String(), http.StatusForbidden, 5*time.Second); !ok {
			t.Error("A still serves a digest denied on B 5s after the 201")
		}
		var created struct{ ID string }
		_ = json.Unmarshal([]byte(body), &created)
		if code, body := adminCall(t, f.a, http.MethodDelete, "/admin/v1/deny/"+created.ID, ""); code != http.StatusNoContent {
			t.Fatalf("DELETE on A: %d %s", code, body)
		}
		// An invalidation goes over the bus: B holds the digest's facts epoch in its local tier (kept 30s), a
		// failing report posted on A moves the epoch, and B must hear of it, not wait out its copy.
		if _, ok := answersWithin(t, f.b, "/v2/fo/"+tag+"/manifests/"+d.String(), http.StatusOK, 5*time.Second); !ok {
			t.Fatal("B does not serve the digest again after its deny entry was removed")
		}
		if code, body := adminCall(t, f.a, http.MethodPost, "/admin/v1/reports/"+d.String(), trivyReport("CVE-2024-9001", "CRITICAL")); code/100 != 2 {
			t.Fatalf("report on A: %d %s", code, body)
		}
		if took, ok := answersWithin(t, f.b, "/v2/fo/"+tag+"/manifests/"+d.String(), http.StatusForbidden, 5*time.Second); !ok {
			t.Error("B still admits the digest 5s after a failing report was posted on A: the invalidation did not reach it")
		} else {
			t.Logf("B refuses the digest %v after the report", took.Round(time.Millisecond))
		}
		// What was admitted and denied before still is.
		for _, r := range []*app{f.a, f.b} {
			if _, err := crane.Pull(r.addr.String()+"/fo/good:v1", crane.Insecure); err != nil {
				t.Errorf("admitted image on %s: %v", r.addr, err)
			}
			if c, _ := get(t, r, "/v2/fo/bad/manifests/"+bad.String()); c != http.StatusForbidden {
				t.Errorf("denied digest on %s: %d", r.addr, c)
			}
		}
	}
	t.Run("after the promotion, without a restart", func(t *testing.T) {
		works(t, "after")
		// The decision made locally during the failover reaches the new master, as after an outage.
		if _, ok := within(15*time.Second, func() bool {
			keys, _ := rdb.Keys(ctx, failoverPrefix+"decision/*/fo/during@"+during.String()+"#0").Result()
			return len(keys) > 0
		}); !ok {
			t.Error("the decision made during the failover is not on the new master 15s after the promotion")
		}
		t.Logf("recovered %v after the promotion", time.Since(promoted).Round(time.Millisecond))
	})
	t.Run("the old primary back as a replica", func(t *testing.T) {
		f.primary.RestartAsReplicaOf(f.replica.Addr)
		works(t, "back")
		if m, err := cachetest.MasterAddr(ctx, f.sentinel); err != nil || m != f.replica.Addr {
			t.Errorf("master %q %v; want the promoted replica %s", m, err, f.replica.Addr)
		}
	})
}

// TestRedisSlow: Redis holds every command (CLIENT PAUSE ALL: connections open, replies late, as with a long fork,
// an overloaded node or a stalled disk) while 40 pulls arrive at once on one replica. Each is answered as with
// Redis down (admitted images serve, a new signed image is decided locally, an unsigned one denied) within a bound
// however long Redis stays slow; Redis connections and goroutines do not pile up; when Redis answers again the
// replica works again without a restart. Before the client's cooldown (cache.ErrRedisCooldown) the new decision
// waited one timeout per Redis round trip, 52s in all, and every pull here waited for the pause to end.
func TestRedisSlow(t *testing.T) {
	f := startFleet(t)
	ctx := context.Background()
	f.push(t, "slow/good:v1", true)
	_, fresh := f.push(t, "slow/new:v1", true)
	f.push(t, "slow/unsigned:v1", false)
	if _, err := crane.Pull(f.a.addr.String()+"/slow/good:v1", crane.Insecure); err != nil {
		t.Fatal(err)
	}
	rdb := fleetRedisClient(t, f)
	clients := func() int {
		n, _ := rdb.ClientList(ctx).Result()
		return strings.Count(n, "\n")
	}
	before, goroutines := clients(), runtime.NumGoroutine()

	// CLIENT UNPAUSE would itself wait for the pause to end: the pause is long enough to tell a bounded wait
	// (about one command's timeouts, 2-4s) from one that lasts as long as Redis is slow.
	const pause = 10 * time.Second
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	pauseEnd := time.Now().Add(pause)
	type result struct {
		path       string
		code, want int
		took       time.Duration
	}
	cases := []struct {
		path string
		want int
	}{
		{"/v2/slow/good/manifests/v1", http.StatusOK},
		{"/v2/slow/new/manifests/" + fresh.String(), http.StatusOK},
		{"/v2/slow/unsigned/manifests/v1", http.StatusForbidden},
	}
	const pulls = 40
	results := make(chan result, pulls)
	for i := range pulls {
		c := cases[i%len(cases)]
		go func() {
			start := time.Now()
			code := http.StatusTeapot
			if resp, err := http.Get("http://" + f.a.addr.String() + c.path); err == nil {
				code = resp.StatusCode
				_ = resp.Body.Close()
			}
			results <- result{c.path, code, c.want, time.Since(start)}
		}()
	}
	var slowest time.Duration
	for range pulls {
		r := <-results
		if r.code != r.want {
			t.Errorf("%s while Redis is slow: %d, want %d", r.path, r.code, r.want)
		}
		slowest = max(slowest, r.took)
	}
	t.Logf("%d pulls while Redis held every command for %v: the slowest took %v", pulls, pause, slowest.Round(time.Millisecond))
	if !time.Now().Before(pauseEnd) {
		t.Errorf("the pulls were answered only when Redis answered again (%v): their wait is not bounded", slowest.Round(time.Millisecond))
	}
	after := clients() // waits for the pause to end
	if _, ok := within(10*time.Second, func() bool { return ready(t, f.a) }); !ok {
		t.Error("replica still degraded 10s after Redis answered again")
	}
	// Works again: a list change, and a new decision shared with the other replica.
	if _, ok := within(10*time.Second, func() bool {
		code, _ := adminCall(t, f.a, http.MethodPost, "/admin/v1/deny",
			fmt.Sprintf(`{"match": %q, "reason": "after the pause"}`, f.up.Host()+"/slow/unsigned"))
		return code == http.StatusCreated
	}); !ok {
		t.Error("list changes still fail 10s after Redis answered again")
	}
	_, later := f.push(t, "slow/later:v1", true)
	if c, _ := get(t, f.a, "/v2/slow/later/manifests/"+later.String()); c != http.StatusOK {
		t.Fatalf("new image after the pause on A: %d", c)
	}
	f.up.Hits().Reset()
	if c, _ := get(t, f.b, "/v2/slow/later/manifests/"+later.String()); c != http.StatusOK {
		t.Fatalf("new image after the pause on B: %d", c)
	}
	if n := f.up.Hits().CountPath(http.MethodGet, "/v2/slow/later/manifests/sha256-"+later.Hex+".sig"); n != 0 {
		t.Errorf("B made %d signature look-ups after the pause: decisions are not shared", n)
	}
	// No pile-up: the Redis connections stay within a client's pool, and the goroutines the pulls started end.
	if after > before+redisPoolSize() {
		t.Errorf("Redis connections: %d before the pause, %d after %d pulls during it; want at most a pool (%d) more", before, after, pulls, redisPoolSize())
	}
	http.DefaultClient.CloseIdleConnections() // the pulls' keep-alive connections are not a pile-up
	if _, ok := within(10*time.Second, func() bool { return runtime.NumGoroutine() <= goroutines+20 }); !ok {
		t.Errorf("goroutines: %d before the pause, %d 10s after it", goroutines, runtime.NumGoroutine())
	}
	t.Logf("Redis connections %d before the pause, %d after; goroutines %d before, %d after", before, after, goroutines, runtime.NumGoroutine())
}

// redisPoolSize is go-redis' default pool size per client: 10 per GOMAXPROCS.
func redisPoolSize() int { return 10 * runtime.GOMAXPROCS(0) }

// A replica pointed by mistake at a Redis replica, whose reads answer and whose writes are refused (READONLY), stays
// in service and says what is wrong: /readyz is 200 "degraded" naming READONLY (a PING passed before), and a pull
// through it works.
func TestServeOnReadOnlyRedis(t *testing.T) {
	primary := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{})
	replica := cachetest.StartRedisReplica(t, primary, cachetest.RedisServerOptions{})
	f := &fleet{up: registrytest.New(t), bin: cosigntest.Binary(t), key: bytes.Repeat([]byte{7}, 32)}
	f.startReplicas(t, "", configs.Redis{Addrs: []string{replica.Addr}, KeyPrefix: "ro:"})
	_, d := f.push(t, "ro/app:v1", true)
	c, body := httpGet(t, "http://"+f.a.opsAddr.String()+"/readyz")
	if c != http.StatusOK || !strings.Contains(body, "degraded") || !strings.Contains(body, "READONLY") {
		t.Errorf("/readyz on a read-only Redis: %d %q, want 200 degraded, naming READONLY", c, body)
	}
	if _, err := crane.Pull(f.a.addr.String()+"/ro/app@"+d.String(), crane.Insecure); err != nil {
		t.Errorf("pull through a replica on a read-only Redis: %v", err)
	}
}
