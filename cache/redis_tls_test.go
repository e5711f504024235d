package cache_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
)

// aclUsers turn the default user off and allow one user with a password.
var aclUsers = []string{"default off", "portcullis on >s3cret ~* &* +@all"}

// exercise uses every Redis-backed store on client once: KV, Collections, Journal and Bus.
func exercise(t *testing.T, client redis.UniversalClient) {
	t.Helper()
	ctx := context.Background()
	kv := cache.NewRedis(client) // closed by the caller through client
	if err := kv.Set(ctx, "epoch/sha256:1", []byte("e1"), time.Minute); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if v, err := kv.Get(ctx, "epoch/sha256:1"); err != nil || string(v) != "e1" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	coll := cache.NewRedisCollections(client)
	if err := coll.Put(ctx, "deny", "sha256:1", []byte("why")); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if all, err := coll.All(ctx, "deny"); err != nil || string(all["sha256:1"]) != "why" {
		t.Fatalf("All = %q, %v", all, err)
	}
	j := cache.NewRedisJournal(client, 10)
	if err := j.Append(ctx, "audit", []byte(`{"who":"alice"}`)); err != nil {
		t.Fatalf("Append: %v", err)
	}
	n := 0
	if err := j.Range(ctx, "audit", func([]byte) bool { n++; return true }); err != nil || n != 1 {
		t.Fatalf("Range: %d records, %v", n, err)
	}
	bus := cache.NewRedisBus(client)
	defer bus.Close()
	got := make(chan string, 1)
	cancel := bus.Subscribe("revoke", func(msg []byte) { got <- string(msg) })
	defer cancel()
	if err := bus.Publish(ctx, "revoke", []byte("sha256:1")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	select {
	case m := <-got:
		if m != "sha256:1" {
			t.Fatalf("notice %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notice within 5s")
	}
	for name, hc := range map[string]cache.HealthChecker{"kv": kv, "collections": coll, "journal": j, "bus": bus} {
		if err := hc.Healthy(); err != nil {
			t.Errorf("%s: Healthy() = %v", name, err)
		}
	}
}

// TLS with a client certificate and an ACL user, on a single node: everything works, and every way of getting
// the connection wrong fails (as ErrUnavailable, quickly) instead of falling back to something weaker.
func TestRedisTLSAndACL(t *testing.T) {
	srv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{TLS: true, ClientCerts: true, Users: aclUsers})
	good := cache.RedisOptions{Addrs: []string{srv.Addr}, Username: "portcullis", Password: "s3cret", TLS: srv.TLS.ClientConfig()}

	t.Run("works", func(t *testing.T) {
		client := cache.NewRedisClient(good)
		defer client.Close()
		exercise(t, client)
	})
	t.Run("conformance", func(t *testing.T) {
		var n atomic.Int64
		cachetest.RunKV(t, func(t *testing.T) cache.KV {
			return cache.NewRedis(cache.NewRedisClient(good), cache.WithKeyPrefix(fmt.Sprintf("tls%d:", n.Add(1))))
		})
	})

	otherCA := cachetest.NewTLSFiles(t).ClientConfig()
	noCert := srv.TLS.ClientConfig()
	noCert.Certificates = nil
	bad := []struct {
		name string
		edit func(o *cache.RedisOptions)
	}{
		{"plain TCP", func(o *cache.RedisOptions) { o.TLS = nil }},
		{"server certificate from another CA", func(o *cache.RedisOptions) { o.TLS = otherCA }},
		{"no client certificate", func(o *cache.RedisOptions) { o.TLS = noCert }},
		{"wrong server name", func(o *cache.RedisOptions) { o.TLS = srv.TLS.ClientConfig(); o.TLS.ServerName = "redis.example" }},
		{"wrong password", func(o *cache.RedisOptions) { o.Password = "guess" }},
		{"no user (default is off)", func(o *cache.RedisOptions) { o.Username, o.Password = "", "" }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			tc.edit(&o)
			kv := cache.NewRedis(cache.NewRedisClient(o))
			defer kv.Close()
			start := time.Now()
			err := kv.Set(context.Background(), "k", []byte("v"), time.Minute)
			if !errors.Is(err, cache.ErrUnavailable) {
				t.Errorf("Set = %v; want an error wrapping ErrUnavailable", err)
			}
			if d := time.Since(start); d > 8*time.Second {
				t.Errorf("failing took %v", d)
			}
			if kv.Healthy() == nil {
				t.Error("Healthy() = nil on a connection that cannot work")
			}
		})
	}
}

