package verifier_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier"
)

const (
	simpleSigningType = "application/vnd.dev.cosign.simplesigning.v1+json"
	dsseType          = "application/vnd.dsse.envelope.v1+json"
	bundleType        = "application/vnd.dev.sigstore.bundle.v0.3+json"
	ociManifestType   = "application/vnd.oci.image.manifest.v1+json"
)

// layer is one layer of a hand-made artifact manifest: a blob pushed to the
// registry, and the descriptor that names it (which may lie).
type layer struct {
	digest    digest.Digest
	size      int64 // what the descriptor says
	mediaType string
}

// pushBlob pushes data to repo and returns an honest layer for it.
func pushBlob(t *testing.T, reg *registrytest.Registry, repo string, data []byte, mediaType string) layer {
	t.Helper()
	l := static.NewLayer(data, types.MediaType(mediaType))
	if err := remote.WriteLayer(parseRef(t, reg.Ref(repo)).Context(), l); err != nil {
		t.Fatal(err)
	}
	return layer{digest: digest.FromBytes(data), size: int64(len(data)), mediaType: mediaType}
}

// rawManifest is a manifest pushed byte for byte.
type rawManifest struct {
	body      []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

// pushArtifact pushes an OCI manifest with an empty config, layers and an
// optional subject as ref (repo:tag or repo@digest), and returns its digest.
func pushArtifact(t *testing.T, reg *registrytest.Registry, ref string, layers []layer, subject *layer) digest.Digest {
	t.Helper()
	repo, _, _ := strings.Cut(strings.Split(ref, "@")[0], ":")
	config := pushBlob(t, reg, repo, []byte("{}"), "application/vnd.oci.empty.v1+json")
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociManifestType,
		"config":        desc(config),
	}
	ls := make([]map[string]any, 0, len(layers))
	for _, l := range layers {
		d := desc(l)
		d["annotations"] = map[string]string{"dev.cosignproject.cosign/signature": "MEUCIQ=="}
		ls = append(ls, d)
	}
	m["layers"] = ls
	if subject != nil {
		m["artifactType"] = bundleType
		m["subject"] = desc(*subject)
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(parseRef(t, reg.Ref(ref)), rawManifest{body: body, mediaType: ociManifestType}); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return digest.FromBytes(body)
}

func desc(l layer) map[string]any {
	return map[string]any{"mediaType": l.mediaType, "digest": l.digest.String(), "size": l.size}
}

// counting counts the response body bytes the verifier reads.
type counting struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c counting) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil {
		resp.Body = countingBody{ReadCloser: resp.Body, n: c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// filler returns n bytes that are not all the same.
func filler(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed
	}
	return b
}

// TestArtifactBounds pushes hand-made .sig and .att artifacts that break the
// bounds and checks that each is invalid evidence (a reason, not an error),
// decided from the manifest before any blob is fetched or with the read
// capped when a descriptor lies.
func TestArtifactBounds(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	key := newKeyPair(t)
	const repo = "team/app"
	small := pushBlob(t, reg, repo, []byte(`{"critical":{}}`), simpleSigningType)
	big := pushBlob(t, reg, repo, filler(2<<20, 1), simpleSigningType)  // 2 MiB: over the 1 MiB signature bound
	huge := pushBlob(t, reg, repo, filler(8<<20, 2), simpleSigningType) // 8 MiB
	bigAtt := pushBlob(t, reg, repo, filler(100<<10, 3), dsseType)      // 100 KiB: over the 64 KiB set below
	hugeAtt := pushBlob(t, reg, repo, filler(8<<20, 4), dsseType)       // 8 MiB
	lie := func(l layer, size int64) layer { l.size = size; return l }
	repeat := func(l layer, n int) []layer {
		out := make([]layer, n)
		for i := range out {
			out[i] = l
		}
		return out
	}
	v, err := verifier.New(map[string]policy.TrustRoot{"release": keyRoot(t, "release", key.pub)},
		verifier.WithMaxAttestationSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		suffix string // sig or att
		layers []layer
		// wantReason is in the release root's reason, or among the
		// attestations' invalid evidence; %s is the image's hex digest.
		wantReason string
		// fetched says the blobs may be read; then maxRead bounds the bytes read.
		fetched bool
		maxRead int64
	}{
		{
			name: "too many layers", suffix: "sig", layers: repeat(small, 33),
			wantReason: "signature artifact sha256-%s.sig has 33 layers, more than 32",
		},
		{
			name: "too many large layers", suffix: "sig", layers: repeat(huge, 64),
			wantReason: "signature artifact sha256-%s.sig has 64 layers, more than 32",
		},
		{
			name: "a layer too large", suffix: "sig", layers: []layer{small, big},
			wantReason: fmt.Sprintf("signature artifact sha256-%%s.sig layer %s is 2097152 bytes, more than 1 MiB", big.digest),
		},
		{
			name: "a layer of no size", suffix: "sig", layers: []layer{lie(huge, -1)},
			wantReason: fmt.Sprintf("signature artifact sha256-%%s.sig layer %s has no size", huge.digest),
		},
		{
			name: "a descriptor that says 100 bytes of an 8 MiB blob", suffix: "sig", layers: []layer{lie(huge, 100)},
			wantReason: fmt.Sprintf("signature artifact sha256-%%s.sig layer %s does not match its descriptor", huge.digest),
			fetched:    true, maxRead: 64 << 10,
		},
		{
			name: "a descriptor that says 1 MiB of an 8 MiB blob", suffix: "sig", layers: []layer{lie(huge, 1<<20)},
			wantReason: fmt.Sprintf("signature artifact sha256-%%s.sig layer %s does not match its descriptor", huge.digest),
			fetched:    true, maxRead: 1<<20 + 64<<10,
		},
		{
			name: "too many attestation layers", suffix: "att", layers: repeat(hugeAtt, 33),
			wantReason: "attestation artifact sha256-%s.att has 33 layers, more than 32",
		},
		{
			name: "an attestation layer too large", suffix: "att", layers: []layer{bigAtt},
			wantReason: fmt.Sprintf("attestation artifact sha256-%%s.att layer %s is 102400 bytes, more than 64 KiB", bigAtt.digest),
		},
		{
			name: "an attestation descriptor that lies", suffix: "att", layers: []layer{lie(hugeAtt, 1000)},
			wantReason: fmt.Sprintf("attestation artifact sha256-%%s.att layer %s does not match its descriptor of 1000 bytes", hugeAtt.digest),
			fetched:    true, maxRead: 64 << 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := pushImage(t, reg, repo)
			tag := "sha256-" + img.target.Digest.Encoded() + "." + tt.suffix
			pushArtifact(t, reg, repo+":"+tag, tt.layers, nil)
			read := new(atomic.Int64)
			target := img.target
			target.Transport = counting{next: http.DefaultTransport, n: read}
			reg.Hits().Reset()

			want := strings.ReplaceAll(tt.wantReason, "%s", img.target.Digest.Encoded())
			if tt.suffix == "sig" {
				got, err := v.Signatures(t.Context(), target, []string{"release"})
				if err != nil {
					t.Fatalf("Signatures: %v (oversized evidence is invalid, not an outage)", err)
				}
				if r := got["release"]; r.Verified || !strings.Contains(r.Reason, want) {
					t.Errorf("release: %+v, want a reason with %q", r, want)
				}
			} else {
				got, err := v.Attestations(t.Context(), target, []string{"release"})
				if err != nil || len(got.Verified) != 0 {
					t.Fatalf("Attestations = %+v, %v; want none, no error", got, err)
				}
				if !slices.ContainsFunc(got.Invalid, func(r string) bool { return strings.Contains(r, want) }) {
					t.Errorf("invalid evidence %q, want a reason with %q", got.Invalid, want)
				}
			}
			blobs := reg.Hits().Count(http.MethodGet, registrytest.KindBlob)
			switch {
			case !tt.fetched && blobs != 0:
				t.Errorf("%d blob GETs; the manifest alone should have decided", blobs)
			case tt.fetched && read.Load() > tt.maxRead:
				t.Errorf("read %d bytes, want at most %d", read.Load(), tt.maxRead)
			}
			t.Logf("%d blob GETs, %d bytes read", blobs, read.Load())
		})
	}
}

