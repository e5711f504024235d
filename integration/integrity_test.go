package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// refused checks that nothing of img is served from repo: its manifest by ref (a tag or a digest) is 403 DENIED
// to GET and HEAD alike, each of its layers and its config is 403, and crane cannot pull it. It returns the
// denial message.
func refused(t *testing.T, e *env, repo, ref string, img v1.Image) string {
	t.Helper()
	msg := denial(t, e, "/v2/"+repo+"/manifests/"+ref)
	resp, body := e.get(t, http.MethodHead, "/v2/"+repo+"/manifests/"+ref)
	if resp.StatusCode != http.StatusForbidden || len(body) != 0 || !strings.Contains(resp.Header.Get("Warning"), "denied") {
		t.Errorf("HEAD %s:%s: %s, Warning %q, body %q; want 403 with the reason", repo, ref, resp.Status, resp.Header.Get("Warning"), body)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		denial(t, e, "/v2/"+repo+"/blobs/"+d.String())
	}
	cd, _ := img.ConfigName()
	denial(t, e, "/v2/"+repo+"/blobs/"+cd.String())
	sep := ":"
	if strings.HasPrefix(ref, "sha256:") {
		sep = "@"
	}
	if _, err := crane.Pull(e.ref(repo+sep+ref), pullOpts()...); err == nil {
		t.Errorf("crane pulled %s%s%s", repo, sep, ref)
	}
	return msg
}

// TestArtifactsAdmittedByShapeNotName tries, as an attacker who can push to the upstream but holds no signing key,
// every way an unsigned runnable image used to ride in as an "artifact" of a signed one: under its .sig, .att or
// bare sha256-<hex> tag, listed in its referrers fallback index, as the child of an index pushed under an artifact
// tag, and with its subject set to the signed image. Each is refused, manifest and layers, while the signed image's
// real signature and attestation still verify through the proxy with cosign.
func TestArtifactsAdmittedByShapeNotName(t *testing.T) {
	bin := cosigntest.Binary(t)
	release := cosignKey(t)
	e := newEnv(t, withPolicy(releasePolicy(""), map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)}))
	const repo = "atk/app"

	// Signed images, admitted once pulled.
	signed := func(tag string) v1.Hash {
		img := e.up.PushRandomImage(t, repo+":"+tag, 1, 1024)
		d, _ := img.Digest()
		cosigntest.Sign(t, bin, e.up.Ref(repo+"@"+d.String()), release.priv)
		if _, err := crane.Pull(e.ref(repo+":"+tag), pullOpts()...); err != nil {
			t.Fatalf("signed %s: %v", tag, err)
		}
		return d
	}
	victim := signed("victim")
	cosigntest.Attest(t, bin, e.up.Ref(repo+"@"+victim.String()), release.priv, "https://slsa.dev/provenance/v1", []byte(`{"buildDefinition":{}}`))
	target := signed("target")

	// The attacker's runnable, unsigned image.
	evil := e.up.PushRandomImage(t, repo+":evil", 2, 4096)
	evilDigest, _ := evil.Digest()

	t.Run("under the .sig, .att and bare sha256-<hex> tags", func(t *testing.T) {
		for _, suffix := range []string{".sig", ".att", ".sbom", ""} {
			tag := "sha256-" + target.Hex + suffix
			e.up.PushImage(t, repo+":"+tag, evil)
			msg := refused(t, e, repo, tag, evil)
			mustContain(t, "denial of "+tag, msg, "not signed by release", "not admitted as an artifact of sha256:"+target.Hex,
				"not a signature, attestation, SBOM or bundle type")
		}
	})
	t.Run("listed in the referrers fallback index", func(t *testing.T) {
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
			mutate.IndexAddendum{Add: evil, Descriptor: v1.Descriptor{ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json"}})
		e.up.PushIndex(t, repo+":sha256-"+victim.Hex, idx)
		resp, body := e.get(t, http.MethodGet, "/v2/"+repo+"/referrers/"+victim.String())
		if resp.StatusCode != 200 || !strings.Contains(string(body), evilDigest.String()) {
			t.Fatalf("referrers of the victim: %d %s", resp.StatusCode, body)
		}
		refused(t, e, repo, evilDigest.String(), evil)
	})
	t.Run("as the child of an index under an artifact tag", func(t *testing.T) {
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{Add: evil})
		tag := "sha256-" + target.Hex + ".att"
		e.up.PushIndex(t, repo+":"+tag, idx)
		denial(t, e, "/v2/"+repo+"/manifests/"+tag)
		refused(t, e, repo, evilDigest.String(), evil)
	})
	t.Run("with its subject set to the signed image", func(t *testing.T) {
		withSubject, ok := mutate.Subject(evil, v1.Descriptor{MediaType: types.OCIManifestSchema1, Digest: target, Size: 1}).(v1.Image)
		if !ok {
			t.Fatal("mutate.Subject did not return an image")
		}
		d, _ := withSubject.Digest()
		if err := remote.Write(mustRef(t, e.up.Ref(repo+"@"+d.String())), withSubject); err != nil {
			t.Fatal(err)
		}
		msg := refused(t, e, repo, d.String(), withSubject)
		mustContain(t, "denial", msg, "not admitted as a referrer of "+target.String())
	})
	t.Run("the signed image still verifies with cosign through the proxy", func(t *testing.T) {
		out := cosigntest.Run(t, bin, "verify", "--key", release.pub, "--insecure-ignore-tlog", "--allow-insecure-registry",
			"--allow-http-registry", e.ref(repo+"@"+victim.String()))
		mustContain(t, "cosign verify", out, victim.String())
		out = cosigntest.Run(t, bin, "verify-attestation", "--key", release.pub, "--insecure-ignore-tlog", "--allow-insecure-registry",
			"--allow-http-registry", "--type", "https://slsa.dev/provenance/v1", e.ref(repo+"@"+victim.String()))
		mustContain(t, "cosign verify-attestation", out, "Verification for", victim.String(), `"payloadType":"application/vnd.in-toto+json"`)
	})
	t.Run("admissions through a subject are counted", func(t *testing.T) {
		if got := decisionsCounted(t, e, "artifact"); got == 0 {
			t.Error("no admission counted as an artifact, though cosign fetched the .sig and .att")
		}
	})
}

