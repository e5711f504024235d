package fleetsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
)

// Options size a simulation.
type Options struct {
	// Nodes pull every image once each, through replica node % Replicas.
	Nodes, Images, Replicas int
	// Parallel bounds the pulls in flight at once (the nodes' connections). Default 256.
	Parallel int
	// RedisAddr is the shared Redis (cache/cachetest.StartRedis).
	RedisAddr string
}

// Result is what a simulation counted.
type Result struct {
	Options
	// Pulls is node-image pulls done; Requests the registry requests they made (manifest by tag, config, layers).
	Pulls, Requests int
	Wall            time.Duration
	// The most upstream requests any one tag (HEAD or GET by tag), manifest digest (GET by digest) and blob digest
	// received, and the total.
	MaxPerTag, MaxPerManifest, MaxPerBlob, Upstream int
	// The most verifications (evidence gatherings) of any one digest, fleet-wide, and the total.
	MaxVerifications, Verifications int
}

// String is a one-line summary.
func (r Result) String() string {
	return fmt.Sprintf("%d nodes x %d images through %d replicas: %d pulls (%d requests) in %s; upstream: %d requests, at most %d per tag, %d per manifest, %d per blob; verifications: %d, at most %d per digest",
		r.Nodes, r.Images, r.Replicas, r.Pulls, r.Requests, r.Wall.Round(time.Millisecond), r.Upstream, r.MaxPerTag, r.MaxPerManifest, r.MaxPerBlob,
		r.Verifications, r.MaxVerifications)
}

// policyDoc admits every image after gathering its (empty) evidence: the simulation counts decisions, not crypto.
const policyDoc = "default:\n  mode: enforce\n"

// image is one pushed image and the paths a pull asks for.
type image struct {
	repo   string
	mt     string
	dgst   digest.Digest
	blobs  []digest.Digest
	tagged string
}

// Run starts the upstream and the replicas, rolls the images out and counts.
func Run(t testing.TB, o Options) Result {
	t.Helper()
	if o.Parallel <= 0 {
		o.Parallel = 256
	}
	up := registrytest.New(t)
	images := make([]image, o.Images)
	for i := range images {
		repo := fmt.Sprintf("fleet/app%d", i)
		img := up.PushRandomImage(t, repo+":v1", 1, 1024)
		d, _ := img.Digest()
		mt, _ := img.MediaType()
		m, _ := img.Manifest()
		im := image{repo: repo, mt: string(mt), dgst: digest.Digest(d.String()), tagged: "v1",
			blobs: []digest.Digest{digest.Digest(m.Config.Digest.String())}}
		for _, l := range m.Layers {
			im.blobs = append(im.blobs, digest.Digest(l.Digest.String()))
		}
		images[i] = im
	}
	ev := &countingEvidence{counts: map[digest.Digest]int{}}
	urls := make([]string, o.Replicas)
	contentDir := t.TempDir()
	prefix := "fleetsim-" + randomHex() + ":"
	stateKey := []byte(randomHex() + randomHex())
	for i := range urls {
		urls[i] = startReplica(t, up, o.RedisAddr, prefix, stateKey, contentDir, ev)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConns: o.Parallel * 2, MaxIdleConnsPerHost: o.Parallel}}
	type pull struct{ node, image int }
	work := make(chan pull)
	var requests atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				n, err := pullImage(client, urls[p.node%len(urls)], images[p.image])
				requests.Add(int64(n))
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	for i := range images { // a rollout: every node pulls image i, then the next image
		for n := range o.Nodes {
			work <- pull{n, i}
		}
	}
	close(work)
	wg.Wait()
	r := Result{Options: o, Pulls: o.Nodes * o.Images, Requests: int(requests.Load()), Wall: time.Since(start)}
	if err, ok := firstErr.Load().(error); ok {
		t.Fatalf("fleetsim: %v", err)
	}
	hits := up.Hits()
	r.Upstream = hits.Total()
	for _, im := range images {
		r.MaxPerTag = max(r.MaxPerTag, hits.CountPath("", "/v2/"+im.repo+"/manifests/"+im.tagged))
		r.MaxPerManifest = max(r.MaxPerManifest, hits.CountPath("", "/v2/"+im.repo+"/manifests/"+im.dgst.String()))
		for _, b := range im.blobs {
			r.MaxPerBlob = max(r.MaxPerBlob, hits.CountPath("", "/v2/"+im.repo+"/blobs/"+b.String()))
		}
	}
	ev.mu.Lock()
	for _, n := range ev.counts {
		r.Verifications += n
		r.MaxVerifications = max(r.MaxVerifications, n)
	}
	ev.mu.Unlock()
	return r
}