// TestArtifactBoundsOtherFormat: an oversized .sig artifact does not stop a
// valid signature bundle from verifying the image, and a lying layer does not
// hide a good signature in the same artifact.
func TestArtifactBoundsOtherFormat(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	key := newKeyPair(t)
	const repo = "team/app"
	huge := pushBlob(t, reg, repo, filler(8<<20, 5), simpleSigningType)
	v := newVerifier(t, keyRoot(t, "release", key.pub))

	t.Run("bundle beside a .sig of 64 layers", func(t *testing.T) {
		img := pushImage(t, reg, repo)
		cosigntest.SignBundle(t, cosigntest.Binary3(t), img.ref, key.priv)
		pushArtifact(t, reg, repo+":sha256-"+img.target.Digest.Encoded()+".sig", make64(huge), nil)
		got, err := v.Signatures(t.Context(), img.target, []string{"release"})
		if err != nil {
			t.Fatalf("Signatures: %v", err)
		}
		checkResults(t, got, map[string]policy.SignatureResult{"release": verified(verifier.FormatBundle)})
	})
	t.Run("good layer beside a lying one", func(t *testing.T) {
		img := pushImage(t, reg, repo)
		cosigntest.Sign(t, cosigntest.Binary(t), img.ref, key.priv)
		// Add a lying layer to the manifest cosign wrote.
		tag := reg.Ref(repo + ":sha256-" + img.target.Digest.Encoded() + ".sig")
		d, err := remote.Get(parseRef(t, tag))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(d.Manifest, &m); err != nil {
			t.Fatal(err)
		}
		m["layers"] = append([]any{desc(layer{digest: huge.digest, size: 100, mediaType: simpleSigningType})}, m["layers"].([]any)...)
		body, _ := json.Marshal(m)
		if err := remote.Put(parseRef(t, tag), rawManifest{body: body, mediaType: ociManifestType}); err != nil {
			t.Fatal(err)
		}
		got, err := v.Signatures(t.Context(), img.target, []string{"release"})
		if err != nil {
			t.Fatalf("Signatures: %v", err)
		}
		checkResults(t, got, map[string]policy.SignatureResult{"release": verified(verifier.FormatCosignTag)})
	})
}

