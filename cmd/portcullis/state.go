package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/configs"
)

// openState opens the shared state: the KV (decisions, grants, tags, reports), the bus that carries change notices
// between replicas, and what must survive (the allow/deny lists and the audit log). Embedded: memory, files in the
// data dir and an in-process bus. Fleet: Redis for all of it, every value that admits signed with the state key,
// and a local tier in front that drops a changed facts epoch as soon as any replica announces it.
func (a *app) openState(ctx context.Context, cfg *configs.Config, log *slog.Logger) error {
	var (
		collections cache.Collections
		journal     cache.Journal
	)
	if cfg.Cache.Redis.Enabled() {
		r := cfg.Cache.Redis
		key, err := cfg.LoadStateKey()
		if err != nil {
			return fmt.Errorf("state key: %w", err)
		}
		if key == nil {
			return errors.New("cache.stateKeyFile: a state key is required with cache.redis (see portcullis validate)")
		}
		tc, err := r.TLS.Config()
		if err != nil {
			return err
		}
		cache.SetRedisLogger(log)
		client := cache.NewRedisClient(cache.RedisOptions{
			Addrs: r.Addrs, MasterName: r.MasterName, DB: r.DB,
			Username: r.Username, Password: r.Password,
			SentinelUsername: r.SentinelUsername, SentinelPassword: r.SentinelPassword,
			TLS: tc,
		})
		prefix := cache.WithKeyPrefix(r.KeyPrefix)
		bus := cache.NewRedisBus(client, prefix)
		shared, err := cache.NewSigned(cache.NewRedis(client, prefix), key, cache.WithSignedLogger(log))
		if err != nil {
			return err
		}
		// A local tier in front: a Redis outage degrades to what this replica knows, it does not stop pulls. A facts
		// epoch and the list of recent policies (a replica still under the old policy must see the new one's name at
		// once) are announced when they change; the facts themselves (reports, VEX) and that list are read from
		// Redis every time, so that a decision on a new epoch never reads the old facts (admission.TieredOptions).
		tiered := cache.NewTiered(cache.NewMemory(), shared, 30*time.Second, admission.TieredOptions(bus)...)
		if collections, err = cache.NewSignedCollections(cache.NewRedisCollections(client, prefix), key, cache.WithSignedLogger(log)); err != nil {
			return err
		}
		journal = cache.NewRedisJournal(client, cache.DefaultJournalMaxRecords, prefix)
		a.kv, a.bus = tiered, bus
		a.health = append(a.health, tiered, collections.(cache.HealthChecker))
		// The bus first, then the tiers (the shared one closes the client).
		a.closers = append(a.closers, tiered.Close, bus.Close)
		log.Info("shared state in Redis", "addrs", r.Addrs, "masterName", r.MasterName, "tls", tc != nil)
	} else {
		dir := filepath.Join(cfg.DataDir, "state")
		fc, err := cache.OpenFileCollections(dir)
		if err != nil {
			return fmt.Errorf("state in %s: %w", dir, err)
		}
		fj, err := cache.OpenFileJournal(filepath.Join(dir, "journal"), cache.DefaultJournalMaxRecords)
		if err != nil {
			return fmt.Errorf("state in %s: %w", dir, err)
		}
		collections, journal = fc, fj
		a.kv, a.bus = cache.NewMemory(), cache.NewLocalBus()
		a.closers = append(a.closers, a.kv.Close, fj.Close)
		log.Info("shared state embedded (single replica)", "dir", dir)
	}
	a.lists = admission.NewLists(collections, a.bus)
	if err := a.lists.Load(ctx); err != nil {
		if !cfg.Cache.Redis.Enabled() {
			return fmt.Errorf("allow/deny lists: %w", err)
		}
		// Redis down at start: serve nothing until the lists are known (readiness stays false), retrying.
		log.Warn("allow/deny lists unreadable; not ready until they are", "error", err)
	}
	a.journal = journal
	a.auditor = admission.NewAuditor(journal, log)
	return nil
}

// artifactStore is where the gate keeps the artifacts it reads by digest: a pack in the data directory in front of
// the content store, or the content store alone when the pack cannot be opened (another process has this data
// directory's pack open: the artifacts are then kept as the content store keeps objects, only slower to write).
func (a *app) artifactStore(cfg *configs.Config, content *cache.Content, log *slog.Logger) admission.ArtifactStore {
	dir := filepath.Join(cfg.DataDir, "artifacts")
	p, err := cache.OpenPack(dir, content)
	if err != nil {
		log.Warn("artifacts go to the content store only", "error", err)
		return content
	}
	a.closers = append(a.closers, p.Close)
	return p
}
