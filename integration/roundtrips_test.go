package integration

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/upstream"
)

// TestTrustRoundTrips counts what a cold admission asks of the upstream (CNCF Distribution, which has no referrers
// API, behind Docker-style token auth, as most registries are), through the proxy's own upstream client after the
// proxy fetched the manifest: requests, and round trips one after another (each request is held for a while, so
// that requests in flight together overlap and those that wait for another do not). No ping, no token (the client
// has one for the repository), the tags and the referrers asked at once; then a re-decision on the same gate (a
// second policy, the refresher) reads the artifacts it fetched by digest from the content store, and what was not
// there is not asked again for a while. The first decision also teaches the client that the registry has no referrers
// API: the later ones ask only the fallback tag.
func TestTrustRoundTrips(t *testing.T) {
	bin := cosigntest.Binary(t)
	release, ci := cosignKey(t), cosignKey(t)
	files := map[string][]byte{"release.pub": release.pubPEM(t), "ci.pub": ci.pubPEM(t)}
	const pol = `trust:
  release: {key: release.pub}
  ci: {key: ci.pub}
rules:
  - name: attested
    match: {repository: "rt/attested"}
    signedBy: {anyOf: [release]}
    attestations:
      - {predicateType: "https://slsa.dev/provenance/v1", signedBy: {anyOf: [ci]}}
default:
  signedBy: {anyOf: [release]}
`
	lat := &latency{delay: 50 * time.Millisecond}
	up := registrytest.New(t, registrytest.WithBearerAuth("", ""), registrytest.WithMiddleware(lat.wrap))
	client, err := upstream.New(up.Host(), up.URL(), benchClient...)
	if err != nil {
		t.Fatal(err)
	}
	driver, err := cache.NewDriver("filesystem", map[string]any{"rootdirectory": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	content, err := cache.NewContent(driver)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		repo    string
		sign    func(t *testing.T, ref string)
		allowed bool
		// requests and round trips of the first decision; requests of a second one on the same gate.
		requests, roundTrips, again int
		// the referrers API asked by the first decision (only until the client knows the registry has none)
		askAPI bool
	}{
		{
			name: "key-signed, classic .sig", repo: "rt/classic",
			sign: func(t *testing.T, ref string) { cosigntest.Sign(t, bin, ref, release.priv) },
			// .sig, referrers API, fallback tag at once; then the signature layer. Again: the .sig tag only.
			allowed: true, requests: 4, roundTrips: 2, again: 1, askAPI: true,
		},
		{
			name: "key-signed and attested, classic .sig and .att", repo: "rt/attested",
			sign: func(t *testing.T, ref string) {
				cosigntest.Sign(t, bin, ref, release.priv)
				cosigntest.Attest(t, bin, ref, ci.priv, "https://slsa.dev/provenance/v1", []byte(`{"buildDefinition":{"buildType":"x"}}`))
			},
			// .sig, .att, fallback tag at once; then both layers at once. Again: the two tags.
			allowed: true, requests: 5, roundTrips: 2, again: 2,
		},
		{
			name: "bundle-signed, cosign 3", repo: "rt/bundle",
			sign: func(t *testing.T, ref string) { cosigntest.SignBundle(t, cosigntest.Binary3(t), ref, release.priv) },
			// .sig (404) and the fallback tag at once; the bundle's manifest; its layer. Again: the fallback tag
			// only.
			allowed: true, requests: 4, roundTrips: 3, again: 1,
		},
		{
			name: "unsigned", repo: "rt/unsigned",
			// .sig and fallback tag at once, both 404. Again: nothing, for 10s.
			requests: 2, roundTrips: 1, again: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := up.PushRandomImage(t, tt.repo+":v1", 1, 512)
			d, _ := img.Digest()
			raw, _ := img.RawManifest()
			mt, _ := img.MediaType()
			if tt.sign != nil {
				tt.sign(t, up.Ref(tt.repo+"@"+d.String()))
			}
			// What the proxy does before it asks the gate: fetch the manifest (and a token for the repository).
			if _, _, _, err := client.Manifest(t.Context(), tt.repo, d.String(), nil); err != nil {
				t.Fatal(err)
			}
			g := newGateWith(t, pol, files, map[string]admission.Endpoint{up.Host(): client}, forgetful{}, admission.NewMetrics(nil), nil, nil,
				[]admission.EvidenceOption{admission.WithArtifactStore(content)})
			s := admission.Subject{Upstream: up.Host(), Repository: tt.repo, Digest: digest.Digest(d.String()), MediaType: string(mt), Manifest: raw}

			for i, want := range []int{tt.requests, tt.again} {
				up.Hits().Reset()
				tokens, hellos := up.TokensIssued(), up.TLSAttempts()
				lat.start()
				v, err := g.Admit(context.Background(), s)
				spans := lat.stop()
				if err != nil || v.Allowed != tt.allowed {
					t.Fatalf("decision %d: %+v, %v; want allowed %v", i+1, v, err, tt.allowed)
				}
				if n := up.Hits().Total(); n != want {
					t.Errorf("decision %d: %d upstream requests, want %d", i+1, n, want)
				}
				if n := up.Hits().Count("", registrytest.KindReferrers); i == 0 && (n == 1) != tt.askAPI {
					t.Errorf("decision 1: %d referrers API requests, want the API asked: %v", n, tt.askAPI)
				}
				if n := up.Hits().Count("", registrytest.KindPing); n != 0 {
					t.Errorf("decision %d: %d pings", i+1, n)
				}
				if n := up.TokensIssued() - tokens; n != 0 {
					t.Errorf("decision %d: %d tokens fetched", i+1, n)
				}
				if n := up.TLSAttempts() - hellos; n != 0 {
					t.Errorf("decision %d: %d HTTPS attempts on the plain-HTTP upstream", i+1, n)
				}
				// .sig, .att, the referrers API and fallback tag, each artifact: asked at most once.
				if p := up.Hits().Repeated(); len(p) > 0 {
					t.Errorf("decision %d: asked more than once: %v", i+1, p)
				}
				if n := up.Hits().Count("", registrytest.KindBlob); i > 0 && n != 0 {
					t.Errorf("decision %d: %d blobs fetched again, want them read from the content store", i+1, n)
				}
				if i == 0 {
					if n := chain(spans); n != tt.roundTrips {
						t.Errorf("decision 1: %d round trips one after another, want %d", n, tt.roundTrips)
					}
				}
				t.Logf("decision %d: %d requests, %d round trips", i+1, up.Hits().Total(), chain(spans))
			}
		})
	}
}

