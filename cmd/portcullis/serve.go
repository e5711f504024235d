package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portcullis/portcullis/admin"
	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/cache"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/upstream"
	"github.com/portcullis/portcullis/verifier"
	"github.com/portcullis/portcullis/verifier/dct"
)

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	var cf commonFlags
	cf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{msg: fmt.Sprintf("serve takes no arguments, got %q", fs.Args())}
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	app, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer app.Close()
	return app.Run(ctx)
}

// app is the wired process: the proxy, its listeners and what they own.
type app struct {
	cfg     *configs.Config
	log     *slog.Logger
	proxy   *proxy.Proxy
	kv      cache.KV
	reg     *prometheus.Registry
	gate    *admission.Gate
	reports *admission.Reports
	// lists and auditor are the allow/deny lists and the audit log the admin API serves; nil until build has
	// the shared state they live in, and then their routes are not served.
	lists   *admission.Lists
	auditor *admission.Auditor
	// bus carries change notices between replicas; journal holds the audit log and the pull log; health is what
	// /readyz asks besides the listeners.
	bus     cache.Bus
	journal cache.Journal
	health  []cache.HealthChecker
	clients map[string]*upstream.Client
	ready   atomic.Bool
	closers []func() error

	// listening is closed once both listeners accept connections; tests wait on it.
	listening chan struct{}
	addr      net.Addr
	opsAddr   net.Addr
	adminAddr net.Addr

	// policyFile reloads the policy (admin API, SIGHUP, other replicas' notices); nil without a policy.
	policyFile *admission.PolicyFile
}

// build wires the graph from a validated config. Only this package wires.
func build(ctx context.Context, cfg *configs.Config, log *slog.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log, reg: prometheus.NewRegistry(), listening: make(chan struct{}), clients: map[string]*upstream.Client{}}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := proxy.NewMetrics(a.reg)

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	spool := filepath.Join(cfg.DataDir, "spool")
	if err := os.MkdirAll(spool, 0o750); err != nil {
		return nil, fmt.Errorf("spool dir: %w", err)
	}

	if err := a.openState(ctx, cfg, log); err != nil {
		return nil, err
	}

	driver, err := cache.NewDriver(cfg.Content.Driver, cfg.Content.Parameters)
	if err != nil {
		return nil, fmt.Errorf("content.driver %s: %w", cfg.Content.Driver, err)
	}
	content, err := cache.NewContent(driver, cache.WithMaxSize(int64(cfg.Content.MaxSize)))
	if err != nil {
		return nil, err
	}
	if err := content.Load(ctx); err != nil {
		return nil, fmt.Errorf("content store: %w", err)
	}
	log.Info("content store ready", "driver", cfg.Content.Driver, "bytes", content.Size(), "maxSize", cfg.Content.MaxSize.String())

	var ups []*proxy.Upstream
	for _, uc := range cfg.Upstreams {
		c, err := newUpstreamClient(uc, cfg, upstream.WithObserver(metrics.UpstreamObserver(uc.Name)),
			upstream.WithBreakerObserver(breakerLog(log, uc, metrics.BreakerObserver(uc.Name))))
		if err != nil {
			return nil, fmt.Errorf("upstream %s: %w", uc.Name, err)
		}
		ups = append(ups, &proxy.Upstream{Name: uc.Name, Registry: c})
		a.clients[uc.Name] = c
	}
	def := cfg.DefaultUpstream()
	opts := []proxy.Option{
		proxy.WithLogger(log),
		proxy.WithMetrics(metrics),
		proxy.WithTagTTL(time.Duration(cfg.Tags.TTL)),
		proxy.WithStaleIfError(cfg.Tags.StaleIfError, time.Duration(cfg.Tags.MaxStale)),
		proxy.WithMaxManifestSize(int64(cfg.Content.MaxManifestSize)),
		proxy.WithSpoolDir(spool),
		proxy.WithSpoolMaxSize(int64(cfg.Content.SpoolMaxSize)),
	}
	if cfg.Policy == "" {
		log.Info("no policy configured: every image is served (set policy: or --policy to enable the trust and scan gates)")
	} else {
		a.reports = admission.NewReports(a.kv, 0)
		creds := admission.NewScanCredentials(a.kv)
		endpoints := map[string]admission.Endpoint{}
		for name, c := range a.clients {
			endpoints[name] = c
		}
		// Signature and attestation artifacts read by digest are kept, so a re-decision, a reloaded policy or a
		// preview reads them locally: the small ones (nearly all) in a pack in the data directory, the rest in the
		// content store.
		evOpts := []admission.EvidenceOption{admission.WithArtifactStore(a.artifactStore(cfg, content, log))}
		gate, err := newGate(cfg, endpoints, a.kv, a.reports, creds, admission.NewMetrics(a.reg), log, evOpts,
			admission.WithLists(a.lists), admission.WithAudit(a.auditor), admission.WithPullLog(a.journal))
		if err != nil {
			return nil, err
		}
		a.gate = gate
		a.closers = append(a.closers, gate.Close)
		// A reload on any replica is announced on the bus; every replica reloads its own copy of the file.
		popts, err := policyOptions(cfg)
		if err != nil {
			return nil, err
		}
		if a.policyFile, err = admission.NewPolicyFile(cfg.Policy, gate, evidenceBuilder(cfg, endpoints, a.reports, creds, log, evOpts...), a.bus, popts...); err != nil {
			return nil, err
		}
		opts = append(opts, proxy.WithAdmitter(gate), proxy.WithScanCredentials(creds))
	}
	p, err := proxy.New(ups, def.Name, content, a.kv, opts...)
	if err != nil {
		return nil, err
	}
	a.proxy = p
	a.health = append(a.health, p) // a content store that refuses writes degrades /readyz
	return a, nil
}