// Whatever the tls.Config given, the client speaks TLS 1.2 or later.
func TestNewRedisClientMinTLS12(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts cache.RedisOptions
	}{
		{"single", cache.RedisOptions{Addrs: []string{"127.0.0.1:1"}}},
		{"cluster", cache.RedisOptions{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			given := &tls.Config{MinVersion: tls.VersionTLS10, ServerName: "redis.internal"}
			tc.opts.TLS = given
			client := cache.NewRedisClient(tc.opts)
			defer client.Close()
			var got *tls.Config
			switch c := client.(type) {
			case *redis.Client:
				got = c.Options().TLSConfig
			case *redis.ClusterClient:
				got = c.Options().TLSConfig
			}
			if got == nil || got.MinVersion != tls.VersionTLS12 || got.ServerName != "redis.internal" {
				t.Errorf("client TLS config %+v; want MinVersion TLS 1.2 and the server name kept", got)
			}
			if given.MinVersion != tls.VersionTLS10 {
				t.Error("the caller's tls.Config was changed")
			}
		})
	}
}

// A Redis Cluster (one node owning every slot) over TLS with an ACL user: hashes, streams and pub/sub all work
// through the cluster client.
func TestRedisClusterTLSAndACL(t *testing.T) {
	srv := cachetest.StartRedisCluster(t, cachetest.RedisServerOptions{TLS: true, ClientCerts: true, Users: aclUsers,
		Username: "portcullis", Password: "s3cret"})
	// Two addresses make a cluster client (the same node twice: it is the whole cluster).
	client := cache.NewRedisClient(cache.RedisOptions{Addrs: []string{srv.Addr, srv.Addr}, Username: "portcullis", Password: "s3cret",
		TLS: srv.TLS.ClientConfig()})
	defer client.Close()
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("client is a %T; want a cluster client", client)
	}
	exercise(t, client)
}

// Sentinel mode over TLS, with ACL users on the data node and on the sentinel itself.
func TestRedisSentinelTLSAndACL(t *testing.T) {
	master := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{TLS: true, ClientCerts: true, Users: aclUsers})
	sentinel := cachetest.StartRedisSentinel(t, master,
		[]string{"default off", "watcher on >sentinel-pw allchannels +@all"}, "portcullis", "s3cret")
	opts := cache.RedisOptions{Addrs: []string{sentinel}, MasterName: "mymaster",
		Username: "portcullis", Password: "s3cret", SentinelUsername: "watcher", SentinelPassword: "sentinel-pw",
		TLS: master.TLS.ClientConfig()}
	client := cache.NewRedisClient(opts)
	defer client.Close()
	exercise(t, client)

	// Without the sentinel's credentials the master cannot be found.
	opts.SentinelPassword = "guess"
	kv := cache.NewRedis(cache.NewRedisClient(opts))
	defer kv.Close()
	if err := kv.Set(context.Background(), "k", []byte("v"), 0); !errors.Is(err, cache.ErrUnavailable) {
		t.Errorf("with a wrong sentinel password: %v; want ErrUnavailable", err)
	}
}

// Healthy answers at once, even while Redis hangs, and follows an outage within about two seconds each way.
func TestRedisHealthy(t *testing.T) {
	srv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{})
	client := cache.RedisClient([]string{srv.Addr}, "", "", "", 0)
	kv := cache.NewRedis(client)
	defer kv.Close()
	tiered := cache.NewTiered(cache.NewMemory(), cache.NewRedis(cache.RedisClient([]string{srv.Addr}, "", "", "", 0)), time.Minute)
	defer tiered.Close()
	bus := cache.NewRedisBus(client)
	defer bus.Close()
	defer bus.Subscribe("t", func([]byte) {})()
	checkers := map[string]cache.HealthChecker{
		"kv": kv, "collections": cache.NewRedisCollections(client), "journal": cache.NewRedisJournal(client, 0), "tiered": tiered,
		"bus": bus,
	}
	// waitHealth polls every checker until it reports up (or down), checking that no call takes long.
	waitHealth := func(t *testing.T, up bool) {
		t.Helper()
		for name, hc := range checkers {
			start := time.Now()
			for {
				callStart := time.Now()
				err := hc.Healthy()
				if d := time.Since(callStart); d > 1500*time.Millisecond {
					t.Errorf("%s: Healthy() took %v", name, d)
				}
				if (err == nil) == up {
					if !up && !errors.Is(err, cache.ErrUnavailable) {
						t.Errorf("%s: Healthy() = %v; want ErrUnavailable", name, err)
					}
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("%s: Healthy() = %v 5s on; want up=%v", name, err, up)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	waitHealth(t, true)
	srv.Freeze()
	waitHealth(t, false)
	// While hung, every call returns at once: /readyz must not hang with Redis. (The bus meanwhile tries to
	// subscribe again, which waits on the hung server.)
	for name, hc := range checkers {
		start := time.Now()
		for range 100 {
			_ = hc.Healthy()
			time.Sleep(time.Millisecond)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("%s: 100 Healthy() calls a millisecond apart while Redis hangs took %v", name, d)
		}
	}
	srv.Thaw()
	waitHealth(t, true)
	srv.Stop()
	waitHealth(t, false)
	srv.Restart()
	waitHealth(t, true)
}
