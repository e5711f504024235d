package admission

import "github.com/prometheus/client_golang/prometheus"

// Metrics are admission's Prometheus collectors.
type Metrics struct {
	// decisions counts admission decisions by rule, mode, outcome and how they were reached.
	decisions *prometheus.CounterVec
	// inflight and overloaded are the cold decisions running now and those refused for want of a slot.
	inflight   prometheus.Gauge
	overloaded prometheus.Counter
	// breakGlass counts pulls admitted by an allow-list entry, by entry.
	breakGlass *prometheus.CounterVec
	// pullLogDropped counts pull records not written to the pull log.
	pullLogDropped prometheus.Counter
	// policyReloads counts policy reloads by result; policyInfo is 1 for the hash of the policy in force.
	policyReloads *prometheus.CounterVec
	policyInfo    *prometheus.GaugeVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_admission_decisions_total",
			Help: "Admission decisions by rule, mode, outcome (allowed, warned, denied) and how (evaluated, cached, parent, artifact, referrer, list)."}, []string{"rule", "mode", "outcome", "how"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "portcullis_admission_decisions_in_flight",
			Help: "Cold admission decisions (evidence gathering, on-demand scans) running now; at most the configured cap."}),
		overloaded: prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_admission_overloaded_total",
			Help: "Admission decisions refused with 429 because every decision slot stayed busy for the queue wait."}),
		breakGlass: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_breakglass_pulls_total",
			Help: "Manifests served through an allow-list entry (the gates skipped), by entry id; alert on any."}, []string{"entry"}),
		pullLogDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_pull_log_dropped_total",
			Help: "Pull records not written to the pull log (journal slow or failing); policy previews and forgetting by repository miss those pulls."}),
		policyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_policy_reloads_total",
			Help: "Policy reloads (admin API, SIGHUP, another replica's notice) by result: changed, unchanged, or error (the running policy stays; alert on it)."}, []string{"result"}),
		policyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "portcullis_policy_info",
			Help: "1 for the hash (first 12 hex digits) of the policy in force; replicas that disagree run different policies."}, []string{"hash"}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.inflight, m.overloaded, m.breakGlass, m.pullLogDropped, m.policyReloads, m.policyInfo)
	}
	return m
}
