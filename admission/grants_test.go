package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/policy"
)

// signedEvidence says an image is signed by release when its digest is in signed, and returns the CI report the
// Reports store holds for it.
type signedEvidence struct {
	mu      sync.Mutex
	signed  map[digest.Digest]bool
	reports *Reports
	calls   map[digest.Digest]int
}

func (e *signedEvidence) Gather(ctx context.Context, s Subject, req policy.Requirements, _ GatherOptions) (policy.Facts, error) {
	e.mu.Lock()
	e.calls[s.Digest]++
	signed := e.signed[s.Digest]
	e.mu.Unlock()
	var f policy.Facts
	if len(req.SignedBy.Roots()) > 0 {
		f.Signatures = map[string]policy.SignatureResult{"release": {Verified: signed, Reason: "no signatures found"}}
	}
	if req.Scan != nil && e.reports != nil {
		if r, ok := e.reports.Get(ctx, policy.SourceCI, s.Digest); ok {
			f.Scan = r
		}
	}
	return f, nil
}

func (e *signedEvidence) n(d digest.Digest) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[d]
}

const grantsPolicy = `trust:
  release: {keyData: "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEhx6b6jesHDE23RvuCj2KJGFCYULN\nfPwcJ7QtLe6+O518kNdlSwQ0SOiEyC92X+85leiQY3o9rCHvC6Og3qWokg==\n-----END PUBLIC KEY-----\n"}
default:
  signedBy: {anyOf: [release]}
  scan: {maxSeverity: medium, sources: [ci], onMissing: allow}
`

type gateFixture struct {
	g       *Gate
	ev      *signedEvidence
	reports *Reports
	kv      cache.KV
}

func newGateFixture(t *testing.T, kv cache.KV, opts ...Option) *gateFixture {
	t.Helper()
	return newGateFixtureWith(t, grantsPolicy, kv, opts...)
}

func newGateFixtureWith(t *testing.T, doc string, kv cache.KV, opts ...Option) *gateFixture {
	t.Helper()
	pol, err := policy.Parse([]byte(doc), "p.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if kv == nil {
		kv = cache.NewMemory()
		t.Cleanup(func() { _ = kv.Close() })
	}
	reports := NewReports(kv, 0)
	ev := &signedEvidence{signed: map[digest.Digest]bool{}, reports: reports, calls: map[digest.Digest]int{}}
	g, err := NewGate(pol, ev, kv, append([]Option{WithReports(reports)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return &gateFixture{g: g, ev: ev, reports: reports, kv: kv}
}

func desc(mt string, d digest.Digest) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: 1}
}

// image returns a runnable image manifest subject with the given layers.
func image(t *testing.T, tag string, layers ...digest.Digest) Subject {
	t.Helper()
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: desc(ocispec.MediaTypeImageConfig, digest.FromString("config "+tag))}
	for _, l := range layers {
		m.Layers = append(m.Layers, desc(ocispec.MediaTypeImageLayerGzip, l))
	}
	m.SchemaVersion = 2
	return subjectOf(t, tag, m)
}

func subjectOf(t *testing.T, tag string, v any) Subject {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return Subject{Upstream: "ghcr.io", Repository: "acme/app", Tag: tag, Digest: digest.FromBytes(b), MediaType: ocispec.MediaTypeImageManifest, Manifest: b}
}

func (f *gateFixture) admit(t *testing.T, s Subject) Verdict {
	t.Helper()
	d, err := f.g.Admit(context.Background(), s)
	if err != nil {
		t.Fatalf("Admit: %v", err)
	}
	return d
}

func (f *gateFixture) blob(t *testing.T, d digest.Digest) bool {
	t.Helper()
	ok, err := f.g.AllowBlob(context.Background(), "ghcr.io", "acme/app", d)
	if err != nil {
		t.Fatalf("AllowBlob: %v", err)
	}
	return ok
}

