package cache

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Tiered is a KV with a local tier in front of a shared one: what this replica wrote or read recently is answered
// locally, and a shared store outage degrades to the local tier instead of failing. Writes go to both; a local
// copy of a value read from the shared tier lives at most maxLocal, and never past its shared TTL when the shared
// tier can tell it (TTLGetter).
//
// A local copy can be stale for up to maxLocal after another replica changed the value. For keys whose changes
// must be seen at once (a digest's facts epoch), WithInvalidation has every change announced on a Bus so that
// every replica drops its copy when the notice arrives.
type Tiered struct {
	local    KV
	shared   KV
	maxLocal time.Duration
	truth    []string // WithSharedFirst's prefixes

	// Invalidation, when bus is set.
	bus       Bus
	busHealth HealthChecker // nil when the bus cannot tell
	prefixes  []string
	replica   string        // this Tiered's id in its notices, to skip its own
	gen       atomic.Uint64 // bumped by every change of an invalidated key: a shared read that spans one is not kept
	purge     atomic.Uint64 // bumped by every gap: local copies stamped with an older value are misses
	cancel    func()
}

var (
	_ KV            = (*Tiered)(nil)
	_ HealthChecker = (*Tiered)(nil)
	_ Prefetcher    = (*Tiered)(nil)
)

// Prefetcher is a KV with a local tier that can fill it for several keys at once (Tiered.Prefetch).
type Prefetcher interface {
	// Prefetch reads the keys the local tier cannot answer, in one round trip, into the local tier.
	Prefetch(ctx context.Context, keys ...string)
	// Peek answers from the local tier only: hit says it could, with the value or an error wrapping ErrNotFound.
	Peek(ctx context.Context, key string) (val []byte, hit bool, err error)
}

// TieredOption configures a Tiered.
type TieredOption func(*Tiered)

// InvalidationTopic is the Bus topic on which a Tiered with WithInvalidation announces changed keys.
const InvalidationTopic = "kv-invalidate"

// WithInvalidation announces every Set and Delete of a key starting with one of prefixes on bus (topic
// InvalidationTopic), and drops this replica's local copy of such a key when another replica announces it, so a
// change is seen fleet-wide within the bus's delivery time (milliseconds on Redis) instead of after maxLocal. When
// the bus says notices may have been lost (GapSubscriber), every local copy of such a key is dropped; while the bus
// says it is down (HealthChecker), such keys are read from the shared tier, and the local copy is used only if
// that fails. Tiered does not own bus: close it after the Tiered. Default: no invalidation.
func WithInvalidation(bus Bus, prefixes ...string) TieredOption {
	return func(t *Tiered) {
		t.bus = bus
		t.prefixes = append(t.prefixes, prefixes...)
	}
}

// WithSharedFirst has keys starting with one of prefixes read from the shared tier first, every time, and from the
// local copy only when the shared tier is unavailable: for values that must never be taken from a copy that
// another replica's change has not reached yet, such as the facts a decision is made on (a scan report posted on
// another replica: its notice may arrive after the facts epoch it moved was read). Default: none.
func WithSharedFirst(prefixes ...string) TieredOption {
	return func(t *Tiered) { t.truth = append(t.truth, prefixes...) }
}

// NewTiered layers local in front of shared. maxLocal bounds how long a value read from the shared tier is kept
// locally; default (<= 0) 30s. With WithInvalidation it subscribes to the bus before returning (a RedisBus waits a
// few seconds at most for the server).
func NewTiered(local, shared KV, maxLocal time.Duration, opts ...TieredOption) *Tiered {
	if maxLocal <= 0 {
		maxLocal = 30 * time.Second
	}
	t := &Tiered{local: local, shared: shared, maxLocal: maxLocal}
	for _, o := range opts {
		o(t)
	}
	if t.bus != nil {
		var id [8]byte
		_, _ = rand.Read(id[:]) // never fails
		t.replica = hex.EncodeToString(id[:])
		t.busHealth, _ = t.bus.(HealthChecker)
		if gs, ok := t.bus.(GapSubscriber); ok {
			t.cancel = gs.SubscribeGaps(InvalidationTopic, t.onNotice, t.onGap)
		} else {
			t.cancel = t.bus.Subscribe(InvalidationTopic, t.onNotice)
		}
	}
	return t
}

// busDown reports whether the bus says notices may be missed right now: an invalidated key is then read from the
// shared tier first, as a WithSharedFirst key always is.
func (t *Tiered) busDown() bool {
	return t.busHealth != nil && t.busHealth.Healthy() != nil
}