func make64(l layer) []layer {
	out := make([]layer, 64)
	for i := range out {
		out[i] = l
	}
	return out
}

// TestBundleBounds: a bundle referrer whose layer is larger than the
// signature bound is not read as a signature (it may be an attestation);
// larger than the attestation bound it is not read at all; and no more than
// WithMaxReferrers referrers are fetched.
func TestBundleBounds(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.WithGGCR()) // the referrers API, from each manifest's subject
	key := newKeyPair(t)
	const repo = "team/bundled"
	v, err := verifier.New(map[string]policy.TrustRoot{"release": keyRoot(t, "release", key.pub)},
		verifier.WithMaxAttestationSize(4<<20), verifier.WithMaxReferrers(3))
	if err != nil {
		t.Fatal(err)
	}
	subject := func(img image) *layer {
		return &layer{digest: img.target.Digest, size: 1, mediaType: ociManifestType}
	}

	t.Run("too large", func(t *testing.T) {
		img := pushImage(t, reg, repo)
		huge := pushBlob(t, reg, repo, filler(8<<20, 6), bundleType)
		ref := pushArtifact(t, reg, repo+":bundle", []layer{huge}, subject(img))
		reg.Hits().Reset()
		sigs, err := v.Signatures(t.Context(), img.target, []string{"release"})
		if err != nil {
			t.Fatalf("Signatures: %v", err)
		}
		checkResults(t, sigs, map[string]policy.SignatureResult{"release": failed(verifier.ReasonNoSignatures)})
		atts, err := v.Attestations(t.Context(), img.target, []string{"release"})
		if err != nil || len(atts.Verified) != 0 {
			t.Fatalf("Attestations = %+v, %v; want none, no error", atts, err)
		}
		want := fmt.Sprintf("attestation referrer %s layer %s is 8388608 bytes, more than 4 MiB", ref, huge.digest)
		if !slices.Contains(atts.Invalid, want) {
			t.Errorf("invalid evidence %q, want %q", atts.Invalid, want)
		}
		if n := reg.Hits().Count(http.MethodGet, registrytest.KindBlob); n != 0 {
			t.Errorf("%d blob GETs; the manifest alone should have decided", n)
		}
	})
	t.Run("too many referrers", func(t *testing.T) {
		img := pushImage(t, reg, repo)
		for i := range 6 {
			junk := pushBlob(t, reg, repo, []byte(fmt.Sprintf(`{"junk":%d}`, i)), bundleType)
			pushArtifact(t, reg, fmt.Sprintf("%s:junk%d", repo, i), []layer{junk}, subject(img))
		}
		reg.Hits().Reset()
		if _, err := v.Signatures(t.Context(), img.target, []string{"release"}); err != nil {
			t.Fatalf("Signatures: %v", err)
		}
		if n := reg.Hits().Count(http.MethodGet, registrytest.KindBlob); n > 3 {
			t.Errorf("%d bundle layers fetched, want at most 3", n)
		}
	})
}

