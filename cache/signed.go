package cache

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// MinStateKeySize is the shortest HMAC key NewSigned and NewSignedCollections accept: 32 bytes.
const MinStateKeySize = 32

const (
	macSize = sha256.Size
	expSize = 8
	// expiredGrace is how long past its signed expiry a value still counts as merely expired (replica clocks
	// differ a little; Redis removes it meanwhile). Later than that, somebody kept it alive: it counts as rejected.
	expiredGrace = time.Minute
	// rejectLogEvery spaces the log lines about rejected values after the first.
	rejectLogEvery = time.Minute
)

// Domain separation: a MAC made for one kind of record never verifies as another.
const (
	kvDomain         = "portcullis kv v1\x00"
	collectionDomain = "portcullis collection v1\x00"
)

// SignedOption configures a SignedKV or SignedCollections.
type SignedOption func(*macGuard)

// WithSignedLogger sets where rejected values are reported. Default slog.Default().
func WithSignedLogger(l *slog.Logger) SignedOption {
	return func(g *macGuard) {
		if l != nil {
			g.log = l
		}
	}
}

// WithSignedClock sets the clock used for signed expiry times, for tests. Default time.Now.
func WithSignedClock(now func() time.Time) SignedOption {
	return func(g *macGuard) {
		if now != nil {
			g.now = now
		}
	}
}

// macGuard holds the key and counts and reports what fails verification.
type macGuard struct {
	key  []byte
	pool sync.Pool // of hash.Hash
	log  *slog.Logger
	now  func() time.Time

	rejected atomic.Int64
	mu       sync.Mutex
	lastLog  time.Time
	sinceLog int64
}

func newMACGuard(key []byte, opts []SignedOption) (*macGuard, error) {
	if len(key) < MinStateKeySize {
		return nil, fmt.Errorf("cache: state key of %d bytes is too short: at least %d random bytes (head -c 32 /dev/urandom | base64)",
			len(key), MinStateKeySize)
	}
	g := &macGuard{key: append([]byte(nil), key...), log: slog.Default(), now: time.Now}
	g.pool.New = func() any { return hmac.New(sha256.New, g.key) }
	for _, o := range opts {
		o(g)
	}
	return g, nil
}

