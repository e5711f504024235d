package admission

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
)

// artifactEnv is an artifactSource over a real registry, a real upstream client and a real content store, with a
// clock the test moves.
type artifactEnv struct {
	reg   *registrytest.Registry
	dir   string // the content store's root
	pack  string // the pack's directory, when the content store has one in front (as cmd/portcullis wires it)
	src   *artifactSource
	mu    sync.Mutex
	clock time.Time
}

func newArtifactEnv(t *testing.T, ttl time.Duration, reg ...registrytest.Option) *artifactEnv {
	t.Helper()
	return buildArtifactEnv(t, ttl, false, reg...)
}

// newPackedArtifactEnv is newArtifactEnv with a pack in front of the content store.
func newPackedArtifactEnv(t *testing.T, ttl time.Duration) *artifactEnv {
	t.Helper()
	return buildArtifactEnv(t, ttl, true)
}

func buildArtifactEnv(t *testing.T, ttl time.Duration, packed bool, reg ...registrytest.Option) *artifactEnv {
	t.Helper()
	e := &artifactEnv{reg: registrytest.New(t, reg...), dir: t.TempDir(), clock: time.Unix(1_800_000_000, 0)}
	client, err := upstream.New(e.reg.Host(), e.reg.URL(), upstream.WithRetries(0, time.Millisecond), upstream.WithAllowPrivateAddresses(true))
	if err != nil {
		t.Fatal(err)
	}
	driver, err := cache.NewDriver("filesystem", map[string]any{"rootdirectory": e.dir})
	if err != nil {
		t.Fatal(err)
	}
	content, err := cache.NewContent(driver)
	if err != nil {
		t.Fatal(err)
	}
	var store ArtifactStore = content
	if packed {
		e.pack = t.TempDir()
		p, err := cache.OpenPack(e.pack, content)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		store = p
	}
	ev, err := NewEvidence(nopVerifier{}, map[string]Endpoint{"up": client}, nil,
		WithArtifactStore(store), WithMissingEvidenceTTL(ttl), withEvidenceClock(e.now))
	if err != nil {
		t.Fatal(err)
	}
	e.src = ev.upstreams["up"].source.(*artifactSource)
	return e
}

func (e *artifactEnv) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.clock
}

func (e *artifactEnv) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clock = e.clock.Add(d)
}