func (f *gateFixture) report(t *testing.T, d digest.Digest, severity policy.Severity) {
	t.Helper()
	r := &policy.ScanReport{Scanner: "Trivy", ScanTime: time.Now(), Findings: []policy.Finding{{ID: "CVE-1", Severity: severity, Package: "p"}}}
	if err := f.reports.Put(context.Background(), policy.SourceCI, d, r); err != nil {
		t.Fatal(err)
	}
}

// A blob is served while the admission that granted it holds: a report posted for the image withdraws the grant at
// once (the facts epoch moved), and the next manifest pull decides again and grants again if it passes.
func TestBlobGrantRestsOnTheDecisionAndItsEpoch(t *testing.T) {
	f := newGateFixture(t, nil)
	layer := digest.FromString("layer")
	img := image(t, "v1", layer)
	f.ev.signed[img.Digest] = true
	if d := f.admit(t, img); !d.Allowed {
		t.Fatalf("signed image denied: %s", d.Reason)
	}
	if !f.blob(t, layer) {
		t.Fatal("layer of an admitted image refused")
	}
	f.report(t, img.Digest, policy.SeverityCritical)
	if f.blob(t, layer) {
		t.Fatal("layer still served after a failing report was posted for its image")
	}
	if d := f.admit(t, img); d.Allowed || !strings.Contains(d.Reason, "critical") {
		t.Fatalf("image with a critical finding: %+v", d)
	}
	if f.blob(t, layer) {
		t.Fatal("layer of a denied image served")
	}
	f.report(t, img.Digest, policy.SeverityLow)
	if d := f.admit(t, img); !d.Allowed {
		t.Fatalf("fixed image denied: %s", d.Reason)
	}
	if !f.blob(t, layer) {
		t.Fatal("layer not granted again after the image was admitted again")
	}
}

// A layer shared by two images stays served through the one still admitted when the other is withdrawn.
func TestSharedLayerSurvivesOneImagesWithdrawal(t *testing.T) {
	f := newGateFixture(t, nil)
	shared := digest.FromString("base layer")
	a, b := image(t, "a", shared), image(t, "b", shared, digest.FromString("b's own"))
	f.ev.signed[a.Digest], f.ev.signed[b.Digest] = true, true
	f.admit(t, a)
	f.admit(t, b)
	f.report(t, b.Digest, policy.SeverityCritical) // b withdrawn; it was the last to grant the layer
	if !f.blob(t, shared) {
		t.Error("shared layer refused although image a, which names it, is still admitted")
	}
	if f.blob(t, digest.FromString("b's own")) {
		t.Error("b's own layer still served")
	}
}

func index(t *testing.T, tag string, children ...Subject) Subject {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	for _, c := range children {
		idx.Manifests = append(idx.Manifests, desc(ocispec.MediaTypeImageManifest, c.Digest))
	}
	s := subjectOf(t, tag, idx)
	s.MediaType = ocispec.MediaTypeImageIndex
	return s
}

// A child of an admitted index is admitted through it, counted as such, while the index's admission holds; with a
// report of its own it must also pass the scan gate on it.
func TestChildAdmittedThroughItsIndex(t *testing.T) {
	f := newGateFixture(t, nil)
	amd64, arm64 := image(t, "", digest.FromString("amd64 layer")), image(t, "", digest.FromString("arm64 layer"))
	idx := index(t, "v1", amd64, arm64)
	if d := f.admit(t, amd64); d.Allowed {
		t.Fatal("unsigned child admitted before its index")
	}
	f.ev.signed[idx.Digest] = true
	f.admit(t, idx)
	d := f.admit(t, amd64) // a cached denial of its own facts does not stop admission through the index
	if !d.Allowed || !strings.Contains(d.Reason, "admitted as part of ghcr.io/acme/app@"+idx.Digest.String()) {
		t.Fatalf("child of a signed index: %+v", d)
	}
	if !f.blob(t, digest.FromString("amd64 layer")) {
		t.Error("child's layer refused")
	}
	if f.ev.n(amd64.Digest) != 1 {
		t.Errorf("child gathered evidence %d times; admission through the parent needs none", f.ev.n(amd64.Digest))
	}

	t.Run("a child with a failing report of its own is denied", func(t *testing.T) {
		f.report(t, arm64.Digest, policy.SeverityCritical)
		if d := f.admit(t, arm64); d.Allowed || !strings.Contains(d.Reason, "critical") {
			t.Fatalf("child with a critical report: %+v", d)
		}
		if f.blob(t, digest.FromString("arm64 layer")) {
			t.Error("layer of a denied child served")
		}
		f.report(t, arm64.Digest, policy.SeverityLow)
		if d := f.admit(t, arm64); !d.Allowed {
			t.Fatalf("child with a clean report: %+v", d)
		}
	})
	t.Run("withdrawing the index withdraws its children", func(t *testing.T) {
		f.report(t, idx.Digest, policy.SeverityCritical)
		if d := f.admit(t, amd64); d.Allowed {
			t.Fatalf("child still admitted after its index was withdrawn: %s", d.Reason)
		}
		if f.blob(t, digest.FromString("amd64 layer")) {
			t.Error("child's layer still served")
		}
	})
}

