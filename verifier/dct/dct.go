package dct

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/theupdateframework/notary/client"
	"github.com/theupdateframework/notary/storage"
	"github.com/theupdateframework/notary/trustpinning"
	"github.com/theupdateframework/notary/tuf"
	"github.com/theupdateframework/notary/tuf/data"
	"github.com/theupdateframework/notary/tuf/signed"
	"github.com/theupdateframework/notary/tuf/utils"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/policy"
)

// Defaults of the options.
const (
	// DefaultRefresh is how long fetched trust data is used before it is fetched again.
	DefaultRefresh = time.Minute
	// DefaultRequestTimeout bounds one request to a notary server, response body included.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultMaxMetadataSize caps one trust metadata file (root, timestamp, snapshot, a targets role).
	DefaultMaxMetadataSize = 4 << 20
)

// Client answers for the notary trust roots of a policy. It is safe for concurrent use.
type Client struct {
	roots     map[string]*root
	transport http.RoundTripper
	refresh   time.Duration
	timeout   time.Duration
	maxSize   int64
	now       func() time.Time

	mu          sync.Mutex
	collections map[string]*collection // by root name + "\x00" + GUN
	flights     singleflight.Group
}

// root is a notary policy root with its pinned keys parsed.
type root struct {
	name   string
	n      policy.Notary
	pinned [][]byte // PKIX DER of each pinned public key
}

// collection is the last trust data read for one GUN under one root.
type collection struct {
	// cache is the TUF metadata seen so far: the library checks new metadata's versions against it (rollback).
	cache   *storage.MemoryStore
	targets map[string]target // by tag
	fetched time.Time
	expires time.Time // the earliest expiry of the metadata read
}

// target is one signed target.
type target struct {
	digest digest.Digest
	role   string
}

// Option configures a Client built by New.
type Option func(*Client) error

// WithTransport sets the transport to the notary servers (TLS roots, proxies). Default: http.DefaultTransport.
func WithTransport(rt http.RoundTripper) Option {
	return func(c *Client) error { c.transport = rt; return nil }
}

// WithRefresh sets how long trust data is used before it is fetched again; a server that is down then leaves
// the last trust data in use until it expires. It must be positive. Default: DefaultRefresh (1m).
func WithRefresh(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("dct: refresh must be positive, got %v", d)
		}
		c.refresh = d
		return nil
	}
}

// WithRequestTimeout bounds one request to a notary server. It must be positive. Default:
// DefaultRequestTimeout (10s).
func WithRequestTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("dct: request timeout must be positive, got %v", d)
		}
		c.timeout = d
		return nil
	}
}

// WithMaxMetadataSize caps one trust metadata file, in bytes; a larger one fails the fetch. It must be
// positive. Default: DefaultMaxMetadataSize (4 MiB).
func WithMaxMetadataSize(n int64) Option {
	return func(c *Client) error {
		if n <= 0 {
			return fmt.Errorf("dct: max metadata size must be positive, got %d", n)
		}
		c.maxSize = n
		return nil
	}
}

// WithClock sets the clock that judges refresh and cached expiry (the TUF checks use the system clock).
// Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *Client) error { c.now = now; return nil }
}

// New parses the pinned keys of the notary roots among roots (the others are ignored). A key that cannot be
// parsed is an error naming its root.
func New(roots map[string]policy.TrustRoot, opts ...Option) (*Client, error) {
	c := &Client{
		roots: map[string]*root{}, transport: http.DefaultTransport, refresh: DefaultRefresh,
		timeout: DefaultRequestTimeout, maxSize: DefaultMaxMetadataSize, now: time.Now,
		collections: map[string]*collection{},
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(roots)) {
		tr := roots[name]
		if tr.Notary == nil {
			continue
		}
		r := &root{name: name, n: *tr.Notary}
		for i, p := range tr.Notary.RootKeysPEM {
			der, err := pinnedKey(p)
			if err != nil {
				return nil, fmt.Errorf("dct: trust root %s: root key %d: %w", name, i+1, err)
			}
			r.pinned = append(r.pinned, der)
		}
		c.roots[name] = r
	}
	return c, nil
}