// decisionsCounted sums portcullis_admission_decisions_total{how=how}.
func decisionsCounted(t *testing.T, e *env, how string) float64 {
	t.Helper()
	var sum float64
	for _, m := range gatherMetric(t, e, "portcullis_admission_decisions_total") {
		if m.labels["how"] == how {
			sum += m.value
		}
	}
	return sum
}

// concurrency counts requests in flight through a handler and remembers the peak.
type concurrency struct {
	mu        sync.Mutex
	now, peak int
}

func (c *concurrency) middleware(match func(*http.Request) bool, delay time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !match(r) {
				next.ServeHTTP(w, r)
				return
			}
			c.mu.Lock()
			c.now++
			c.peak = max(c.peak, c.now)
			c.mu.Unlock()
			defer func() {
				c.mu.Lock()
				c.now--
				c.mu.Unlock()
			}()
			time.Sleep(delay) // a slow upstream, so that decisions overlap
			next.ServeHTTP(w, r)
		})
	}
}

func (c *concurrency) max() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}

// TestColdDecisionsUnderConcurrencyCap: 200 clients ask at once for 200 digests nobody decided yet, on an upstream
// that answers signature look-ups slowly. The signature look-ups in flight at the upstream (one per running
// decision) never exceed the cap; with a short queue wait the excess gets 429 with Retry-After, not a pile of
// goroutines, and nothing of it is cached: a retry is decided.
func TestColdDecisionsUnderConcurrencyCap(t *testing.T) {
	const limit = 4
	sigs := &concurrency{}
	isSig := func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, ".sig") }
	for _, tc := range []struct {
		name      string
		clients   int
		queueWait time.Duration
	}{{"every request waits its turn", 200, time.Minute}, {"the excess is told to retry", 40, 10 * time.Millisecond}} {
		clients := tc.clients
		t.Run(tc.name, func(t *testing.T) {
			release := cosignKey(t)
			e := newEnv(t, withUpstream(registrytest.WithMiddleware(sigs.middleware(isSig, 20*time.Millisecond))),
				withPolicy(releasePolicy(""), map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)},
					admission.WithMaxConcurrentDecisions(limit, tc.queueWait)))
			for i := range clients {
				e.up.PushRandomImage(t, fmt.Sprintf("burst/app:v%d", i), 1, 64)
			}
			var wg sync.WaitGroup
			codes := make([]int, clients)
			retryAfter := make([]string, clients)
			for i := range clients {
				wg.Go(func() {
					resp, _ := e.get(t, http.MethodGet, fmt.Sprintf("/v2/burst/app/manifests/v%d", i))
					codes[i], retryAfter[i] = resp.StatusCode, resp.Header.Get("Retry-After")
				})
			}
			wg.Wait()
			if got := sigs.max(); got > limit || got == 0 {
				t.Errorf("signature look-ups in flight peaked at %d, cap %d", got, limit)
			}
			t.Logf("peak decisions in flight: %d (cap %d)", sigs.max(), limit)
			denied, busy := 0, 0
			for i, c := range codes {
				switch c {
				case http.StatusForbidden:
					denied++
				case http.StatusTooManyRequests:
					busy++
					if retryAfter[i] == "" {
						t.Errorf("429 without Retry-After")
					}
					// Nothing was cached for it: asked again, it is decided.
					if resp, _ := e.get(t, http.MethodGet, fmt.Sprintf("/v2/burst/app/manifests/v%d", i)); resp.StatusCode != http.StatusForbidden {
						t.Errorf("retry of v%d: %d, want its decision (403)", i, resp.StatusCode)
					}
				default:
					t.Errorf("v%d: %d", i, c)
				}
			}
			t.Logf("%d decided (denied: unsigned), %d told to retry", denied, busy)
			if tc.queueWait == time.Minute && busy != 0 {
				t.Errorf("%d requests refused though the queue wait covers them all", busy)
			}
			if tc.queueWait < time.Second && busy == 0 {
				t.Error("no request was refused with a 10ms queue wait and a slow upstream")
			}
		})
		sigs.peak = 0
	}
}

