package proxy

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus collectors.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
	cache    *prometheus.CounterVec
	mismatch *prometheus.CounterVec
	// Upstream counts requests to upstreams by upstream, kind and status; hand Observe to the upstream clients.
	upstream *prometheus.CounterVec
	upLat    *prometheus.HistogramVec
	// breakerOpen is 1 while an upstream's circuit breaker is open; breakerOpens counts its openings.
	breakerOpen  *prometheus.GaugeVec
	breakerOpens *prometheus.CounterVec
	// spool is the bytes the open spool files reserve; spoolFull counts downloads the budget refused.
	spool     prometheus.Gauge
	spoolFull prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (nil: not registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_requests_total",
			Help: "Registry API requests by route, method and status code."}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "portcullis_request_duration_seconds",
			Help: "Registry API request latency by route (blob bodies included).", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10)}, []string{"route"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_bytes_served_total",
			Help: "Bytes served to clients by source: manifest, blob_cache, blob_upstream."}, []string{"source"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_cache_lookups_total",
			Help: "Cache lookups by kind (tag, manifest, blob) and result (hit, miss, stale)."}, []string{"kind", "result"}),
		mismatch: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_digest_mismatch_total",
			Help: "Upstream content that did not match its digest, by upstream. Never served, never stored."}, []string{"upstream"}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_upstream_requests_total",
			Help: "Requests to upstream registries by upstream, method, kind and status (0: no response)."}, []string{"upstream", "method", "kind", "code"}),
		upLat: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "portcullis_upstream_request_duration_seconds",
			Help: "Upstream request latency until response headers, by upstream and kind.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}, []string{"upstream", "kind"}),
		breakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "portcullis_upstream_circuit_open",
			Help: "1 while the upstream's circuit breaker is open (calls fail at once, one probe at a time), else 0."}, []string{"upstream"}),
		breakerOpens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_upstream_circuit_opens_total",
			Help: "Times the upstream's circuit breaker opened (upstreams[].circuitBreaker.failures failed requests in a row)."}, []string{"upstream"}),
		spool: prometheus.NewGauge(prometheus.GaugeOpts{Name: "portcullis_spool_bytes",
			Help: "Bytes reserved by in-flight blob downloads in the spool (their Content-Length, or what has arrived)."}),
		spoolFull: prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_spool_full_total",
			Help: "Blob downloads refused or aborted because the spool budget (content.spoolMaxSize) was reached."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.bytes, m.cache, m.mismatch, m.upstream, m.upLat, m.breakerOpen, m.breakerOpens,
			m.spool, m.spoolFull)
	}
	return m
}

// UpstreamObserver returns the hook an upstream client calls after each request it makes.
func (m *Metrics) UpstreamObserver(name string) func(method, kind string, status int, d time.Duration) {
	return func(method, kind string, status int, d time.Duration) {
		m.upstream.WithLabelValues(name, method, kind, strconv.Itoa(status)).Inc()
		m.upLat.WithLabelValues(name, kind).Observe(d.Seconds())
	}
}

// BreakerObserver returns the hook an upstream client calls when its circuit breaker opens or closes
// (upstream.WithBreakerObserver). It sets the upstream's gauge to 0 at once, so the series exists before any
// opening.
func (m *Metrics) BreakerObserver(name string) func(open bool) {
	m.breakerOpen.WithLabelValues(name).Set(0)
	m.breakerOpens.WithLabelValues(name)
	return func(open bool) {
		if open {
			m.breakerOpen.WithLabelValues(name).Set(1)
			m.breakerOpens.WithLabelValues(name).Inc()
			return
		}
		m.breakerOpen.WithLabelValues(name).Set(0)
	}
}

// Mismatches is the counter of upstream content that failed its digest check, for alerts and tests.
func (m *Metrics) Mismatches() prometheus.Collector { return m.mismatch }