// pinnedKey returns the PKIX DER of a PEM public key or of a PEM certificate's key.
func pinnedKey(p []byte) ([]byte, error) {
	block, _ := pem.Decode(p)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type == "CERTIFICATE" {
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKIXPublicKey(cert.PublicKey)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	return x509.MarshalPKIXPublicKey(pub)
}

// Has reports whether name is a notary root of the policy.
func (c *Client) Has(name string) bool { _, ok := c.roots[name]; return ok }

// Tag is what a root's trust data says about a tag.
type Tag struct {
	// Digest is the signed target's digest; "" when the tag is not signed (Reason says so).
	Digest digest.Digest
	// Role is the role that signed it, e.g. targets/releases.
	Role string
	// Reason says why there is no digest.
	Reason string
}

// Tag returns the digest the root's trust data signs for tag in the collection of upstream/repository. Its
// error means the trust data could not be read or did not verify.
func (c *Client) Tag(ctx context.Context, rootName, upstream, repository, tag string) (Tag, error) {
	r, col, gun, err := c.collection(ctx, rootName, upstream, repository)
	if err != nil {
		return Tag{}, err
	}
	t, ok := col.targets[tag]
	if !ok {
		return Tag{Reason: fmt.Sprintf("tag %s is not signed in the trust data of %s (%s)", tag, gun, r.roles())}, nil
	}
	return Tag{Digest: t.digest, Role: t.role}, nil
}

// Signed reports whether dgst is a signed target of the root's collection for upstream/repository, as a
// signature result. Its error means the trust data could not be read or did not verify.
func (c *Client) Signed(ctx context.Context, rootName, upstream, repository string, dgst digest.Digest) (policy.SignatureResult, error) {
	r, col, gun, err := c.collection(ctx, rootName, upstream, repository)
	if err != nil {
		return policy.SignatureResult{}, err
	}
	var tags []string
	for name, t := range col.targets {
		if t.digest == dgst {
			tags = append(tags, name)
		}
	}
	if len(tags) == 0 {
		return policy.SignatureResult{Reason: fmt.Sprintf("%s is not a signed target in the trust data of %s (%s)", dgst, gun, r.roles())}, nil
	}
	return policy.SignatureResult{Verified: true, Format: "notary"}, nil
}

// roles names the roles whose targets count, for messages.
func (r *root) roles() string {
	if len(r.n.Delegations) == 0 {
		return "role targets"
	}
	return "roles " + strings.Join(r.n.Delegations, ", ")
}

// collection returns the trust data of a root's collection: cached while fresh, else fetched, else (server
// unreachable) cached until it expires.
func (c *Client) collection(ctx context.Context, rootName, upstream, repository string) (*root, *collection, string, error) {
	r, ok := c.roots[rootName]
	if !ok {
		return nil, nil, "", fmt.Errorf("dct: %q is not a notary trust root", rootName)
	}
	gun := r.n.CollectionFor(upstream, repository)
	key := rootName + "\x00" + gun
	c.mu.Lock()
	prev := c.collections[key]
	c.mu.Unlock()
	now := c.now()
	if prev != nil && now.Sub(prev.fetched) < c.refresh && now.Before(prev.expires) {
		return r, prev, gun, nil
	}
	ch := c.flights.DoChan(key, func() (any, error) {
		col, err := c.fetch(r, gun, prev)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.collections[key] = col
		c.mu.Unlock()
		return col, nil
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return nil, nil, "", fmt.Errorf("trust data of %s from %s: %w", gun, r.n.Server, unreachable{ctx.Err()})
	}
	if res.Err == nil {
		return r, res.Val.(*collection), gun, nil
	}
	var down unreachable
	if errors.As(res.Err, &down) && prev != nil && now.Before(prev.expires) {
		return r, prev, gun, nil
	}
	return nil, nil, "", fmt.Errorf("trust data of %s from %s: %w", gun, r.n.Server, res.Err)
}

// fetch reads and verifies a collection's trust data, starting from the metadata seen before (prev) so that
// the library can refuse a rollback.
func (c *Client) fetch(r *root, gun string, prev *collection) (*collection, error) {
	cache := storage.NewMemoryStore(nil)
	if prev != nil {
		for _, role := range []data.RoleName{data.CanonicalRootRole, data.CanonicalTimestampRole, data.CanonicalSnapshotRole} {
			if b, err := prev.cache.GetSized(role.String(), -1); err == nil {
				_ = cache.Set(role.String(), b)
			}
		}
	}
	remote, err := storage.NewNotaryServerStore(r.n.Server, data.GUN(gun), &bounded{next: c.transport, timeout: c.timeout, max: c.maxSize})
	if err != nil {
		return nil, err
	}
	repo, _, err := client.LoadTUFRepo(client.TUFLoadOptions{
		GUN: data.GUN(gun), Cache: cache, RemoteStore: remote,
		// Trust is pinned below, against the policy's keys, on every read; the library's own pinning names
		// keys by certificate ID, which a public key alone does not give.
		TrustPinning: trustpinning.TrustPinConfig{},
	})
	if err != nil {
		return nil, explain(err)
	}
	if err := r.checkPinned(repo); err != nil {
		return nil, err
	}
	col := &collection{cache: cache, targets: map[string]target{}, fetched: c.now(), expires: earliestExpiry(repo)}
	var roles []data.RoleName
	for _, d := range r.n.Delegations {
		roles = append(roles, data.RoleName(d))
	}
	list, err := client.NewReadOnly(repo).ListTargets(roles...)
	if err != nil {
		return nil, err
	}
	for _, t := range list {
		h, ok := t.Hashes["sha256"]
		if !ok || len(h) != 32 {
			continue // not an image target Docker would pull
		}
		col.targets[t.Name] = target{digest: digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h)), role: t.Role.String()}
	}
	return col, nil
}

