package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
)

// ArtifactStore keeps content by digest: the signature and attestation artifacts the verifier reads (referrer
// manifests, layers, bundles), so that a re-decision or a second policy reads them locally. It must verify what it
// stores (Put commits only bytes that hash to the digest) and Get must verify what it reads. *cache.Content, the
// proxy's content store, implements it.
type ArtifactStore interface {
	Stat(ctx context.Context, dgst digest.Digest) (int64, error)
	Open(ctx context.Context, dgst digest.Digest, offset int64) (io.ReadCloser, error)
	Get(ctx context.Context, dgst digest.Digest, max int64) ([]byte, error)
	Put(ctx context.Context, dgst digest.Digest, r io.Reader) (int64, error)
}

var (
	_ ArtifactStore = (*cache.Content)(nil)
	_ ArtifactStore = (*cache.Pack)(nil)
)

// DefaultMissingEvidenceTTL is the default of WithMissingEvidenceTTL.
const DefaultMissingEvidenceTTL = 10 * time.Second

// maxArtifactManifest caps a stored referrer manifest read back: the verifier's own cap.
const maxArtifactManifest = 4 << 20

// maxMissing bounds how many "not there" answers an artifactSource remembers at once.
const maxMissing = 10000

// artifactSource is what the verifier reads one upstream through: content by digest (referrer manifests, layers,
// bundles) from the store when it is there and into it when it is read upstream, and, for a short while, the
// upstream's answer that a cosign tag is not there or that an image has no referrers, so that a burst of pulls of
// an unsigned image asks the upstream once. Tags always go upstream otherwise: they move. It decides nothing; the
// verifier checks sizes and digests of everything it reads, wherever it comes from.
//
// Storing is off the decision's path: a store commits durably (the filesystem driver syncs each object), which on a
// busy disk takes longer than the decision. A read of content being stored waits for it rather than asking the
// upstream again.
type artifactSource struct {
	next    verifier.Source
	store   ArtifactStore // nil: nothing is kept
	missing *missing      // nil: nothing is remembered

	mu      sync.Mutex
	storing map[digest.Digest]chan struct{} // Puts in flight, closed when done
}

var (
	_ verifier.Source             = (*artifactSource)(nil)
	_ verifier.ReferrersAPIKnower = (*artifactSource)(nil)
	_ verifier.ReferrersAPIKnower = (*upstream.Client)(nil)
)

// storeTimeout bounds one Put of an artifact, which outlives the decision that read it.
const storeTimeout = time.Minute

// Manifest reads a manifest by digest from the store first; a tag the upstream recently said is not there is not
// asked again until the answer lapses.
func (a *artifactSource) Manifest(ctx context.Context, repo, ref string, accept []string) ([]byte, string, digest.Digest, error) {
	dgst, byDigest := parseDigestRef(ref)
	if byDigest && a.store != nil {
		a.waitStored(ctx, dgst)
		if b, err := a.store.Get(ctx, dgst, maxArtifactManifest); err == nil {
			return b, "", dgst, nil
		}
	}
	key := "manifest\x00" + repo + "\x00" + ref
	if _, ok := a.missing.get(key); !byDigest && ok {
		return nil, "", "", fmt.Errorf("%s:%s: %w (remembered)", repo, ref, upstream.ErrNotFound)
	}
	body, mt, got, err := a.next.Manifest(ctx, repo, ref, accept)
	switch {
	case err != nil && !byDigest && errors.Is(err, upstream.ErrNotFound):
		a.missing.add(key, nil)
	case err == nil && byDigest && a.store != nil:
		if done, ok := a.startStoring(dgst); ok {
			go func() {
				defer done()
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
				defer cancel()
				_, _ = a.store.Put(sctx, dgst, bytes.NewReader(body)) // the store verifies the digest; a failure only costs a re-read
			}()
		}
	}
	return body, mt, got, err
}

// Blob streams a blob from the store when it is there (checked against its digest as it is read), else from the
// upstream, into the store as it is read: what is read to the end and hashes to dgst is kept.
func (a *artifactSource) Blob(ctx context.Context, repo string, dgst digest.Digest) (io.ReadCloser, int64, error) {
	if a.store != nil && dgst.Validate() == nil {
		a.waitStored(ctx, dgst)
		if n, err := a.store.Stat(ctx, dgst); err == nil {
			if rc, err := a.store.Open(ctx, dgst, 0); err == nil {
				return &verifiedBody{rc: rc, want: dgst, h: dgst.Algorithm().Hash()}, n, nil
			}
		}
	}
	rc, n, err := a.next.Blob(ctx, repo, dgst)
	if err != nil || a.store == nil {
		return rc, n, err
	}
	done, ok := a.startStoring(dgst)
	if !ok {
		return rc, n, nil // another read is storing it
	}
	return keep(ctx, a.store, dgst, rc, done), n, nil
}

// startStoring claims the storing of dgst; done releases it. ok is false when it is being stored already.
func (a *artifactSource) startStoring(dgst digest.Digest) (done func(), ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, busy := a.storing[dgst]; busy {
		return nil, false
	}
	if a.storing == nil {
		a.storing = map[digest.Digest]chan struct{}{}
	}
	ch := make(chan struct{})
	a.storing[dgst] = ch
	return func() {
		a.mu.Lock()
		delete(a.storing, dgst)
		a.mu.Unlock()
		close(ch)
	}, true
}

