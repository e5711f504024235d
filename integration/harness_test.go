package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/policy/rego"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
	"github.com/portcullis/portcullis/verifier/dct"
)

// env is one Portcullis in front of one real upstream registry.
type env struct {
	up      *registrytest.Registry
	proxy   *proxy.Proxy
	srv     *httptest.Server
	content *cache.Content
	kv      cache.KV
	metrics *proxy.Metrics
	// reg holds metrics, for tests that read them as Prometheus would.
	reg *prometheus.Registry
	// seen records every request the proxy received (method, path?query).
	seen *requestLog
	gate *admission.Gate
}

type envConfig struct {
	upstreamOpts []registrytest.Option
	clientOpts   []upstream.Option
	proxyOpts    []proxy.Option
	extra        []*proxy.Upstream
	contentDir   string
	kv           cache.KV
	// policy is a policy document; files it names are looked up in policyFiles (name -> content).
	policy      string
	policyFiles map[string][]byte
	gateOpts    []admission.Option
	// scanning builds the scan gate's report store, credentials and scanners.
	scanning func(kv cache.KV, proxyURL, defaultUpstream string) *admission.Scanning
	// notary, when not nil, lets the gate read Docker Content Trust for the policy's notary roots.
	notary []dct.Option
}

// withPolicy puts a policy gate in front of the proxy. files are the keys and trusted roots the policy names.
func withPolicy(doc string, files map[string][]byte, o ...admission.Option) envOption {
	return func(c *envConfig) { c.policy, c.policyFiles, c.gateOpts = doc, files, o }
}

type envOption func(*envConfig)

// withNotary lets the gate read Docker Content Trust (notary roots) with a dct client built with o.
func withNotary(o ...dct.Option) envOption {
	return func(c *envConfig) { c.notary = append([]dct.Option{}, o...) }
}