// newGate loads and compiles the policy and builds the admission gate with its verifier and scanners.
func newGate(cfg *configs.Config, endpoints map[string]admission.Endpoint, kv cache.KV, reports *admission.Reports, creds *admission.ScanCredentials,
	m *admission.Metrics, log *slog.Logger, evOpts []admission.EvidenceOption, extra ...admission.Option) (*admission.Gate, error) {
	path := cfg.Policy
	popts, err := policyOptions(cfg)
	if err != nil {
		return nil, err
	}
	pol, err := policy.Load(path, popts...)
	if err != nil {
		return nil, err
	}
	ev, err := evidenceBuilder(cfg, endpoints, reports, creds, log, evOpts...)(pol)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	adm := cfg.Admission
	gate, err := admission.NewGate(pol, ev, kv, append([]admission.Option{admission.WithLogger(log), admission.WithMetrics(m),
		admission.WithReports(reports), admission.WithDecisionTimeout(time.Duration(adm.DecisionTimeout)),
		admission.WithMaxConcurrentDecisions(adm.MaxConcurrentDecisions, time.Duration(adm.QueueWait))}, extra...)...)
	if err != nil {
		return nil, err
	}
	log.Info("policy loaded: images are served only when they pass it", "policy", path, "hash", pol.Hash()[:12])
	if !pol.HasDefault() {
		log.Warn("the policy has no default: section: images that no rule matches are denied", "policy", path)
	}
	return gate, nil
}

// evidenceBuilder builds a policy's evidence gatherer: a verifier for its trust roots and a client for each of its
// scanners, reaching the upstreams through endpoints and keeping reports in reports. The gate's first policy, each
// reloaded one and each previewed candidate are built with it.
func evidenceBuilder(cfg *configs.Config, endpoints map[string]admission.Endpoint, reports *admission.Reports, creds *admission.ScanCredentials,
	log *slog.Logger, evOpts ...admission.EvidenceOption) admission.EvidenceBuilder {
	return func(pol *policy.Policy) (admission.Evidence, error) {
		v, err := verifier.New(pol.TrustRoots())
		if err != nil {
			return nil, err
		}
		scanning := &admission.Scanning{Reports: reports, Credentials: creds, Scanners: map[string]admission.ScannerEndpoint{},
			DefaultUpstream: cfg.DefaultUpstream().Name}
		for name, sc := range pol.Scanners() {
			client, err := scannerClient(sc)
			if err != nil {
				return nil, fmt.Errorf("scanner %s: %w", name, err)
			}
			pull := sc.PullURL
			if pull == "" {
				pull = registryURL(cfg, os.Hostname)
				log.Info("scanner pulls images back through the registry listener at its default URL; set pullURL in the policy's scanners entry if it reaches Portcullis by another name",
					"scanner", name, "pullURL", pull)
			}
			scanning.Scanners[name] = admission.ScannerEndpoint{Scanner: client, PullURL: pull}
		}
		// Docker Content Trust: notary servers are reached with the system's TLS roots.
		notary, err := dct.New(pol.TrustRoots())
		if err != nil {
			return nil, err
		}
		return admission.NewEvidence(v, endpoints, scanning, append(evOpts, admission.WithNotary(notary))...)
	}
}

