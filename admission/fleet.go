package admission

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/cache"
)

// decidePoll is how often a replica waiting for another's decision looks for it.
const decidePoll = 10 * time.Millisecond

// decideOnce evaluates s, unless another replica of the fleet is evaluating it right now (a cache.Leaser KV: Redis):
// then it waits for that decision to appear in the shared KV and returns it, so that a digest is verified once for
// the whole fleet. The wait is bounded by the decision's own deadline; a holder that fails releases its lease (or it
// lapses) and a waiter decides itself.
func (g *view) decideOnce(ctx context.Context, s Subject) (Verdict, error) {
	leaser, ok := g.kv.(cache.Leaser)
	if !ok {
		return g.evaluate(ctx, s, 0)
	}
	rule := g.policy.Match(s.Upstream, s.Repository)
	ttl := g.timeoutFor(rule)
	deadline := time.Now().Add(ttl)
	name := decideLeaseName(g.ns, s.Upstream, s.Repository, s.Digest)
	decided := func() (Verdict, bool) {
		epoch, _ := g.epoch(ctx, s.Digest)
		d, ok := g.load(ctx, decisionKey(g.ns, s.Upstream, s.Repository, s.Digest, epoch))
		if ok {
			g.count(d.Verdict, "fleet")
		}
		return d.Verdict, ok
	}
	for {
		lease, err := leaser.Lease(ctx, name, ttl)
		if lease != nil {
			if d, ok := decided(); ok { // the last holder finished between the caller's look and this lease
				lease.Release(ctx)
				return d, nil
			}
		}
		if err != nil || lease != nil || time.Now().After(deadline) {
			if lease != nil {
				defer lease.Release(ctx)
			}
			return g.evaluate(ctx, s, 0)
		}
		for next := time.Now().Add(time.Second); time.Now().Before(next); {
			select {
			case <-ctx.Done():
				return Verdict{}, ctx.Err()
			case <-time.After(decidePoll):
			}
			if d, ok := decided(); ok {
				return d, nil
			}
		}
	}
}

// errLeaseBusy is holdLease's answer when another holder kept the lease for the whole wait.
var errLeaseBusy = errors.New("another replica holds it")

// holdLease takes the fleet-wide lease name in kv for a short read-modify-write, waiting at most wait for another
// holder to release it (or for it to lapse: its ttl is wait too). A KV that cannot lease (one process is the whole
// fleet) needs none: release is then a no-op. On errLeaseBusy, a KV error or ctx's end nothing is held.
func holdLease(ctx context.Context, kv KV, name string, wait time.Duration) (release func(), err error) {
	leaser, ok := kv.(cache.Leaser)
	if !ok {
		return func() {}, nil
	}
	deadline := time.Now().Add(wait)
	for {
		l, err := leaser.Lease(ctx, name, wait)
		switch {
		case err != nil:
			return nil, err
		case l != nil:
			return func() { l.Release(context.WithoutCancel(ctx)) }, nil
		case time.Now().After(deadline):
			return nil, fmt.Errorf("%w for %s", errLeaseBusy, wait)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