// artifact returns a cosign-signature-shaped manifest, with subject when not empty.
func artifact(t *testing.T, tag string, subject digest.Digest, layerType string) Subject {
	t.Helper()
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: desc("application/vnd.oci.empty.v1+json", digest.FromString("{}")),
		Layers: []ocispec.Descriptor{desc(layerType, digest.FromString("payload "+tag+layerType))}}
	m.SchemaVersion = 2
	if subject != "" {
		s := desc(ocispec.MediaTypeImageManifest, subject)
		m.Subject = &s
	}
	return subjectOf(t, tag, m)
}

func TestArtifactsOfAnAdmittedImage(t *testing.T) {
	const sigType = "application/vnd.dev.cosign.simplesigning.v1+json"
	f := newGateFixture(t, nil)
	img := image(t, "v1", digest.FromString("layer"))
	f.ev.signed[img.Digest] = true
	tagOf := "sha256-" + img.Digest.Encoded()
	for _, tc := range []struct {
		name    string
		s       Subject
		allowed bool
		how     string
	}{
		{"signature by its cosign tag", artifact(t, tagOf+".sig", "", sigType), true, "artifact"},
		{"bundle referrer by its subject", artifact(t, "", img.Digest, "application/vnd.dev.sigstore.bundle.v0.3+json"), true, "referrer"},
		{"runnable image under the cosign tag", image(t, tagOf+".sig", digest.FromString("evil")), false, ""},
		{"runnable image with the subject", func() Subject {
			s := artifact(t, "", img.Digest, ocispec.MediaTypeImageLayerGzip)
			return s
		}(), false, ""},
		{"signature of another image by tag", artifact(t, "sha256-"+digest.FromString("x").Encoded()+".sig", "", sigType), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGateFixture(t, nil)
			f.ev.signed[img.Digest] = true
			if d := f.admit(t, tc.s); d.Allowed {
				t.Fatalf("artifact admitted before its image: %s", d.Reason)
			}
			f.admit(t, img)
			d := f.admit(t, tc.s)
			if d.Allowed != tc.allowed {
				t.Fatalf("allowed=%v, want %v: %s", d.Allowed, tc.allowed, d.Reason)
			}
			if tc.allowed && !strings.Contains(d.Reason, "admitted as "+withArticle(tc.how)+" of ghcr.io/acme/app@"+img.Digest.String()) {
				t.Errorf("reason %q", d.Reason)
			}
			var m ocispec.Manifest
			_ = json.Unmarshal(tc.s.Manifest, &m)
			if got := f.blob(t, m.Layers[0].Digest); got != tc.allowed {
				t.Errorf("artifact layer served=%v, want %v", got, tc.allowed)
			}
			if !tc.allowed && !strings.Contains(d.Reason, "not admitted as a") {
				t.Errorf("denial does not say why it is not an artifact: %s", d.Reason)
			}
		})
	}
	t.Run("an artifact stops being served with its image", func(t *testing.T) {
		sig := artifact(t, tagOf+".sig", "", sigType)
		f.admit(t, img)
		if d := f.admit(t, sig); !d.Allowed {
			t.Fatal(d.Reason)
		}
		f.report(t, img.Digest, policy.SeverityCritical)
		if d := f.admit(t, sig); d.Allowed {
			t.Error("signature of a withdrawn image still admitted")
		}
	})
}