// registryURL is where scanners reach this proxy's registry listener when the policy does not say (pullURL):
// https when the listener serves TLS, else http; the listen address as it stands when it names a host, and the
// machine's host name (hostname; "localhost" when it has none) when it is a wildcard (":5000", "0.0.0.0:5000",
// "[::]:5000"), which no scanner can dial. A scanner on another machine that does not resolve that name, or a
// TLS certificate that does not name it, needs pullURL.
func registryURL(cfg *configs.Config, hostname func() (string, error)) string {
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return scheme + "://" + cfg.Listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
		if h, err := hostname(); err == nil && h != "" {
			host = h
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// breakerLog tells the log when an upstream's circuit breaker opens or closes, and passes the change on to metric.
func breakerLog(log *slog.Logger, uc configs.Upstream, metric func(open bool)) func(open bool) {
	return func(open bool) {
		metric(open)
		if open {
			log.Warn("upstream circuit breaker open: calls fail at once, stale content serves", "upstream", uc.Name,
				"failures", uc.CircuitBreaker.Failures, "cooldown", time.Duration(uc.CircuitBreaker.Cooldown).String())
			return
		}
		log.Info("upstream circuit breaker closed: the upstream answers again", "upstream", uc.Name)
	}
}

// newUpstreamClient builds the client for one configured upstream: its timeout, retries, body idle timeout, circuit
// breaker, credentials and TLS, the
// manifest size cap, and extra (serve adds its metrics observer).
func newUpstreamClient(uc configs.Upstream, cfg *configs.Config, extra ...upstream.Option) (*upstream.Client, error) {
	endpoint, err := uc.Endpoint()
	if err != nil {
		return nil, err
	}
	opts := []upstream.Option{
		upstream.WithTimeout(time.Duration(uc.Timeout)),
		upstream.WithRetries(uc.Retries, 200*time.Millisecond),
		upstream.WithBodyIdleTimeout(time.Duration(uc.BodyIdleTimeout)),
		upstream.WithCircuitBreaker(uc.CircuitBreaker.Failures, time.Duration(uc.CircuitBreaker.Cooldown)),
		upstream.WithUserAgent("portcullis/" + version),
		upstream.WithAllowPrivateAddresses(uc.PrivateAddressesAllowed()),
		upstream.WithMaxManifestSize(int64(cfg.Content.MaxManifestSize)),
	}
	opts = append(opts, extra...)
	user, pass, err := uc.Credentials()
	if err != nil {
		return nil, err
	}
	if user != "" || pass != "" {
		opts = append(opts, upstream.WithBasicAuth(user, pass))
	}
	if uc.CAFile != "" || uc.InsecureSkipVerify {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: uc.InsecureSkipVerify} //nolint:gosec // opt-in per upstream
		if uc.CAFile != "" {
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			pem, err := os.ReadFile(uc.CAFile)
			if err != nil {
				return nil, err
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("caFile %s: no PEM certificates", uc.CAFile)
			}
			tc.RootCAs = pool
		}
		opts = append(opts, upstream.WithTLSConfig(tc))
	}
	return upstream.New(uc.Name, endpoint, opts...)
}

// Run serves until ctx is done, then drains: readiness goes false, a short delay lets load balancers notice,
// and the servers shut down within the grace period.
func (a *app) Run(ctx context.Context) error {
	cfg := a.cfg
	regLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	a.addr = regLn.Addr()
	regSrv := a.newServer(a.proxy)
	regSrv.Protocols = registryProtocols()
	servers := []*http.Server{regSrv}
	errc := make(chan error, 3)
	if cfg.TLS.Enabled() {
		// TLS 1.2 at least, whatever a GODEBUG setting says the default is.
		regSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		go func() { errc <- regSrv.ServeTLS(regLn, cfg.TLS.Cert, cfg.TLS.Key) }()
	} else {
		go func() { errc <- regSrv.Serve(regLn) }()
	}
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	a.log.Info("registry listening", "addr", scheme+"://"+a.addr.String())

	if cfg.OpsListen != "" {
		opsLn, err := net.Listen("tcp", cfg.OpsListen)
		if err != nil {
			_ = regSrv.Close()
			return fmt.Errorf("listen %s (opsListen): %w", cfg.OpsListen, err)
		}
		a.opsAddr = opsLn.Addr()
		opsSrv := a.newServer(a.opsHandler())
		servers = append(servers, opsSrv)
		go func() { errc <- opsSrv.Serve(opsLn) }()
		a.log.Info("ops listening", "addr", "http://"+a.opsAddr.String(), "endpoints", "/metrics /healthz /readyz /clair/{scanner}/notify")
	}
	if cfg.Admin.Enabled() {
		srv, err := a.startAdmin(errc)
		if err != nil {
			for _, s := range servers {
				_ = s.Close()
			}
			return err
		}
		servers = append(servers, srv)
	}
	if a.gate != nil {
		go a.gate.RunRefresher(ctx, time.Minute)
	}
	go a.lists.Run(ctx, time.Second)
	if a.policyFile != nil {
		go a.policyFile.Run(ctx)
	}
	a.watchSIGHUP(ctx)
	a.ready.Store(true)
	close(a.listening)

	select {
	case err := <-errc:
		return fmt.Errorf("server stopped: %w", err)
	case <-ctx.Done():
	}
	a.ready.Store(false)
	a.log.Info("shutting down: readiness false, draining", "drainDelay", cfg.Shutdown.DrainDelay.String(), "gracePeriod", cfg.Shutdown.GracePeriod.String())
	time.Sleep(time.Duration(cfg.Shutdown.DrainDelay))
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.Shutdown.GracePeriod))
	defer cancel()
	var errs []error
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	// Blobs already served may still be on their way into the content store (an upload to S3): finish them within
	// the grace period rather than lose them.
	if err := a.proxy.Wait(sctx); err != nil {
		a.log.Warn("stopping with blob downloads unfinished; they will be fetched again", "error", err)
	}
	a.log.Info("stopped")
	return errors.Join(errs...)
}