// spoil flips a byte of the stored copy of good, wherever the store keeps it (a file of its own or a pack).
func (e *artifactEnv) spoil(t *testing.T, good []byte) {
	t.Helper()
	spoilt := 0
	for _, root := range []string{e.dir, e.pack} {
		if root == "" {
			continue
		}
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if i := bytes.Index(b, good); i >= 0 {
				b[i+len(good)-1] ^= 0xff
				spoilt++
				return os.WriteFile(path, b, 0o644)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if spoilt != 1 {
		t.Fatalf("%d stored copies spoilt, want 1", spoilt)
	}
}

// blob reads the blob dgst through the source, whole or only n bytes, and closes it.
func (e *artifactEnv) blob(t *testing.T, dgst digest.Digest, n int64) ([]byte, error) {
	t.Helper()
	rc, _, err := e.src.Blob(t.Context(), "team/app", dgst)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if n >= 0 {
		return io.ReadAll(io.LimitReader(rc, n))
	}
	return io.ReadAll(rc)
}

func TestArtifactSourceMissing(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second
	sigTag := "sha256-" + digest.FromString("x").Encoded() + ".sig"
	sigPath := "/v2/team/app/manifests/" + sigTag
	tests := []struct {
		name  string
		ttl   time.Duration
		ggcr  bool // the referrers API (an empty list) rather than none
		after time.Duration
		asked int // upstream requests for the tag and for the referrers, each, after two looks
	}{
		{name: "remembered", ttl: ttl, after: ttl - time.Second, asked: 1},
		{name: "remembered, referrers API", ttl: ttl, ggcr: true, after: ttl - time.Second, asked: 1},
		{name: "lapsed", ttl: ttl, after: ttl, asked: 2},
		{name: "off", ttl: 0, asked: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts []registrytest.Option
			if tt.ggcr {
				opts = append(opts, registrytest.WithGGCR())
			}
			e := newArtifactEnv(t, tt.ttl, opts...)
			img := e.reg.PushRandomImage(t, "team/app:v1", 1, 100)
			d, _ := img.Digest()
			dgst := digest.Digest(d.String())
			var first []byte
			for i := range 2 {
				if _, _, _, err := e.src.Manifest(t.Context(), "team/app", sigTag, nil); !errors.Is(err, upstream.ErrNotFound) {
					t.Fatalf("look %d: Manifest = %v, want ErrNotFound", i+1, err)
				}
				idx, supported, err := e.src.Referrers(t.Context(), "team/app", dgst, "")
				if err != nil || supported != tt.ggcr {
					t.Fatalf("look %d: Referrers = %v, %v; want supported %v", i+1, supported, err, tt.ggcr)
				}
				if i == 0 {
					first = idx
				} else if string(idx) != string(first) {
					t.Errorf("look 2: index %q, want the first answer %q", idx, first)
				}
				e.advance(tt.after)
			}
			if n := e.reg.Hits().CountPath(http.MethodGet, sigPath); n != tt.asked {
				t.Errorf("%d GETs of the .sig tag, want %d", n, tt.asked)
			}
			if n := e.reg.Hits().CountPath(http.MethodGet, "/v2/team/app/referrers/"+dgst.String()); n != tt.asked {
				t.Errorf("%d referrers requests, want %d", n, tt.asked)
			}
		})
	}

	t.Run("a tag that is there is always asked", func(t *testing.T) {
		t.Parallel()
		e := newArtifactEnv(t, ttl)
		e.reg.PushRandomImage(t, "team/app:"+sigTag, 1, 100)
		for range 2 {
			if _, _, _, err := e.src.Manifest(t.Context(), "team/app", sigTag, nil); err != nil {
				t.Fatal(err)
			}
		}
		if n := e.reg.Hits().CountPath(http.MethodGet, sigPath); n != 2 {
			t.Errorf("%d GETs of the .sig tag, want 2", n)
		}
	})
}

func TestArtifactSourceStore(t *testing.T) {
	t.Parallel()
	t.Run("content store", func(t *testing.T) {
		t.Parallel()
		testArtifactSourceStore(t, newArtifactEnv(t, DefaultMissingEvidenceTTL))
	})
	t.Run("pack in front", func(t *testing.T) {
		t.Parallel()
		testArtifactSourceStore(t, newPackedArtifactEnv(t, DefaultMissingEvidenceTTL))
	})
}

func testArtifactSourceStore(t *testing.T, e *artifactEnv) {
	img := e.reg.PushRandomImage(t, "team/app:v1", 2, 3000)
	d, _ := img.Digest()
	raw, _ := img.RawManifest()
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	partial, _ := layers[1].Digest()
	layer := digest.Digest(ld.String())
	manifestPath := "/v2/team/app/manifests/" + d.String()
	blobPath := func(d digest.Digest) string { return "/v2/team/app/blobs/" + d.String() }

	t.Run("a manifest by digest is read upstream once", func(t *testing.T) {
		for range 2 {
			got, _, _, err := e.src.Manifest(t.Context(), "team/app", d.String(), nil)
			if err != nil || string(got) != string(raw) {
				t.Fatalf("Manifest = %d bytes, %v", len(got), err)
			}
		}
		if n := e.reg.Hits().CountPath(http.MethodGet, manifestPath); n != 1 {
			t.Errorf("%d upstream GETs, want 1", n)
		}
	})
	t.Run("a blob read to its end is read upstream once", func(t *testing.T) {
		var first []byte
		for i := range 2 {
			got, err := e.blob(t, layer, -1)
			if err != nil || len(got) == 0 || (i == 1 && string(got) != string(first)) {
				t.Fatalf("read %d: %d bytes, %v", i+1, len(got), err)
			}
			first = got
		}
		if n := e.reg.Hits().CountPath(http.MethodGet, blobPath(layer)); n != 1 {
			t.Errorf("%d upstream GETs, want 1", n)
		}
	})
	t.Run("a blob not read to its end is not kept", func(t *testing.T) {
		p := digest.Digest(partial.String())
		if _, err := e.blob(t, p, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := e.blob(t, p, -1); err != nil {
			t.Fatal(err)
		}
		if n := e.reg.Hits().CountPath(http.MethodGet, blobPath(p)); n != 2 {
			t.Errorf("%d upstream GETs, want 2", n)
		}
	})
	t.Run("a stored blob that went bad is not read as good", func(t *testing.T) {
		// The layer is small: the store checks it as it opens it, drops the bad copy and the source reads the
		// upstream's again.
		good, err := e.blob(t, layer, -1)
		if err != nil {
			t.Fatal(err)
		}
		e.spoil(t, good)
		before := e.reg.Hits().CountPath(http.MethodGet, blobPath(layer))
		if got, err := e.blob(t, layer, -1); err != nil || !bytes.Equal(got, good) {
			t.Errorf("read: %d bytes, %v; want the good %d bytes", len(got), err, len(good))
		}
		if n := e.reg.Hits().CountPath(http.MethodGet, blobPath(layer)) - before; n != 1 {
			t.Errorf("%d upstream GETs after the bad copy, want 1", n)
		}
	})
	t.Run("a large stored blob that went bad is not read as good", func(t *testing.T) {
		// Over 64 KiB the store does not read a blob whole to open it: the source checks it as it is read.
		big := e.reg.PushBlob(t, "team/app", 100<<10, 9)
		for range 2 { // the second read waits until the first one's copy is stored
			if _, err := e.blob(t, big, -1); err != nil {
				t.Fatal(err)
			}
		}
		good, err := e.blob(t, big, -1)
		if err != nil {
			t.Fatal(err)
		}
		e.spoil(t, good)
		if _, err := e.blob(t, big, -1); !errors.Is(err, upstream.ErrUnavailable) {
			t.Errorf("read: %v, want ErrUnavailable (a corrupt copy)", err)
		}
	})
}

func TestEvidenceOptions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opt  EvidenceOption
	}{
		{"nil store", WithArtifactStore(nil)},
		{"negative TTL", WithMissingEvidenceTTL(-time.Second)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewEvidence(nopVerifier{}, nil, nil, tt.opt); err == nil {
				t.Error("no error")
			}
		})
	}
}

// nopVerifier finds nothing: these tests read the source NewEvidence builds, not the verifier.
type nopVerifier struct{}

func (nopVerifier) Verify(context.Context, verifier.Target, verifier.Query) (verifier.Findings, error) {
	return verifier.Findings{}, nil
}