// sharedFirst reports whether key is a WithSharedFirst key.
func (t *Tiered) sharedFirst(key string) bool { return hasAnyPrefix(key, t.truth) }

func hasAnyPrefix(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// invalidated reports whether key's changes are announced.
func (t *Tiered) invalidated(key string) bool {
	return t.bus != nil && hasAnyPrefix(key, t.prefixes)
}

// Get answers from the local tier, else from the shared one (copying the value locally). A shared outage is a
// miss, not an error: the caller works on without shared state. For an invalidated key, the local tier also
// remembers that the shared one does not have it (a facts epoch of a digest nobody posted a report for), so that a
// warm read makes no round trip: a Set anywhere announces the key and drops that memory.
func (t *Tiered) Get(ctx context.Context, key string) ([]byte, error) {
	inv, truth := t.invalidated(key), t.sharedFirst(key)
	if truth || inv && t.busDown() {
		// The shared tier is the truth (or notices may be missed right now), the local copy only a fallback.
		gen := t.gen.Load()
		v, ttl, err := t.getShared(ctx, key)
		if errors.Is(err, ErrUnavailable) {
			if lv, hit, lerr := t.getLocal(ctx, key, inv); hit && lerr == nil {
				return lv, nil
			}
			return nil, errors.Join(ErrNotFound, err)
		}
		if err == nil && truth {
			t.keep(ctx, key, inv, gen, Entry{Val: v, TTL: ttl}) // the fallback for an outage
		}
		return v, err
	}
	if v, hit, err := t.getLocal(ctx, key, inv); hit {
		return v, err
	}
	gen := t.gen.Load()
	v, ttl, err := t.getShared(ctx, key)
	t.keep(ctx, key, inv, gen, Entry{Val: v, TTL: ttl, Err: err})
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil, errors.Join(ErrNotFound, err)
		}
		return nil, err
	}
	return v, nil
}

// keep copies a shared read to the local tier: a value for up to ttl, the absence of an invalidated key for up to
// maxLocal. Nothing is kept when an invalidated key may have changed during the read (gen moved), nor when the read
// failed otherwise.
func (t *Tiered) keep(ctx context.Context, key string, inv bool, gen uint64, e Entry) {
	if inv && t.gen.Load() != gen {
		return
	}
	switch {
	case e.Err == nil:
		_ = t.setLocal(ctx, key, e.Val, e.TTL, inv)
	case inv && errors.Is(e.Err, ErrNotFound) && !errors.Is(e.Err, ErrUnavailable):
		_ = t.local.Set(ctx, key, t.stamp(localAbsent, nil), t.maxLocal)
	default:
		return
	}
	if inv && t.gen.Load() != gen { // a notice arrived while we stored: what we kept may be old
		_ = t.local.Delete(ctx, key)
	}
}

// Prefetch reads, in one round trip when the shared tier is a BatchGetter, every key the local tier cannot answer,
// and keeps what it finds locally as Get would: a caller about to read several keys (a decision, its epoch, a
// grant) pays at most one round trip for all of them. Errors are dropped: a later Get asks again.
func (t *Tiered) Prefetch(ctx context.Context, keys ...string) {
	bg, ok := t.shared.(BatchGetter)
	if !ok {
		return
	}
	var miss []string
	var invs []bool
	busDown := t.busDown()
	for _, k := range keys {
		inv := t.invalidated(k)
		if t.sharedFirst(k) || inv && busDown {
			continue // Get reads the shared tier for these anyway
		}
		if _, hit, _ := t.getLocal(ctx, k, inv); !hit {
			miss, invs = append(miss, k), append(invs, inv)
		}
	}
	if len(miss) == 0 {
		return
	}
	gen := t.gen.Load()
	entries, err := bg.GetBatch(ctx, miss)
	if err != nil {
		return
	}
	for i, e := range entries {
		if e.TTL <= 0 || e.TTL > t.maxLocal {
			e.TTL = t.maxLocal
		}
		t.keep(ctx, miss[i], invs[i], gen, e)
	}
}

// Peek implements Prefetcher: the local tier's answer, without asking the shared one. A WithSharedFirst key's local
// copy is never a hit, nor, while the bus is down, an invalidated key's (it may be stale).
func (t *Tiered) Peek(ctx context.Context, key string) ([]byte, bool, error) {
	inv := t.invalidated(key)
	if t.sharedFirst(key) || inv && t.busDown() {
		return nil, false, nil
	}
	return t.getLocal(ctx, key, inv)
}