// mac computes the MAC of a domain and the length-prefixed parts.
func (g *macGuard) mac(dst []byte, domain string, parts ...[]byte) []byte {
	h := g.pool.Get().(hash.Hash)
	defer g.pool.Put(h)
	h.Reset()
	h.Write([]byte(domain))
	var n [4]byte
	for _, p := range parts {
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	return h.Sum(dst)
}

// reject counts a value that failed verification and logs it: the first one at once, later ones at most once a
// minute, as a count. A flood of forged values cannot flood the log.
func (g *macGuard) reject(what, name, why string) {
	total := g.rejected.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sinceLog++
	now := g.now()
	if total != 1 && now.Sub(g.lastLog) < rejectLogEvery {
		return
	}
	g.log.Warn("shared state: a value failed its integrity check and was ignored; something other than Portcullis wrote it, or a replica has another state key",
		"kind", what, "name", name, "reason", why, "rejectedSinceLastReport", g.sinceLog, "rejectedTotal", total)
	g.lastLog, g.sinceLog = now, 0
}

// SignedKV is a KV whose values carry an HMAC-SHA256, under a key only Portcullis holds, over the key name, the
// value and its expiry time. A value with a missing or bad MAC reads as absent (ErrNotFound), is counted
// (Rejected) and logged, so that a party that can write to the shared store but lacks the key can neither make a
// value Portcullis accepts, nor move a valid value to another key, nor keep one alive past the expiry it was set
// with. It does not stop a replay of an older value under its own key within that value's lifetime, nor a
// deletion. Stored form: value | expiry (8 bytes, Unix ms, 0 = none) | MAC (32 bytes).
type SignedKV struct {
	kv KV
	g  *macGuard
}

var (
	_ KV            = (*SignedKV)(nil)
	_ TTLGetter     = (*SignedKV)(nil)
	_ HealthChecker = (*SignedKV)(nil)
)

// NewSigned wraps kv. key must be at least MinStateKeySize (32) bytes; every replica needs the same one.
func NewSigned(kv KV, key []byte, opts ...SignedOption) (*SignedKV, error) {
	g, err := newMACGuard(key, opts)
	if err != nil {
		return nil, err
	}
	return &SignedKV{kv: kv, g: g}, nil
}

// Rejected returns how many values failed verification since the start.
func (s *SignedKV) Rejected() int64 { return s.g.rejected.Load() }

// Get implements KV.
func (s *SignedKV) Get(ctx context.Context, key string) ([]byte, error) {
	raw, err := s.kv.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	v, _, err := s.open(key, raw)
	return v, err
}

// GetTTL implements TTLGetter when the wrapped KV does; the TTL is never past the signed expiry.
func (s *SignedKV) GetTTL(ctx context.Context, key string) ([]byte, time.Duration, error) {
	tg, ok := s.kv.(TTLGetter)
	if !ok {
		v, err := s.Get(ctx, key)
		return v, 0, err
	}
	raw, ttl, err := tg.GetTTL(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	v, left, err := s.open(key, raw)
	if err != nil {
		return nil, 0, err
	}
	if left > 0 && (ttl <= 0 || left < ttl) {
		ttl = left
	}
	return v, ttl, nil
}

// Set implements KV.
func (s *SignedKV) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	var exp uint64
	if ttl > 0 {
		exp = uint64(s.g.now().Add(ttl).UnixMilli()) + 1 // rounded up: never before the store's own expiry
	}
	buf := make([]byte, 0, len(val)+expSize+macSize)
	buf = append(buf, val...)
	buf = binary.BigEndian.AppendUint64(buf, exp)
	buf = s.g.mac(buf, kvDomain, []byte(key), buf[len(val):], val)
	return s.kv.Set(ctx, key, buf, ttl)
}

// Delete implements KV.
func (s *SignedKV) Delete(ctx context.Context, key string) error { return s.kv.Delete(ctx, key) }

// Healthy implements HealthChecker for the wrapped KV; nil when it cannot tell.
func (s *SignedKV) Healthy() error {
	if hc, ok := s.kv.(HealthChecker); ok {
		return hc.Healthy()
	}
	return nil
}

// Close closes the wrapped KV.
func (s *SignedKV) Close() error { return s.kv.Close() }

// open verifies a stored value and returns it with the time it has left (0: no expiry).
func (s *SignedKV) open(key string, raw []byte) ([]byte, time.Duration, error) {
	absent := fmt.Errorf("%w: %q", ErrNotFound, key)
	if len(raw) < expSize+macSize {
		s.g.reject("kv", key, "too short to carry a MAC")
		return nil, 0, absent
	}
	n := len(raw) - expSize - macSize
	val, expB, mac := raw[:n:n], raw[n:n+expSize], raw[n+expSize:]
	if !hmac.Equal(mac, s.g.mac(nil, kvDomain, []byte(key), expB, val)) {
		s.g.reject("kv", key, "bad MAC")
		return nil, 0, absent
	}
	exp := binary.BigEndian.Uint64(expB)
	if exp == 0 {
		return val, 0, nil
	}
	left := time.UnixMilli(int64(exp)).Sub(s.g.now())
	if left <= 0 {
		if -left > expiredGrace {
			s.g.reject("kv", key, fmt.Sprintf("kept %s past its signed expiry", (-left).Round(time.Second)))
		}
		return nil, 0, absent
	}
	return val, left, nil
}

// SignedCollections is Collections whose records carry an HMAC-SHA256 over the collection name, the record id and
// the value, as SignedKV does for a KV: a record with a missing or bad MAC is left out of All, counted (Rejected)
// and logged. It cannot stop a deletion or a replay of a record once stored under the same id. Stored form:
// value | MAC (32 bytes).
type SignedCollections struct {
	c Collections
	g *macGuard
}

var _ Collections = (*SignedCollections)(nil)

// NewSignedCollections wraps c. key must be at least MinStateKeySize (32) bytes; every replica needs the same one.
func NewSignedCollections(c Collections, key []byte, opts ...SignedOption) (*SignedCollections, error) {
	g, err := newMACGuard(key, opts)
	if err != nil {
		return nil, err
	}
	return &SignedCollections{c: c, g: g}, nil
}

// Rejected returns how many records failed verification since the start (a bad record counts on every All).
func (s *SignedCollections) Rejected() int64 { return s.g.rejected.Load() }

// Put implements Collections.
func (s *SignedCollections) Put(ctx context.Context, collection, id string, val []byte) error {
	if err := checkSize("record", val); err != nil {
		return err
	}
	buf := append(make([]byte, 0, len(val)+macSize), val...)
	buf = s.g.mac(buf, collectionDomain, []byte(collection), []byte(id), val)
	return s.c.Put(ctx, collection, id, buf)
}

// Delete implements Collections.
func (s *SignedCollections) Delete(ctx context.Context, collection, id string) error {
	return s.c.Delete(ctx, collection, id)
}

// All implements Collections, leaving out records that fail verification.
func (s *SignedCollections) All(ctx context.Context, collection string) (map[string][]byte, error) {
	recs, err := s.c.All(ctx, collection)
	if err != nil {
		return nil, err
	}
	for id, raw := range recs {
		if len(raw) < macSize {
			s.g.reject("collection", collection+"/"+id, "too short to carry a MAC")
			delete(recs, id)
			continue
		}
		n := len(raw) - macSize
		val, mac := raw[:n:n], raw[n:]
		if !hmac.Equal(mac, s.g.mac(nil, collectionDomain, []byte(collection), []byte(id), val)) {
			s.g.reject("collection", collection+"/"+id, "bad MAC")
			delete(recs, id)
			continue
		}
		recs[id] = val
	}
	return recs, nil
}

// Healthy implements HealthChecker for the wrapped Collections; nil when it cannot tell.
func (s *SignedCollections) Healthy() error {
	if hc, ok := s.c.(HealthChecker); ok {
		return hc.Healthy()
	}
	return nil
}