// pullImage does what a node does: the manifest by tag, then its config and layers. It returns the requests made.
func pullImage(client *http.Client, base string, im image) (int, error) {
	body, err := fetch(client, base+"/v2/"+im.repo+"/manifests/"+im.tagged, im.mt)
	if err != nil {
		return 1, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return 1, fmt.Errorf("manifest of %s: %w", im.repo, err)
	}
	n := 1
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		n++
		b, err := fetch(client, base+"/v2/"+im.repo+"/blobs/"+d.Digest.String(), "")
		if err != nil {
			return n, err
		}
		if digest.FromBytes(b) != d.Digest {
			return n, fmt.Errorf("blob %s of %s: wrong bytes", d.Digest, im.repo)
		}
	}
	return n, nil
}

func fetch(client *http.Client, url, accept string) ([]byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, b)
	}
	return b, err
}

// startReplica serves one Portcullis wired as cmd/portcullis wires a fleet member: a local tier in front of signed
// Redis state with epochs invalidated on a Redis bus, the shared content store on the filesystem, a gate.
func startReplica(t testing.TB, up *registrytest.Registry, addr, prefix string, stateKey []byte, contentDir string, ev *countingEvidence) string {
	t.Helper()
	p := cache.WithKeyPrefix(prefix)
	client := cache.RedisClient([]string{addr}, "", "", "", 0)
	bus := cache.NewRedisBus(cache.RedisClient([]string{addr}, "", "", "", 0), p)
	shared, err := cache.NewSigned(cache.NewRedis(client, p), stateKey)
	if err != nil {
		t.Fatal(err)
	}
	kv := cache.NewTiered(cache.NewMemory(), shared, 30*time.Second, admission.TieredOptions(bus)...)
	t.Cleanup(func() { _ = kv.Close(); _ = bus.Close() })
	driver, err := cache.NewDriver("filesystem", map[string]any{"rootdirectory": contentDir})
	if err != nil {
		t.Fatal(err)
	}
	content, err := cache.NewContent(driver)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := upstream.New(up.Host(), up.URL(), upstream.WithRetries(2, 10*time.Millisecond), upstream.WithAllowPrivateAddresses(true))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(policyDoc), "policy.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := verifier.New(pol.TrustRoots())
	if err != nil {
		t.Fatal(err)
	}
	real, err := admission.NewEvidence(v, map[string]admission.Endpoint{up.Host(): uc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	gate, err := admission.NewGate(pol, &countedEvidence{Evidence: real, c: ev}, kv,
		admission.WithLogger(log), admission.WithReports(admission.NewReports(kv, 0)))
	if err != nil {
		t.Fatal(err)
	}
	px, err := proxy.New([]*proxy.Upstream{{Name: up.Host(), Registry: uc}}, "", content, kv,
		proxy.WithLogger(log), proxy.WithAdmitter(gate), proxy.WithSpoolDir(t.TempDir()),
		// One TTL spans the whole rollout, so every tag may be asked upstream once.
		proxy.WithTagTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(px)
	t.Cleanup(srv.Close)
	return srv.URL
}

// countingEvidence counts the evidence gatherings (verifications) of each digest across the fleet.
type countingEvidence struct {
	mu     sync.Mutex
	counts map[digest.Digest]int
}

// countedEvidence is one replica's Evidence, counted fleet-wide.
type countedEvidence struct {
	admission.Evidence
	c *countingEvidence
}

func (e *countedEvidence) Gather(ctx context.Context, s admission.Subject, req policy.Requirements, o admission.GatherOptions) (policy.Facts, error) {
	e.c.mu.Lock()
	e.c.counts[s.Digest]++
	e.c.mu.Unlock()
	return e.Evidence.Gather(ctx, s, req, o)
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