// getShared reads the shared tier, with how long a local copy may live.
func (t *Tiered) getShared(ctx context.Context, key string) ([]byte, time.Duration, error) {
	ttl := t.maxLocal
	if tg, ok := t.shared.(TTLGetter); ok {
		v, left, err := tg.GetTTL(ctx, key)
		if left > 0 && left < ttl {
			ttl = left
		}
		return v, ttl, err
	}
	v, err := t.shared.Get(ctx, key)
	return v, ttl, err
}

// Local copies of invalidated keys carry the purge count they were stored under (8 bytes, big-endian) and a kind
// byte (value or absent) before the value, so that a gap drops them all at once.
const (
	localAbsent byte = iota
	localValue
)

// stamp prefixes val with the purge count and kind.
func (t *Tiered) stamp(kind byte, val []byte) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 9+len(val)), t.purge.Load())
	return append(append(b, kind), val...)
}

// getLocal answers from the local tier: hit says it could, with the value or, for an invalidated key known to be
// absent from the shared tier, an error wrapping ErrNotFound.
func (t *Tiered) getLocal(ctx context.Context, key string, inv bool) (val []byte, hit bool, err error) {
	v, err := t.local.Get(ctx, key)
	if err != nil {
		return nil, false, nil
	}
	if !inv {
		return v, true, nil
	}
	if len(v) < 9 || binary.BigEndian.Uint64(v) != t.purge.Load() {
		return nil, false, nil
	}
	if v[8] == localAbsent {
		return nil, true, fmt.Errorf("%w: %q", ErrNotFound, key)
	}
	return v[9:], true, nil
}

func (t *Tiered) setLocal(ctx context.Context, key string, val []byte, ttl time.Duration, inv bool) error {
	if inv {
		val = t.stamp(localValue, val)
	}
	return t.local.Set(ctx, key, val, ttl)
}

// TTLGetter is a KV that can tell a key's remaining time to live (0: none) with its value. *Redis implements it.
type TTLGetter interface {
	GetTTL(ctx context.Context, key string) ([]byte, time.Duration, error)
}

var _ TTLGetter = (*Redis)(nil)

// Set writes both tiers, and announces an invalidated key. It fails only when the local tier fails; a shared
// outage (or a failed announcement) is returned wrapped in ErrUnavailable after the local write succeeded, so
// callers may log it and go on.
func (t *Tiered) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	inv := t.invalidated(key)
	if inv {
		t.gen.Add(1)
	}
	if err := t.setLocal(ctx, key, val, ttl, inv); err != nil {
		return err
	}
	if err := t.shared.Set(ctx, key, val, ttl); err != nil {
		return err
	}
	return t.announce(ctx, key, inv)
}

// Delete removes key from both tiers, and announces an invalidated key.
func (t *Tiered) Delete(ctx context.Context, key string) error {
	inv := t.invalidated(key)
	if inv {
		t.gen.Add(1)
	}
	if err := errors.Join(t.local.Delete(ctx, key), t.shared.Delete(ctx, key)); err != nil {
		return err
	}
	return t.announce(ctx, key, inv)
}

func (t *Tiered) announce(ctx context.Context, key string, inv bool) error {
	if !inv {
		return nil
	}
	return t.bus.Publish(ctx, InvalidationTopic, []byte(t.replica+key))
}

// onNotice drops the local copy of a key another replica changed.
func (t *Tiered) onNotice(msg []byte) {
	if len(msg) < len(t.replica) || string(msg[:len(t.replica)]) == t.replica {
		return
	}
	t.gen.Add(1)
	_ = t.local.Delete(context.Background(), string(msg[len(t.replica):]))
}

// onGap drops every local copy of an invalidated key: notices about them may have been lost.
func (t *Tiered) onGap() {
	t.gen.Add(1)
	t.purge.Add(1)
}

// DropLocal drops the local copies of the keys that start with one of prefixes, when the local tier can (a
// *Memory), and returns how many; the shared tier keeps them until their TTL.
func (t *Tiered) DropLocal(prefixes ...string) int {
	if d, ok := t.local.(interface{ DropLocal(...string) int }); ok {
		return d.DropLocal(prefixes...)
	}
	return 0
}

// Healthy implements HealthChecker: the shared tier's health and the invalidation bus's, when they can tell.
func (t *Tiered) Healthy() error {
	var errs []error
	if hc, ok := t.shared.(HealthChecker); ok {
		errs = append(errs, hc.Healthy())
	}
	if t.busHealth != nil {
		errs = append(errs, t.busHealth.Healthy())
	}
	return errors.Join(errs...)
}

// Close stops listening for notices and closes both tiers (not the bus).
func (t *Tiered) Close() error {
	if t.cancel != nil {
		t.cancel()
	}
	return errors.Join(t.local.Close(), t.shared.Close())
}