// TestOversizedManifest: a .sig manifest or referrers index past 4 MiB is
// refused while it is read, with or without a Content-Length, as invalid
// evidence; a connection dropped while a layer is read is an outage.
func TestOversizedManifest(t *testing.T) {
	t.Parallel()
	key := newKeyPair(t)
	const repo = "team/app"
	var mode atomic.Value // what the middleware does: "", "length", "chunked", "drop"
	mode.Store("")
	var sent atomic.Int64
	mw := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m := mode.Load().(string)
			switch {
			case (m == "length" || m == "chunked") && strings.Contains(r.URL.Path, "/manifests/sha256-") && strings.HasSuffix(r.URL.Path, ".sig"):
				body := append([]byte(`{"schemaVersion":2,"mediaType":"`+ociManifestType+`","annotations":{"x":"`), bytes.Repeat([]byte("a"), 16<<20)...)
				body = append(body, `"},"layers":[]}`...)
				w.Header().Set("Content-Type", ociManifestType)
				if m == "length" {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				}
				n, _ := w.Write(body)
				sent.Add(int64(n))
			case m == "no-length" && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
				next.ServeHTTP(noLength{w}, r)
			case m == "drop" && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
				// Half the blob, then the connection goes.
				rec := &halfWriter{ResponseWriter: w}
				next.ServeHTTP(rec, r)
				panic(http.ErrAbortHandler)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
	reg := registrytest.New(t, registrytest.WithMiddleware(mw))
	img := pushImage(t, reg, repo)
	cosigntest.Sign(t, cosigntest.Binary(t), img.ref, key.priv)
	v := newVerifier(t, keyRoot(t, "release", key.pub))

	for _, m := range []string{"length", "chunked"} {
		t.Run(m, func(t *testing.T) {
			mode.Store(m)
			read := new(atomic.Int64)
			target := img.target
			target.Transport = counting{next: http.DefaultTransport, n: read}
			got, err := v.Signatures(t.Context(), target, []string{"release"})
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			if r := got["release"]; r.Verified || !strings.Contains(r.Reason, "more than 4 MiB") {
				t.Errorf("release: %+v, want a reason with %q", r, "more than 4 MiB")
			}
			if read.Load() > 5<<20 {
				t.Errorf("read %d bytes of a 16 MiB manifest", read.Load())
			}
		})
	}
	t.Run("connection dropped mid-layer", func(t *testing.T) {
		mode.Store("drop")
		_, err := v.Signatures(t.Context(), img.target, []string{"release"})
		if !errors.Is(err, verifier.ErrUnavailable) {
			t.Fatalf("Signatures: err = %v, want ErrUnavailable", err)
		}
		t.Log(err)
	})
	t.Run("a lying descriptor without a Content-Length to catch it", func(t *testing.T) {
		mode.Store("no-length")
		liar := pushImage(t, reg, repo)
		huge := pushBlob(t, reg, repo, filler(8<<20, 7), simpleSigningType)
		huge.size = 100
		pushArtifact(t, reg, repo+":sha256-"+liar.target.Digest.Encoded()+".sig", []layer{huge}, nil)
		read := new(atomic.Int64)
		target := liar.target
		target.Transport = counting{next: http.DefaultTransport, n: read}
		got, err := v.Signatures(t.Context(), target, []string{"release"})
		if err != nil {
			t.Fatalf("Signatures: %v", err)
		}
		want := fmt.Sprintf("signature artifact sha256-%s.sig layer %s does not match its descriptor of 100 bytes", liar.target.Digest.Encoded(), huge.digest)
		if r := got["release"]; r.Verified || !strings.Contains(r.Reason, want) {
			t.Errorf("release: %+v, want a reason with %q", r, want)
		}
		if read.Load() > 64<<10 {
			t.Errorf("read %d bytes", read.Load())
		}
		t.Log(got["release"].Reason)
	})
}

// noLength serves a body without its Content-Length (chunked).
type noLength struct{ http.ResponseWriter }

func (w noLength) WriteHeader(code int) {
	w.Header().Del("Content-Length")
	w.ResponseWriter.WriteHeader(code)
}

func (w noLength) Write(p []byte) (int, error) {
	w.Header().Del("Content-Length")
	return w.ResponseWriter.Write(p)
}

// halfWriter passes on the first half of a body whose Content-Length is set.
type halfWriter struct {
	http.ResponseWriter
	left int64
	set  bool
}

func (h *halfWriter) Write(p []byte) (int, error) {
	if !h.set {
		h.set = true
		var n int64
		fmt.Sscan(h.Header().Get("Content-Length"), &n)
		h.left = n / 2
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	h.left -= int64(len(p))
	n, err := h.ResponseWriter.Write(p)
	if err == nil && h.left <= 0 {
		if f, ok := h.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
	}
	return n, err
}

// TestMalformedArtifact: what a pusher can put under the .sig tag that is not
// a signature manifest at all is invalid evidence too, never an outage (an
// outage would hand the decision to the rule's onError).
func TestMalformedArtifact(t *testing.T) {
	t.Parallel()
	var garbage, gone atomic.Bool
	mw := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case garbage.Load() && strings.HasSuffix(r.URL.Path, ".sig"):
				w.Header().Set("Content-Type", ociManifestType)
				_, _ = w.Write([]byte(`{"schemaVersion":2,"layers":"nope"}`))
			case gone.Load() && strings.Contains(r.URL.Path, "/blobs/"):
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}`, http.StatusNotFound)
			default:
				next.ServeHTTP(w, r)
			}
		})
	}
	reg := registrytest.New(t, registrytest.WithMiddleware(mw))
	key := newKeyPair(t)
	v := newVerifier(t, keyRoot(t, "release", key.pub))
	const repo = "team/app"

	tests := []struct {
		name       string
		setup      func(t *testing.T, img image)
		wantReason string
	}{
		{
			name: "an index with no child for this platform",
			setup: func(t *testing.T, img image) {
				idx, _ := json.Marshal(map[string]any{
					"schemaVersion": 2,
					"mediaType":     "application/vnd.oci.image.index.v1+json",
					"manifests": []map[string]any{{
						"mediaType": ociManifestType, "digest": img.target.Digest.String(), "size": 1,
						"platform": map[string]string{"os": "plan9", "architecture": "mips"},
					}},
				})
				ref := parseRef(t, reg.Ref(repo+":sha256-"+img.target.Digest.Encoded()+".sig"))
				if err := remote.Put(ref, rawManifest{body: idx, mediaType: "application/vnd.oci.image.index.v1+json"}); err != nil {
					t.Fatal(err)
				}
			},
			wantReason: "invalid signature: signature artifact sha256-%s.sig: ",
		},
		{
			name:       "not a manifest",
			setup:      func(*testing.T, image) { garbage.Store(true) },
			wantReason: "invalid signature: signature artifact sha256-%s.sig: malformed manifest",
		},
		{
			name: "a layer deleted from the registry",
			setup: func(t *testing.T, img image) {
				cosigntest.Sign(t, cosigntest.Binary(t), img.ref, key.priv)
				gone.Store(true)
			},
			wantReason: "is not in the registry",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := pushImage(t, reg, repo)
			tt.setup(t, img)
			defer garbage.Store(false)
			defer gone.Store(false)
			got, err := v.Signatures(t.Context(), img.target, []string{"release"})
			if err != nil {
				t.Fatalf("Signatures: %v", err)
			}
			want := strings.ReplaceAll(tt.wantReason, "%s", img.target.Digest.Encoded())
			if r := got["release"]; r.Verified || !strings.Contains(r.Reason, want) {
				t.Errorf("release: %+v, want a reason with %q", r, want)
			}
			t.Log(got["release"].Reason)
		})
	}
}
