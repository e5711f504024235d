package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/upstream"
)

// The benchmarks put the proxy next to a direct pull from the same in-process upstream: same client, same loopback.
// Run with `make bench`.

func benchGet(b *testing.B, client *http.Client, url string, accept string) {
	b.Helper()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkManifestWarm: a manifest by tag, warm (tag resolved within its TTL, manifest in the store).
func BenchmarkManifestWarm(b *testing.B) {
	e := newEnv(b)
	img := e.up.PushRandomImage(b, "bench/app:v1", 1, 1024)
	mt, _ := img.MediaType()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	b.Run("direct", func(b *testing.B) {
		benchGet(b, client, e.up.URL().String()+"/v2/bench/app/manifests/v1", string(mt))
	})
	b.Run("proxy", func(b *testing.B) {
		benchGet(b, client, e.srv.URL+"/v2/bench/app/manifests/v1", string(mt)) // warms on the first iteration
	})
}

// BenchmarkBlobWarm: a 16 MiB layer, served from the proxy's content store versus from the upstream.
func BenchmarkBlobWarm(b *testing.B) {
	e := newEnv(b)
	const size = 16 << 20
	img := e.up.PushRandomImage(b, "bench/blob:v1", 1, size)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	cl, _ := layers[0].Size()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(cl)
		benchGet(b, client, e.up.URL().String()+"/v2/bench/blob/blobs/"+ld.String(), "")
	})
	b.Run("proxy", func(b *testing.B) {
		b.SetBytes(cl)
		benchGet(b, client, e.srv.URL+"/v2/bench/blob/blobs/"+ld.String(), "")
	})
}

// BenchmarkAdmission: what the trust gate costs. cold-verify-decide is a first decision on a digest: a new gate
// (so no decision, no evidence cached) over the proxy's upstream client (its connections and tokens warm, as in a
// running proxy), gathering signatures from the upstream and evaluating the rule, next to upstream-manifest-fetch,
// the cold fetch every proxied pull pays anyway. re-decide decides the same digest again on one gate without a
// decision cache (what a second policy, the refresher or an expired decision pays), the signature artifacts in the
// proxy's content store; warm-decision-hit is a cached
// decision; warm-manifest-with-policy is a whole warm manifest GET through a gated proxy. Every decision runs under
// the pprof label path=admission, so that a profile can be focused on it (-tagfocus path=admission) and leave out
// the in-process upstream registry.
//
// It runs on two in-process upstreams that share the machine's cores with the proxy: CNCF Distribution, which
// allocates a 4 MiB read buffer for every blob it serves (a signature layer costs it ~5 ms on the project's
// machine), and go-containerregistry's in-memory registry, which has the referrers API and serves a blob in ~0.1 ms.
func BenchmarkAdmission(b *testing.B) {
	bin := cosigntest.Binary(b)
	priv, pub := cosigntest.KeyPair(b)
	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		b.Fatal(err)
	}
	for _, u := range benchUpstreams {
		b.Run(u.name, func(b *testing.B) { benchAdmission(b, bin, priv, pubPEM, u.opts) })
	}
}

// benchUpstreams are the in-process upstreams the admission benchmarks run on.
var benchUpstreams = []struct {
	name string
	opts []registrytest.Option
}{{"distribution", nil}, {"ggcr", []registrytest.Option{registrytest.WithGGCR()}}}