// failingEpochs is a KV whose epoch reads fail, as a Tiered store does when Redis is down and the key was never
// read locally.
type failingEpochs struct {
	cache.KV
	down bool
}

func (k *failingEpochs) Get(ctx context.Context, key string) ([]byte, error) {
	if k.down && strings.HasPrefix(key, "epoch/") {
		return nil, errors.Join(cache.ErrNotFound, fmt.Errorf("%w: connection refused", cache.ErrUnavailable))
	}
	return k.KV.Get(ctx, key)
}

// When the facts epoch cannot be read, a decision cached under a known epoch is not reused: the gate decides afresh
// (a report posted meanwhile may have changed it), and what it grants then holds only while the epoch stays unread.
func TestUnreadableEpochDecidesAfresh(t *testing.T) {
	kv := &failingEpochs{KV: cache.NewMemory()}
	t.Cleanup(func() { _ = kv.Close() })
	f := newGateFixture(t, kv)
	layer := digest.FromString("layer")
	img := image(t, "v1", layer)
	f.ev.signed[img.Digest] = true
	f.admit(t, img)
	f.admit(t, img)
	if n := f.ev.n(img.Digest); n != 1 {
		t.Fatalf("%d gathers with a readable epoch, want 1 (cached)", n)
	}
	kv.down = true
	if d := f.admit(t, img); !d.Allowed {
		t.Fatalf("denied with the epoch unreadable: %s", d.Reason)
	}
	if n := f.ev.n(img.Digest); n != 2 {
		t.Fatalf("%d gathers: the decision cached under a known epoch was reused while the epoch was unreadable", n)
	}
	if !f.blob(t, layer) {
		t.Error("layer of the image decided afresh refused during the outage")
	}
	// Back up: the image's next manifest pull finds its decision and grants its layer under the known epoch again.
	kv.down = false
	f.admit(t, img)
	if !f.blob(t, layer) {
		t.Error("layer refused after shared state came back and the manifest was pulled")
	}
}

// An image decided while the shared state is down is decided again once it is back, so that its decision reaches the
// shared state: another replica then serves it without gathering evidence. (The rule has no scan gate, so the
// refresher's hot set, which decides again on admitted images with a scan gate, plays no part.)
func TestDecidedDuringOutageSharedWhenBack(t *testing.T) {
	kv := &failingEpochs{KV: cache.NewMemory(), down: true}
	t.Cleanup(func() { _ = kv.Close() })
	doc, _, _ := strings.Cut(grantsPolicy, "  scan:")
	a := newGateFixtureWith(t, doc, kv)
	img := image(t, "v1", digest.FromString("layer"))
	a.ev.signed[img.Digest] = true
	if d := a.admit(t, img); !d.Allowed {
		t.Fatalf("denied with the epoch unreadable: %s", d.Reason)
	}
	if n := a.g.Refresh(context.Background(), 0); n != 0 {
		t.Fatalf("decided %d again while the shared state is still down", n)
	}
	kv.down = false
	if n := a.g.Refresh(context.Background(), 0); n != 1 {
		t.Fatalf("decided %d again once the shared state was back, want 1", n)
	}
	b := newGateFixtureWith(t, doc, kv)
	if d := b.admit(t, img); !d.Allowed {
		t.Fatalf("replica B: %s", d.Reason)
	}
	if n := b.ev.n(img.Digest); n != 0 {
		t.Errorf("replica B gathered evidence %d times: the decision made during the outage was not shared", n)
	}
	if n := a.g.Refresh(context.Background(), 0); n != 0 {
		t.Errorf("decided %d again on a second pass", n)
	}
}