func withUpstream(o ...registrytest.Option) envOption {
	return func(c *envConfig) { c.upstreamOpts = append(c.upstreamOpts, o...) }
}
func withClient(o ...upstream.Option) envOption {
	return func(c *envConfig) { c.clientOpts = append(c.clientOpts, o...) }
}
func withProxy(o ...proxy.Option) envOption {
	return func(c *envConfig) { c.proxyOpts = append(c.proxyOpts, o...) }
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	var c envConfig
	for _, o := range opts {
		o(&c)
	}
	up := registrytest.New(t, c.upstreamOpts...)
	client, err := upstream.New(up.Host(), up.URL(), append([]upstream.Option{
		upstream.WithRetries(2, 10*time.Millisecond), upstream.WithAllowPrivateAddresses(true),
	}, c.clientOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	dir := c.contentDir
	if dir == "" {
		dir = t.TempDir()
	}
	driver, err := cache.NewDriver("filesystem", map[string]any{"rootdirectory": dir})
	if err != nil {
		t.Fatal(err)
	}
	content, err := cache.NewContent(driver)
	if err != nil {
		t.Fatal(err)
	}
	kv := c.kv
	if kv == nil {
		kv = cache.NewMemory()
		t.Cleanup(func() { _ = kv.Close() })
	}
	reg := prometheus.NewRegistry()
	metrics := proxy.NewMetrics(reg)
	seen := &requestLog{}
	srv := httptest.NewServer(http.NotFoundHandler()) // the proxy's address is needed before the proxy (scanners pull through it)
	t.Cleanup(srv.Close)
	ups := append([]*proxy.Upstream{{Name: up.Host(), Registry: client}}, c.extra...)
	popts := []proxy.Option{proxy.WithLogger(testLogger(t)), proxy.WithMetrics(metrics), proxy.WithSpoolDir(t.TempDir())}
	var gate *admission.Gate
	if c.policy != "" {
		var scanning *admission.Scanning
		if c.scanning != nil {
			scanning = c.scanning(kv, srv.URL, up.Host())
			c.gateOpts = append(c.gateOpts, admission.WithReports(scanning.Reports))
			popts = append(popts, proxy.WithScanCredentials(scanning.Credentials))
		}
		endpoints := map[string]admission.Endpoint{}
		for _, u := range ups {
			if ep, ok := u.Registry.(admission.Endpoint); ok {
				endpoints[u.Name] = ep
			}
		}
		gate = newGateWith(t, c.policy, c.policyFiles, endpoints, kv, admission.NewMetrics(reg), scanning, c.notary,
			[]admission.EvidenceOption{admission.WithArtifactStore(content)}, c.gateOpts...)
		popts = append(popts, proxy.WithAdmitter(gate))
	}
	p, err := proxy.New(ups, "", content, kv, append(popts, c.proxyOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	waitDownloads(t, p)
	srv.Config.Handler = seen.wrap(p)
	return &env{up: up, proxy: p, srv: srv, content: content, kv: kv, metrics: metrics, reg: reg, seen: seen, gate: gate}
}

// newGate compiles a policy and builds the admission gate the way cmd/portcullis does, without an artifact store.
func newGate(t testing.TB, doc string, files map[string][]byte, endpoints map[string]admission.Endpoint, kv cache.KV, m *admission.Metrics, scanning *admission.Scanning, o ...admission.Option) *admission.Gate {
	t.Helper()
	return newGateWith(t, doc, files, endpoints, kv, m, scanning, nil, nil, o...)
}

// newGateWith is newGate with evidence options (the artifact store, the missing-evidence TTL) and, when notary is not
// nil, Docker Content Trust read with a dct client built with notary.
func newGateWith(t testing.TB, doc string, files map[string][]byte, endpoints map[string]admission.Endpoint, kv cache.KV, m *admission.Metrics,
	scanning *admission.Scanning, notary []dct.Option, evOpts []admission.EvidenceOption, o ...admission.Option) *admission.Gate {
	t.Helper()
	engine, err := rego.New() // the Rego engine, as cmd/portcullis plugs it in
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(doc), "policy.yaml", func(name string) ([]byte, error) {
		if b, ok := files[filepath.Base(name)]; ok {
			return b, nil
		}
		return nil, fmt.Errorf("%s: %w", name, os.ErrNotExist)
	}, policy.WithModuleCompiler(engine))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	v, err := verifier.New(pol.TrustRoots())
	if err != nil {
		t.Fatalf("verifier: %v", err)
	}
	evOpts = slices.Clone(evOpts)
	if notary != nil {
		n, err := dct.New(pol.TrustRoots(), notary...)
		if err != nil {
			t.Fatalf("dct: %v", err)
		}
		evOpts = append(evOpts, admission.WithNotary(n))
	}
	ev, err := admission.NewEvidence(v, endpoints, scanning, evOpts...)
	if err != nil {
		t.Fatal(err)
	}
	g, err := admission.NewGate(pol, ev, kv, append([]admission.Option{admission.WithLogger(testLogger(t)), admission.WithMetrics(m)}, o...)...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// host is the proxy's host:port, as a client names it.
func (e *env) host() string { return strings.TrimPrefix(e.srv.URL, "http://") }

// ref is a reference to repoTag through the proxy (default upstream).
func (e *env) ref(repoTag string) string { return e.host() + "/" + repoTag }

func (e *env) get(t testing.TB, method, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, b
}

// pullOpts are crane options for pulling through the proxy (plain HTTP).
func pullOpts() []crane.Option { return []crane.Option{crane.Insecure} }

func mustRef(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PORTCULLIS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// requestLog records the requests a handler saw: the newest maxRequestLog to 2*maxRequestLog of them, so that a
// long run (the soak) does not grow the test's heap with it.
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

const maxRequestLog = 10000

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		if len(l.reqs) == 2*maxRequestLog {
			l.reqs = append(make([]string, 0, 2*maxRequestLog), l.reqs[maxRequestLog:]...)
		}
		l.reqs = append(l.reqs, r.Method+" "+r.URL.RequestURI())
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.reqs...)
}

// withQuery returns path with a query parameter added.
//
//lint:ignore U1000 kept for tests that route by the ns= query parameter
func withQuery(path, k, v string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + url.QueryEscape(k) + "=" + url.QueryEscape(v)
}

var _ = context.Background

// tagTTL makes tags expire after n milliseconds, for tests that move tags.
func tagTTL(ms int) proxy.Option { return proxy.WithTagTTL(time.Duration(ms) * time.Millisecond) }

// waitTagTTL waits out tagTTL(1).
func waitTagTTL() { time.Sleep(20 * time.Millisecond) }

// metricSample is one series of a metric family.
type metricSample struct {
	labels map[string]string
	value  float64
}

// gatherMetric returns the series of the named counter or gauge family as the proxy exports them.
func gatherMetric(t testing.TB, e *env, name string) []metricSample {
	t.Helper()
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []metricSample
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			s := metricSample{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			}
			out = append(out, s)
		}
	}
	return out
}

// waitDownloads has the test wait, at its end, for p's blob commits that outlive their requests, so that nothing
// writes to a temporary directory while it is removed.
func waitDownloads(t testing.TB, p *proxy.Proxy) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
}