// latency holds every request for delay while it is started, and records when each arrived and was answered.
type latency struct {
	delay time.Duration
	on    atomic.Bool
	mu    sync.Mutex
	spans []span
}

// span is one request: arrived, answered.
type span struct{ from, to time.Time }

func (l *latency) start() {
	l.mu.Lock()
	l.spans = nil
	l.mu.Unlock()
	l.on.Store(true)
}

func (l *latency) stop() []span {
	l.on.Store(false)
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.spans)
}

func (l *latency) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !l.on.Load() {
			next.ServeHTTP(w, r)
			return
		}
		from := time.Now()
		select {
		case <-time.After(l.delay):
		case <-r.Context().Done():
		}
		next.ServeHTTP(w, r)
		l.mu.Lock()
		l.spans = append(l.spans, span{from, time.Now()})
		l.mu.Unlock()
	})
}

// chain is the longest run of requests each of which arrived after the one before was answered: the round trips
// the decision waited for one after another.
func chain(spans []span) int {
	slices.SortFunc(spans, func(a, b span) int { return a.from.Compare(b.from) })
	depth := make([]int, len(spans))
	longest := 0
	for i, s := range spans {
		depth[i] = 1
		for j := range i {
			if !spans[j].to.After(s.from) {
				depth[i] = max(depth[i], depth[j]+1)
			}
		}
		longest = max(longest, depth[i])
	}
	return longest
}

// TestColdHerdOneVerification: 200 clients ask at once for one new key-signed digest through the proxy. They share
// one decision: the upstream sees the manifest, the .sig tag, the referrers lookups and the signature layer once
// each (the .sig answer is held back so that every client is waiting by then), and every client gets the image.
func TestColdHerdOneVerification(t *testing.T) {
	const clients = 200
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	slowSig := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".sig") {
				time.Sleep(200 * time.Millisecond)
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, withUpstream(registrytest.WithMiddleware(slowSig)),
		withPolicy(releasePolicy(""), map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)}))
	img := e.up.PushRandomImage(t, "herd/app:v1", 1, 512)
	d, _ := img.Digest()
	cosigntest.Sign(t, bin, e.up.Ref("herd/app@"+d.String()), release.priv)
	e.up.Hits().Reset()

	var wg sync.WaitGroup
	codes := make([]int, clients)
	for i := range clients {
		wg.Go(func() {
			resp, _ := e.get(t, http.MethodGet, "/v2/herd/app/manifests/"+d.String())
			if resp.Header.Get("Docker-Content-Digest") != d.String() {
				codes[i] = -resp.StatusCode
				return
			}
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("client %d: %d, want 200 with digest %s", i, c, d)
		}
	}
	sig := "/v2/herd/app/manifests/sha256-" + d.Hex + ".sig"
	if n := e.up.Hits().CountPath("", sig); n != 1 {
		t.Errorf("%d .sig lookups for %d concurrent cold requests of one digest, want 1 (one verification)", n, clients)
	}
	if p := e.up.Hits().Repeated(); len(p) > 0 {
		t.Errorf("asked of the upstream more than once: %v", p)
	}
	t.Logf("%d clients, %d upstream requests", clients, e.up.Hits().Total())
}
