package admin

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/httpauth"
	"github.com/portcullis/portcullis/policy"
)

// readToken is a read-role credential; "secret" (StaticToken) is the write one.
const readToken = "viewer-token"

// testAuth is StaticToken("secret") as the write principal admin, and readToken as the read principal viewer.
type testAuth struct{}

func (testAuth) Authenticate(r *http.Request) (Principal, error) {
	if tok, ok := httpauth.Bearer(r.Header.Get("Authorization")); ok && tok == readToken {
		return Principal{Name: "viewer", Role: RoleRead}, nil
	}
	return StaticToken("secret").Authenticate(r)
}

// fakeEvidence says an image is signed by release when its digest is in signed, and has the scan report in scans
// (none when absent).
type fakeEvidence struct {
	mu     sync.Mutex
	signed map[digest.Digest]bool
	scans  map[digest.Digest]*policy.ScanReport
}

func (e *fakeEvidence) Gather(_ context.Context, s admission.Subject, req policy.Requirements, _ admission.GatherOptions) (policy.Facts, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := policy.Facts{Signatures: map[string]policy.SignatureResult{}}
	for _, root := range req.SignedBy.Roots() {
		if e.signed[s.Digest] {
			f.Signatures[root] = policy.SignatureResult{Verified: true, Format: "cosign-tag"}
		} else {
			f.Signatures[root] = policy.SignatureResult{Reason: "no signatures found"}
		}
	}
	if req.Scan != nil {
		f.Scan = e.scans[s.Digest]
	}
	return f, nil
}

// fakeResolver names the images it holds, by "upstream/repo:tag" and "upstream/repo@digest", on the one
// configured upstream ghcr.io; it also serves their manifests.
type fakeResolver struct {
	images map[string]admission.Subject
}

func (f *fakeResolver) Resolve(_ context.Context, ref string) (admission.Subject, error) {
	if ref == "" || strings.ToLower(ref) != ref || strings.Count(ref, "@") > 1 {
		return admission.Subject{}, fmt.Errorf("%w: %q is not a reference", ErrBadImage, ref)
	}
	if up, _, _ := strings.Cut(ref, "/"); up != "ghcr.io" {
		return admission.Subject{}, fmt.Errorf("%w: image %s: upstream %q is not configured", ErrBadImage, ref, up)
	}
	s, ok := f.images[ref]
	if !ok {
		return admission.Subject{}, fmt.Errorf("%w: %s", ErrImageUnknown, ref)
	}
	return s, nil
}

func (f *fakeResolver) Name(ctx context.Context, ref string) (admission.Subject, error) {
	s, err := f.Resolve(ctx, ref)
	s.Manifest = nil
	return s, err
}

func (f *fakeResolver) Repository(name string) (string, string, error) {
	up, repo, ok := strings.Cut(name, "/")
	if !ok || up != "ghcr.io" || strings.ContainsAny(repo, ":@") {
		return "", "", fmt.Errorf("%w: %q names no repository of a configured upstream", ErrBadImage, name)
	}
	return up, repo, nil
}

func (f *fakeResolver) Manifest(_ context.Context, upstream, repo string, d digest.Digest) ([]byte, string, error) {
	s, ok := f.images[upstream+"/"+repo+"@"+d.String()]
	if !ok {
		return nil, "", fmt.Errorf("%w: %s/%s@%s", ErrImageUnknown, upstream, repo, d)
	}
	return s.Manifest, s.MediaType, nil
}

// memJournal is an in-memory journal.
type memJournal struct {
	mu   sync.Mutex
	recs map[string][][]byte
}

func (j *memJournal) Append(_ context.Context, name string, rec []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.recs == nil {
		j.recs = map[string][][]byte{}
	}
	j.recs[name] = append(j.recs[name], rec)
	return nil
}

func (j *memJournal) Range(_ context.Context, name string, fn func([]byte) bool) error {
	j.mu.Lock()
	recs := append([][]byte(nil), j.recs[name]...)
	j.mu.Unlock()
	for i := len(recs) - 1; i >= 0; i-- {
		if !fn(recs[i]) {
			break
		}
	}
	return nil
}

// collections and bus stand in for the cache layer's.
type collections struct {
	mu   sync.Mutex
	data map[string]map[string][]byte
}

func (c *collections) Put(_ context.Context, coll, id string, v []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.data == nil {
		c.data = map[string]map[string][]byte{}
	}
	if c.data[coll] == nil {
		c.data[coll] = map[string][]byte{}
	}
	c.data[coll][id] = v
	return nil
}

func (c *collections) Delete(_ context.Context, coll, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.data[coll][id]; !ok {
		return cache.ErrNotFound
	}
	delete(c.data[coll], id)
	return nil
}

func (c *collections) All(_ context.Context, coll string) (map[string][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range c.data[coll] {
		out[k] = v
	}
	return out, nil
}

type nopBus struct{}

func (nopBus) Publish(context.Context, string, []byte) error  { return nil }
func (nopBus) Subscribe(string, func([]byte)) (cancel func()) { return func() {} }