func benchAdmission(b *testing.B, bin, priv string, pubPEM []byte, upOpts []registrytest.Option) {
	const doc = "trust:\n  release: {key: release.pub}\ndefault:\n  signedBy: {anyOf: [release]}\n"
	files := map[string][]byte{"release.pub": pubPEM}
	e := newEnv(b, withPolicy(doc, files), withUpstream(upOpts...))
	img := e.up.PushRandomImage(b, "bench/signed:v1", 1, 1024)
	d, _ := img.Digest()
	cosigntest.Sign(b, bin, e.up.Ref("bench/signed@"+d.String()), priv)
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	dgst := digest.Digest(d.String())
	subject := admission.Subject{Upstream: e.up.Host(), Repository: "bench/signed", Digest: dgst, MediaType: string(mt), Manifest: raw}
	client, err := upstream.New(e.up.Host(), e.up.URL(), benchClient...)
	if err != nil {
		b.Fatal(err)
	}
	endpoints := map[string]admission.Endpoint{e.up.Host(): client}
	ctx := context.Background()
	admit := func(b *testing.B, g *admission.Gate) {
		pprof.Do(ctx, admissionLabel, func(ctx context.Context) {
			if v, err := g.Admit(ctx, subject); err != nil || !v.Allowed {
				b.Fatalf("%s %v", v.Reason, err)
			}
		})
	}

	b.Run("upstream-manifest-fetch", func(b *testing.B) {
		for b.Loop() {
			if _, _, _, err := client.Manifest(ctx, "bench/signed", d.String(), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cold-verify-decide", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			cold := newBenchGate(b, doc, files, endpoints)
			b.StartTimer()
			admit(b, cold)
		}
	})
	b.Run("re-decide", func(b *testing.B) {
		g := newGateWith(b, doc, files, endpoints, forgetful{}, admission.NewMetrics(nil), nil, nil,
			[]admission.EvidenceOption{admission.WithArtifactStore(e.content)})
		for b.Loop() {
			admit(b, g)
		}
	})
	b.Run("warm-decision-hit", func(b *testing.B) {
		if _, err := e.gate.Admit(ctx, subject); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if dec, err := e.gate.Admit(ctx, subject); err != nil || !dec.Allowed {
				b.Fatal(err)
			}
		}
	})
	b.Run("warm-manifest-with-policy", func(b *testing.B) {
		benchGet(b, http.DefaultClient, e.srv.URL+"/v2/bench/signed/manifests/"+d.String(), string(mt))
	})
}

// coldBurst is how many new digests BenchmarkColdAdmissions decides at once.
const coldBurst = 200