// TestStoredManifestNotServedUnderAnotherRepository tries, as an attacker who can push to one repository of the
// upstream but not to another that a lenient rule covers (warn mode here, as while a team rolls signing out), to
// get the attacker's image served under the other repository's name, so that a pod spec naming it looks like one
// of the team's images. Portcullis holds the image's manifest after pulling it where it is (and denying it); a
// pull of <other repository>@<digest> used to be answered from the content store and admitted by the lenient rule,
// though that repository never had the image. Now a manifest is served under a repository only once that
// repository's upstream has been seen to have it: 404 to GET and HEAD, crane cannot pull it; and once the
// repository really has the image, it is served.
func TestStoredManifestNotServedUnderAnotherRepository(t *testing.T) {
	release := cosignKey(t)
	lenient := "rules:\n  - name: staging\n    match: {repository: \"staging/**\"}\n    mode: warn\n    signedBy: {anyOf: [release]}\n"
	e := newEnv(t, withPolicy(releasePolicy(lenient), map[string][]byte{"release.pub": release.pubPEM(t), "other.pub": release.pubPEM(t)}))
	evil := e.up.PushRandomImage(t, "atk/evil:v1", 1, 1024)
	d, _ := evil.Digest()
	refused(t, e, "atk/evil", "v1", evil) // its manifest is in the content store now

	path := "/v2/staging/app/manifests/" + d.String()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		if resp, body := e.get(t, method, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s staging/app@%s, a digest only atk/evil has: %s %s; want 404", method, d, resp.Status, body)
		}
	}
	layers, _ := evil.Layers()
	ld, _ := layers[0].Digest()
	if resp, body := e.get(t, http.MethodGet, "/v2/staging/app/blobs/"+ld.String()); resp.StatusCode != http.StatusForbidden {
		t.Errorf("its layer under staging/app: %s %s; want 403", resp.Status, body)
	}
	if _, err := crane.Pull(e.ref("staging/app@"+d.String()), pullOpts()...); err == nil {
		t.Error("crane pulled the attacker's image as staging/app")
	}

	e.up.PushImage(t, "staging/app:v1", evil)
	resp, body := e.get(t, http.MethodGet, path)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Warning"), "not signed") {
		t.Errorf("GET staging/app@%s once the repository has it: %s, Warning %q %s; want 200 with the warn rule's warning",
			d, resp.Status, resp.Header.Get("Warning"), body)
	}
}