// waitStored waits while dgst is being stored.
func (a *artifactSource) waitStored(ctx context.Context, dgst digest.Digest) {
	a.mu.Lock()
	ch := a.storing[dgst]
	a.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
		}
	}
}

// Referrers lists the referrers of dgst; an image without any (an empty index, or no referrers API, whose fallback
// tag the verifier reads through Manifest) is remembered as such for a while.
func (a *artifactSource) Referrers(ctx context.Context, repo string, dgst digest.Digest, artifactType string) ([]byte, bool, error) {
	key := "referrers\x00" + repo + "\x00" + dgst.String() + "\x00" + artifactType
	if r, ok := a.missing.get(key); ok {
		return r.index, r.supported, nil
	}
	idx, supported, err := a.next.Referrers(ctx, repo, dgst, artifactType)
	if err == nil && (!supported || emptyIndex(idx)) {
		a.missing.add(key, &referrersAnswer{index: idx, supported: supported})
	}
	return idx, supported, err
}

// ReferrersAPI says whether the upstream has the referrers API, when the source it reads through knows.
func (a *artifactSource) ReferrersAPI() (supported, known bool) {
	if k, ok := a.next.(verifier.ReferrersAPIKnower); ok {
		return k.ReferrersAPI()
	}
	return false, false
}

// referrersAnswer is the upstream's answer to a referrers request that listed nothing.
type referrersAnswer struct {
	index     []byte // an empty index, or nil without the referrers API
	supported bool
}

// emptyIndex reports whether a referrers index lists nothing.
func emptyIndex(idx []byte) bool {
	var v struct {
		Manifests []json.RawMessage `json:"manifests"`
	}
	return json.Unmarshal(idx, &v) == nil && len(v.Manifests) == 0
}

// parseDigestRef reports whether a manifest reference is a digest, and which.
func parseDigestRef(ref string) (digest.Digest, bool) {
	if !strings.Contains(ref, ":") {
		return "", false
	}
	d, err := digest.Parse(ref)
	return d, err == nil
}

// verifiedBody reads a stored blob and fails at its end if the bytes do not hash to the digest (a corrupt store):
// the error says the evidence could not be read, not that it is bad.
type verifiedBody struct {
	rc   io.ReadCloser
	want digest.Digest
	h    hash.Hash
}

func (v *verifiedBody) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := digest.NewDigest(v.want.Algorithm(), v.h); got != v.want {
			return n, fmt.Errorf("%w: stored copy of %s is corrupt (%s)", upstream.ErrUnavailable, v.want, got)
		}
	}
	return n, err
}

func (v *verifiedBody) Close() error { return v.rc.Close() }

// keep returns rc, whose bytes are also written to store as dgst while they are read: the store commits them only
// if they are read to the end and hash to dgst. The store finishes on its own (then done is called): closing the
// body does not wait for it.
func keep(ctx context.Context, store ArtifactStore, dgst digest.Digest, rc io.ReadCloser, done func()) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		defer done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		defer cancel()
		_, err := store.Put(sctx, dgst, pr)
		// Put may return without reading (the object is there already): the reader stops taking bytes.
		pr.CloseWithError(cmpErr(err, io.ErrClosedPipe))
	}()
	return &keptBody{rc: rc, pw: pw}
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// keptBody tees a body into a pipe the store reads.
type keptBody struct {
	rc      io.ReadCloser
	pw      *io.PipeWriter
	ended   bool // the body was read to its end
	dropped bool // the store stopped taking bytes
	once    sync.Once
}

func (k *keptBody) Read(p []byte) (int, error) {
	n, err := k.rc.Read(p)
	if n > 0 && !k.dropped {
		if _, werr := k.pw.Write(p[:n]); werr != nil {
			k.dropped = true
		}
	}
	if err == io.EOF {
		k.ended = true
	}
	return n, err
}

func (k *keptBody) Close() error {
	err := k.rc.Close()
	k.once.Do(func() {
		if k.ended {
			k.pw.Close()
		} else {
			k.pw.CloseWithError(errors.New("blob not read to its end"))
		}
	})
	return err
}

// missing remembers, for ttl, that something was not there (and, for a referrers list, the answer that said so).
// It holds at most maxMissing answers; when full it forgets the lapsed ones, and remembers nothing new until there
// is room. A nil *missing remembers nothing.
type missing struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	answers map[string]missingAnswer
}

type missingAnswer struct {
	until     time.Time
	referrers *referrersAnswer
}

func newMissing(ttl time.Duration, now func() time.Time) *missing {
	if ttl <= 0 {
		return nil
	}
	return &missing{ttl: ttl, now: now, answers: map[string]missingAnswer{}}
}

// get returns the remembered answer for key, if it has not lapsed.
func (m *missing) get(key string) (*referrersAnswer, bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.answers[key]
	if ok && !m.now().Before(a.until) {
		delete(m.answers, key)
		return nil, false
	}
	return a.referrers, ok
}

// add remembers that key was not there, with the answer that said so.
func (m *missing) add(key string, r *referrersAnswer) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if len(m.answers) >= maxMissing {
		for k, a := range m.answers {
			if !now.Before(a.until) {
				delete(m.answers, k)
			}
		}
		if len(m.answers) >= maxMissing {
			return
		}
	}
	m.answers[key] = missingAnswer{until: now.Add(m.ttl), referrers: r}
}
