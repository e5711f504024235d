package proxy

import (
	"context"
	"time"

	"github.com/portcullis/portcullis/cache"
)

// Many replicas are one logical proxy: when the KV can lease (cache.Leaser: Redis, fleet-wide), a replica about to
// go upstream for a tag, a manifest or a blob first takes a lease on it; a replica that finds the lease taken waits
// for the holder's result to appear in the shared store (the KV or the content store) instead of asking the
// upstream too. The wait is bounded: when the holder fails or vanishes, its lease lapses or is released and a
// waiter takes over.
const (
	// leaseTTL is a lease's life; a blob download renews its lease every leaseTTL/3 while it runs.
	leaseTTL = 10 * time.Second
	// leasePoll is how often a waiter looks for the holder's result.
	leasePoll = 10 * time.Millisecond
	// leaseWait bounds a tag's or manifest's wait for another replica, blobLeaseWait a blob's: a lease is unsigned,
	// and one a party with write access to Redis holds for ever must delay a pull, not stop it.
	leaseWait     = 10 * time.Second
	blobLeaseWait = 2 * time.Minute
)

// fleetOnce returns a lease on name for the caller to do the work under (Release it when the result is stored), or
// nil when found reported the result another replica produced while this one waited. A KV that cannot lease, an
// error, and a wait past maxWait all hand the work to the caller (with a lease that stands for nothing).
func (p *Proxy) fleetOnce(ctx context.Context, name string, maxWait time.Duration, found func() bool) *cache.Lease {
	leaser, ok := p.kv.(cache.Leaser)
	if !ok {
		return noLease
	}
	deadline := time.Now().Add(maxWait)
	for {
		l, err := leaser.Lease(ctx, name, leaseTTL)
		if err != nil {
			p.log.Warn("fleet lease unavailable; going upstream", "lease", name, "error", err)
			return noLease
		}
		if l != nil {
			if found() { // the last holder finished between the caller's look and this lease
				l.Release(ctx)
				return nil
			}
			return l
		}
		p.metrics.cache.WithLabelValues("lease", "wait").Inc()
		for next := time.Now().Add(leaseTTL / 2); time.Now().Before(next); {
			t := time.NewTimer(leasePoll)
			select {
			case <-ctx.Done():
				t.Stop()
				return noLease
			case <-t.C:
			}
			if found() {
				return nil
			}
			if time.Now().After(deadline) {
				return noLease
			}
		}
	}
}

// noLease is the lease of work no other replica is told about.
var noLease = cache.LocalLease()

// keepLease renews l every leaseTTL/3 until stop is called.
func keepLease(ctx context.Context, l *cache.Lease) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !l.Renew(ctx, leaseTTL) {
					return
				}
			}
		}
	}()
	return cancel
}