// BenchmarkColdAdmissions: a burst of coldBurst new key-signed digests (a rollout of many new images, say) through
// one gate with the default concurrency cap, all asked at once; it reports decisions/s. Each iteration is a new gate
// over the same upstream client, so that every decision is a first one. On Distribution (see BenchmarkAdmission)
// the upstream's CPU, not the gate's, sets the rate.
func BenchmarkColdAdmissions(b *testing.B) {
	bin := cosigntest.Binary(b)
	priv, pub := cosigntest.KeyPair(b)
	pubPEM, err := os.ReadFile(pub)
	if err != nil {
		b.Fatal(err)
	}
	const doc = "trust:\n  release: {key: release.pub}\ndefault:\n  signedBy: {anyOf: [release]}\n"
	files := map[string][]byte{"release.pub": pubPEM}
	for _, u := range benchUpstreams {
		b.Run(u.name, func(b *testing.B) {
			up := registrytest.New(b, u.opts...)
			subjects := make([]admission.Subject, coldBurst)
			refs := make([]string, coldBurst)
			for i := range subjects {
				repo := fmt.Sprintf("bench/burst%d", i) // one image a repository, as in a rollout (and go-containerregistry's registry lists referrers by reading every manifest of the repository)
				img := up.PushRandomImage(b, repo+":v1", 1, 256)
				d, _ := img.Digest()
				raw, _ := img.RawManifest()
				mt, _ := img.MediaType()
				subjects[i] = admission.Subject{Upstream: up.Host(), Repository: repo, Digest: digest.Digest(d.String()), MediaType: string(mt), Manifest: raw}
				refs[i] = up.Ref(repo + "@" + d.String())
			}
			// One cosign run signs them all (classic .sig tags, no transparency log), as cosigntest.Sign would one by one.
			cosigntest.Run(b, bin, append([]string{"sign", "--key", priv, "-y", "--allow-insecure-registry", "--allow-http-registry", "--tlog-upload=false"}, refs...)...)
			client, err := upstream.New(up.Host(), up.URL(), benchClient...)
			if err != nil {
				b.Fatal(err)
			}
			endpoints := map[string]admission.Endpoint{up.Host(): client}
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				g := newBenchGate(b, doc, files, endpoints)
				b.StartTimer()
				var wg sync.WaitGroup
				for _, s := range subjects {
					wg.Go(func() {
						pprof.Do(ctx, admissionLabel, func(ctx context.Context) {
							if v, err := g.Admit(ctx, s); err != nil || !v.Allowed {
								b.Errorf("%s: %s %v", s.Digest, v.Reason, err)
							}
						})
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(coldBurst*b.N)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// admissionLabel marks the goroutines of a decision (and those they start) in CPU profiles.
var admissionLabel = pprof.Labels("path", "admission")

// newBenchGate is a gate with nothing cached: no decision cache, and evidence that has seen nothing yet.
func newBenchGate(b *testing.B, doc string, files map[string][]byte, endpoints map[string]admission.Endpoint) *admission.Gate {
	return newGate(b, doc, files, endpoints, forgetful{}, admission.NewMetrics(nil), nil)
}

// BenchmarkScanVerdict: the scan gate's cost. cold-verdict-from-attestation verifies the vuln attestation,
// parses its Trivy report and evaluates the rule (no cache); verdict-cache-hit is the cached decision.
func BenchmarkScanVerdict(b *testing.B) {
	se := newScanEnv(b, nil)
	ref, d := se.push(b, "scan/bench")
	se.attestVuln(b, ref, se.scanKey, time.Now().Add(-time.Hour), low, high)
	raw, err := crane.Manifest(ref, crane.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	s := admission.Subject{Upstream: se.up.Host(), Repository: "scan/bench", Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json", Manifest: raw}
	ctx := context.Background()
	b.Run("cold-verdict-from-attestation", func(b *testing.B) {
		client, err := upstream.New(se.up.Host(), se.up.URL(), benchClient...)
		if err != nil {
			b.Fatal(err)
		}
		files := map[string][]byte{"scanner.pub": se.scanKey.pubPEM(b), "other.pub": se.otherKey.pubPEM(b)}
		cold := newGate(b, fmt.Sprintf(scanPolicy, se.scanner.URL()), files, map[string]admission.Endpoint{se.up.Host(): client},
			forgetful{}, admission.NewMetrics(nil), nil)
		for b.Loop() {
			if v, err := cold.Admit(ctx, s); err != nil || v.Evaluation == nil || v.Evaluation.Facts.Scan == nil || v.Allowed {
				b.Fatalf("%s %v", v.Reason, err)
			}
		}
	})
	b.Run("verdict-cache-hit", func(b *testing.B) {
		g, err := admission.NewGate(se.gate.Policy(), benchEvidence{}, cache.NewMemory(), admission.WithLogger(testLogger(b)))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := g.Admit(ctx, s); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := g.Admit(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchEvidence is a report that never changes, so a cached verdict is all the second benchmark measures.
type benchEvidence struct{}

func (benchEvidence) Gather(context.Context, admission.Subject, policy.Requirements, admission.GatherOptions) (policy.Facts, error) {
	return policy.Facts{Scan: &policy.ScanReport{Source: policy.SourceCI, ScanTime: time.Now()}}, nil
}

// benchClient are the options newEnv gives its upstream client, so that a cold gate pays what the proxy's does.
var benchClient = []upstream.Option{upstream.WithRetries(2, 10*time.Millisecond), upstream.WithAllowPrivateAddresses(true)}

// forgetful is a KV that keeps nothing, so that every Admit on a gate over it evaluates afresh: the cold path.
type forgetful struct{}

func (forgetful) Get(context.Context, string) ([]byte, error) { return nil, cache.ErrNotFound }
func (forgetful) Set(context.Context, string, []byte, time.Duration) error {
	return nil
}
func (forgetful) Delete(context.Context, string) error { return nil }
func (forgetful) Close() error                         { return nil }