// registryProtocols is HTTP/1.1 only, over TLS too: a denied HEAD carries its reason in the HTTP/1.1 status line,
// which is all containerd shows of it, and HTTP/2 has no reason phrase. Registry clients pull over several
// connections, so HTTP/2's multiplexing buys little here.
func registryProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	return p
}

// Limits every listener (registry, ops, admin) shares, so that no client can hold a connection or the
// memory for its headers without end: headers must arrive within readHeaderTimeout and fit in
// maxHeaderBytes (beyond it the client gets 431), and an idle keep-alive connection closes after
// idleTimeout. Registry clients send small headers (a bearer token at most); 64 KiB is generous.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// newServer returns an http.Server for h with the shared limits, logging its errors as warnings.
func (a *app) newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout,
		MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
}

// startAdmin serves the admin API on its own listener, over TLS when admin.tls says so. Without a policy there are
// no reports to keep, so it answers only that. The list and audit routes are served once build provides the lists
// and the auditor.
func (a *app) startAdmin(errc chan<- error) (*http.Server, error) {
	auth, err := adminAuthenticator(a.cfg, a.log)
	if err != nil {
		return nil, err
	}
	reports := a.reports
	if reports == nil {
		reports = admission.NewReports(a.kv, 0)
	}
	opts := []admin.Option{admin.WithReports(reports), admin.WithLogger(a.log)}
	if a.lists != nil {
		opts = append(opts, admin.WithLists(a.lists))
	}
	if a.auditor != nil {
		opts = append(opts, admin.WithAudit(a.auditor))
	}
	opts = append(opts, a.policyAdminOptions()...)
	h, err := admin.New(auth, opts...)
	if err != nil {
		return nil, err
	}
	srv := a.newServer(h)
	scheme := "http"
	if t := a.cfg.Admin.TLS; t.Enabled() {
		if srv.TLSConfig, err = adminTLSConfig(t); err != nil {
			return nil, err
		}
		scheme = "https"
	}
	ln, err := net.Listen("tcp", a.cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s (admin.listen): %w", a.cfg.Admin.Listen, err)
	}
	a.adminAddr = ln.Addr()
	if srv.TLSConfig != nil {
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	var routes []string
	for _, r := range h.Routes() {
		routes = append(routes, r.Pattern)
	}
	a.log.Info("admin API listening", "addr", scheme+"://"+a.adminAddr.String(), "routes", routes)
	return srv, nil
}

// start runs the app in the background until ctx ends and returns once it listens; done then yields Run's result.
// An error here means it never came up.
func (a *app) start(ctx context.Context) (done <-chan error, err error) {
	ch := make(chan error, 1)
	go func() { ch <- a.Run(ctx) }()
	select {
	case <-a.listening:
		return ch, nil
	case err := <-ch:
		return nil, err
	}
}

func (a *app) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /clair/{scanner}/notify", a.clairWebhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if loaded, err := a.lists.Status(); loaded.IsZero() {
			// Never read the allow/deny lists (shared state down since start): a deny must not be missed.
			http.Error(w, fmt.Sprintf("not ready: allow/deny lists not loaded yet: %v", err), http.StatusServiceUnavailable)
			return
		}
		// Degraded is still ready: a Redis outage costs shared work, not pulls, so the replica stays in service.
		var problems []string
		for _, h := range a.health {
			if err := h.Healthy(); err != nil {
				problems = append(problems, err.Error())
			}
		}
		if _, err := a.lists.Status(); err != nil {
			problems = append(problems, "allow/deny lists: serving the last ones read: "+err.Error())
		}
		if len(problems) > 0 {
			w.Header().Set("X-Portcullis-Degraded", "true")
			_, _ = io.WriteString(w, "ready (degraded: "+strings.Join(problems, "; ")+")\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux
}

// Close releases what build opened.
func (a *app) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func newLogger(c configs.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// tls12Transport is http.DefaultTransport refusing TLS before 1.2, for the clients main builds itself (scanners).
func tls12Transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return tr
}