// checkPinned checks that the collection's root metadata carries a valid signature by a key the policy pins:
// the library has checked the root against itself (and against the previous root on rotation); this ties it
// to the policy.
func (r *root) checkPinned(repo *tuf.Repo) error {
	if repo.Root == nil {
		return errors.New("no root metadata")
	}
	s, err := repo.Root.ToSigned()
	if err != nil {
		return err
	}
	role, err := repo.Root.BuildBaseRole(data.CanonicalRootRole)
	if err != nil {
		return err
	}
	pinned := data.BaseRole{Name: data.CanonicalRootRole, Threshold: 1, Keys: map[string]data.PublicKey{}}
	for id, k := range role.Keys {
		der, err := keyDER(k)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(r.pinned, func(p []byte) bool { return string(p) == string(der) }) {
			pinned.Keys[id] = k
		}
	}
	if len(pinned.Keys) == 0 {
		return fmt.Errorf("root metadata is signed by %s, none of which trust root %s pins", keyIDs(role.Keys), r.name)
	}
	if err := signed.VerifySignatures(s, pinned); err != nil {
		return fmt.Errorf("root metadata has no valid signature by a key trust root %s pins: %w", r.name, err)
	}
	return nil
}

// keyDER returns the PKIX DER of a TUF public key, the certificate's key for x509 keys.
func keyDER(k data.PublicKey) ([]byte, error) {
	switch k.Algorithm() {
	case data.ECDSAx509Key, data.RSAx509Key:
		cert, err := utils.LoadCertFromPEM(k.Public())
		if err != nil {
			return nil, err
		}
		return x509.MarshalPKIXPublicKey(cert.PublicKey)
	case data.ECDSAKey, data.RSAKey:
		return k.Public(), nil
	}
	return nil, fmt.Errorf("key type %s", k.Algorithm())
}

// keyIDs lists key IDs, shortened, for messages.
func keyIDs(keys map[string]data.PublicKey) string {
	var ids []string
	for id := range keys {
		ids = append(ids, id[:min(len(id), 12)])
	}
	slices.Sort(ids)
	return "key " + strings.Join(ids, ", ")
}

// earliestExpiry is when the first of the metadata read expires: trust data is not used past it.
func earliestExpiry(repo *tuf.Repo) time.Time {
	var times []time.Time
	if repo.Root != nil {
		times = append(times, repo.Root.Signed.Expires)
	}
	if repo.Timestamp != nil {
		times = append(times, repo.Timestamp.Signed.Expires)
	}
	if repo.Snapshot != nil {
		times = append(times, repo.Snapshot.Signed.Expires)
	}
	for _, t := range repo.Targets {
		times = append(times, t.Signed.Expires)
	}
	if len(times) == 0 {
		return time.Time{}
	}
	return slices.MinFunc(times, func(a, b time.Time) int { return a.Compare(b) })
}
