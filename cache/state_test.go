package cache_test

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/cache/cachetest"
)

// testKey is a state key for tests.
var testKey = bytes.Repeat([]byte{0x42}, 32)

func TestFileCollectionsConformance(t *testing.T) {
	cachetest.RunCollections(t, cachetest.CollectionsHarness{
		New: func(t *testing.T) cache.Collections { return openFileCollections(t, t.TempDir()) },
		Reopen: func(t *testing.T, c cache.Collections) cache.Collections {
			return openFileCollections(t, c.(*cache.FileCollections).Dir())
		},
	})
}

func openFileCollections(t *testing.T, dir string) *cache.FileCollections {
	t.Helper()
	c, err := cache.OpenFileCollections(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRedisCollectionsConformance(t *testing.T) {
	srv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{Persist: true})
	client := cache.RedisClient([]string{srv.Addr}, "", "", "", 0)
	t.Cleanup(func() { _ = client.Close() })
	var n atomic.Int64
	prefixes := map[cache.Collections]string{}
	cachetest.RunCollections(t, cachetest.CollectionsHarness{
		New: func(t *testing.T) cache.Collections {
			p := fmt.Sprintf("coll%d:", n.Add(1))
			c := cache.NewRedisCollections(client, cache.WithKeyPrefix(p))
			prefixes[c] = p
			return c
		},
		Reopen: func(t *testing.T, c cache.Collections) cache.Collections {
			// A restarted replica: a new client on the same server.
			fresh := cache.RedisClient([]string{srv.Addr}, "", "", "", 0)
			t.Cleanup(func() { _ = fresh.Close() })
			r := cache.NewRedisCollections(fresh, cache.WithKeyPrefix(prefixes[c]))
			prefixes[r] = prefixes[c]
			return r
		},
		Outages: cachetest.RedisOutages(srv),
	})
}

func TestSignedCollectionsConformance(t *testing.T) {
	addr := cachetest.StartRedis(t)
	client := cache.RedisClient([]string{addr}, "", "", "", 0)
	t.Cleanup(func() { _ = client.Close() })
	var n atomic.Int64
	sign := func(t *testing.T, c cache.Collections) cache.Collections {
		s, err := cache.NewSignedCollections(c, testKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("file", func(t *testing.T) {
		dirs := map[cache.Collections]string{}
		cachetest.RunCollections(t, cachetest.CollectionsHarness{
			New: func(t *testing.T) cache.Collections {
				dir := t.TempDir()
				c := sign(t, openFileCollections(t, dir))
				dirs[c] = dir
				return c
			},
			Reopen: func(t *testing.T, c cache.Collections) cache.Collections {
				r := sign(t, openFileCollections(t, dirs[c]))
				dirs[r] = dirs[c]
				return r
			},
		})
	})
	t.Run("redis", func(t *testing.T) {
		prefixes := map[cache.Collections]string{}
		cachetest.RunCollections(t, cachetest.CollectionsHarness{
			New: func(t *testing.T) cache.Collections {
				p := fmt.Sprintf("scoll%d:", n.Add(1))
				c := sign(t, cache.NewRedisCollections(client, cache.WithKeyPrefix(p)))
				prefixes[c] = p
				return c
			},
			Reopen: func(t *testing.T, c cache.Collections) cache.Collections {
				r := sign(t, cache.NewRedisCollections(client, cache.WithKeyPrefix(prefixes[c])))
				prefixes[r] = prefixes[c]
				return r
			},
		})
	})
}

func TestFileJournalConformance(t *testing.T) {
	type opened struct {
		dir string
		max int
	}
	journals := map[cache.Journal]opened{}
	open := func(t *testing.T, o opened) cache.Journal {
		j, err := cache.OpenFileJournal(o.dir, o.max)
		if err != nil {
			t.Fatal(err)
		}
		journals[j] = o
		return j
	}
	cachetest.RunJournal(t, cachetest.JournalHarness{
		New: func(t *testing.T, maxRecords int) cache.Journal {
			return open(t, opened{dir: t.TempDir(), max: maxRecords})
		},
		Reopen: func(t *testing.T, j cache.Journal) cache.Journal {
			if err := j.(*cache.FileJournal).Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, journals[j])
		},
	})
}

func TestRedisJournalConformance(t *testing.T) {
	srv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{Persist: true})
	client := cache.RedisClient([]string{srv.Addr}, "", "", "", 0)
	t.Cleanup(func() { _ = client.Close() })
	type opened struct {
		prefix string
		max    int
	}
	var n atomic.Int64
	journals := map[cache.Journal]opened{}
	cachetest.RunJournal(t, cachetest.JournalHarness{
		New: func(t *testing.T, maxRecords int) cache.Journal {
			o := opened{prefix: fmt.Sprintf("journal%d:", n.Add(1)), max: maxRecords}
			j := cache.NewRedisJournal(client, o.max, cache.WithKeyPrefix(o.prefix))
			journals[j] = o
			return j
		},
		Reopen: func(t *testing.T, j cache.Journal) cache.Journal {
			o := journals[j]
			fresh := cache.RedisClient([]string{srv.Addr}, "", "", "", 0)
			t.Cleanup(func() { _ = fresh.Close() })
			r := cache.NewRedisJournal(fresh, o.max, cache.WithKeyPrefix(o.prefix))
			journals[r] = o
			return r
		},
		Outages: cachetest.RedisOutages(srv),
	})
}

func TestLocalBusConformance(t *testing.T) {
	cachetest.RunBus(t, cachetest.BusHarness{
		New: func(t *testing.T) (cache.Bus, cache.Bus) {
			b := cache.NewLocalBus()
			return b, b
		},
	})
}

func TestRedisBusConformance(t *testing.T) {
	srv := cachetest.StartRedisServer(t, cachetest.RedisServerOptions{})
	var n atomic.Int64
	cachetest.RunBus(t, cachetest.BusHarness{
		New: func(t *testing.T) (cache.Bus, cache.Bus) {
			p := cache.WithKeyPrefix(fmt.Sprintf("bus%d:", n.Add(1)))
			// Two replicas: a client each.
			ca := cache.RedisClient([]string{srv.Addr}, "", "", "", 0)
			cb := cache.RedisClient([]string{srv.Addr}, "", "", "", 0)
			t.Cleanup(func() { _ = ca.Close(); _ = cb.Close() })
			return cache.NewRedisBus(ca, p), cache.NewRedisBus(cb, p)
		},
		Outages: cachetest.RedisOutages(srv),
	})
}
