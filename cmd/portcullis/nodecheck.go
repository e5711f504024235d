package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// nodecheckDefaultRegistries are checked on every node even when no file names them.
var nodecheckDefaultRegistries = []string{"docker.io", "ghcr.io", "quay.io", "registry.k8s.io"}

const nodecheckUsage = `Usage: portcullis nodecheck --portcullis URL [--containerd DIR] [--docker daemon.json] [--registries registries.conf] [--registry NAME]...

Reads a node's registry configuration and names every registry whose pulls can go around Portcullis: a
containerd host or server that is not Portcullis, a hosts.toml containerd 1.6 cannot parse (it then pulls
from the registry itself), Docker's registry-mirrors (dockerd falls back to Docker Hub), CRI-O mirrors whose
original location is not blocked, and registries with no configuration at all ("*": every other registry).
Exit status: 0 the node is enforced, 1 some pull can bypass Portcullis, 2 a usage error.
With --interval it keeps checking, serves portcullis_node_* metrics on --metrics-listen, and with --node posts
an Event on the Node each time the verdict changes.

`

type nodecheckOptions struct {
	containerd, docker, registries string
	signaturePolicy                string
	extra                          []string
	pc                             portcullisSet
	json                           bool
	interval                       time.Duration
	metricsListen                  string
	node                           string
}

func nodecheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("nodecheck", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, nodecheckUsage)
		fs.PrintDefaults()
	}
	o := nodecheckOptions{pc: portcullisSet{}}
	var portcullis, extra stringList
	fs.StringVar(&o.containerd, "containerd", "", "containerd's config_path (e.g. /etc/containerd/certs.d)")
	fs.StringVar(&o.docker, "docker", "", "dockerd's daemon.json (e.g. /etc/docker/daemon.json)")
	fs.StringVar(&o.registries, "registries", "", "CRI-O's containers-registries.conf (e.g. /etc/containers/registries.conf)")
	fs.StringVar(&o.signaturePolicy, "signature-policy", "", "with --registries, CRI-O's containers-policy.json: a default of reject covers registries that registries.conf does not name")
	fs.Var(&portcullis, "portcullis", "Portcullis' registry endpoint as nodes name it, URL or HOST[:PORT], repeatable (required)")
	fs.Var(&extra, "registry", "a registry that must go through Portcullis, repeatable (docker.io, ghcr.io, quay.io and registry.k8s.io always are)")
	fs.BoolVar(&o.json, "json", false, "print the findings as JSON lines")
	fs.DurationVar(&o.interval, "interval", 0, "check again this often and never exit (default: check once)")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "with --interval, serve /metrics (portcullis_node_*) here, e.g. :9102")
	fs.StringVar(&o.node, "node", "", "with --interval, the Node to post Events on when the verdict changes (needs the in-cluster API)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{msg: fmt.Sprintf("nodecheck takes no arguments, got %q", fs.Args())}
	}
	if o.containerd == "" && o.docker == "" && o.registries == "" {
		return usageError{msg: "nodecheck: name at least one of --containerd, --docker, --registries"}
	}
	if len(portcullis) == 0 {
		return usageError{msg: "nodecheck: --portcullis is required (how this node names Portcullis, e.g. https://10.96.0.50:5000)"}
	}
	for _, p := range portcullis {
		if err := o.pc.add(p); err != nil {
			return usageError{msg: "nodecheck: " + err.Error()}
		}
	}
	for _, r := range extra {
		if err := checkRegistryName(r); err != nil || r == "_default" {
			return usageError{msg: fmt.Sprintf("nodecheck: --registry %q: want a registry host", r)}
		}
	}
	o.extra = extra
	if o.interval < 0 || (o.interval == 0 && (o.metricsListen != "" || o.node != "")) {
		return usageError{msg: "nodecheck: --metrics-listen and --node need a positive --interval"}
	}
	if o.interval == 0 {
		if o.report(stdout) {
			return nil
		}
		return errDenied
	}
	return o.loop(ctx, stdout, stderr)
}

// check runs every configured runtime's check.
func (o *nodecheckOptions) check() []nodeFinding {
	regs := dedupe(append(append([]string{}, nodecheckDefaultRegistries...), o.extra...))
	var fs []nodeFinding
	if o.containerd != "" {
		fs = append(fs, checkContainerd(o.containerd, regs, o.pc)...)
	}
	if o.docker != "" {
		fs = append(fs, checkDocker(o.docker, regs, o.pc)...)
	}
	if o.registries != "" {
		fs = append(fs, checkCRIO(o.registries, o.signaturePolicy, regs, o.pc)...)
	}
	return fs
}

// report checks, prints the findings and a verdict line, and returns whether the node is enforced.
func (o *nodecheckOptions) report(w io.Writer) bool {
	fs := o.check()
	enforced, bypass := verdict(fs)
	if o.json {
		enc := json.NewEncoder(w)
		for _, f := range fs {
			_ = enc.Encode(f)
		}
	} else {
		for _, f := range fs {
			state := "ok    "
			if f.Bypass {
				state = "BYPASS"
			}
			fmt.Fprintf(w, "%s %s %s: %s\n", state, f.Runtime, f.Registry, f.Reason)
			for _, n := range f.Notes {
				fmt.Fprintf(w, "       note: %s\n", n)
			}
		}
	}
	if enforced {
		fmt.Fprintf(w, "node enforced: every pull of the %d registries checked goes through Portcullis\n", len(fs))
	} else {
		fmt.Fprintf(w, "node NOT enforced: %d of %d can be pulled around Portcullis: %s\n", len(bypass), len(fs), strings.Join(bypass, ", "))
	}
	return enforced
}

// verdict says whether no finding is a bypass, and names those that are (runtime/registry).
func verdict(fs []nodeFinding) (bool, []string) {
	var bypass []string
	for _, f := range fs {
		if f.Bypass {
			bypass = append(bypass, f.Runtime+"/"+f.Registry)
		}
	}
	return len(bypass) == 0, bypass
}

// nodecheckMetrics are what the DaemonSet exposes for Prometheus (alert on portcullis_node_enforced == 0).
type nodecheckMetrics struct {
	enforced prometheus.Gauge
	bypass   *prometheus.GaugeVec
	checks   prometheus.Counter
}

func newNodecheckMetrics(reg prometheus.Registerer) *nodecheckMetrics {
	m := &nodecheckMetrics{
		enforced: prometheus.NewGauge(prometheus.GaugeOpts{Name: "portcullis_node_enforced",
			Help: "1 when every checked registry on this node pulls only through Portcullis, else 0."}),
		bypass: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "portcullis_node_registry_bypass",
			Help: "1 for each runtime and registry whose pulls can go around Portcullis (registry \"*\" = any registry not configured)."},
			[]string{"runtime", "registry"}),
		checks: prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_node_checks_total",
			Help: "Node configuration checks run."}),
	}
	reg.MustRegister(m.enforced, m.bypass, m.checks)
	return m
}

func (m *nodecheckMetrics) set(fs []nodeFinding) {
	m.checks.Inc()
	enforced, _ := verdict(fs)
	if enforced {
		m.enforced.Set(1)
	} else {
		m.enforced.Set(0)
	}
	m.bypass.Reset()
	for _, f := range fs {
		v := 0.0
		if f.Bypass {
			v = 1
		}
		m.bypass.WithLabelValues(f.Runtime, f.Registry).Set(v)
	}
}

// loop checks every interval until ctx ends, keeping the metrics current and posting an Event on each change of
// verdict (the first check included).
func (o *nodecheckOptions) loop(ctx context.Context, stdout, stderr io.Writer) error {
	reg := prometheus.NewRegistry()
	m := newNodecheckMetrics(reg)
	if o.metricsListen != "" {
		ln, err := net.Listen("tcp", o.metricsListen)
		if err != nil {
			return fmt.Errorf("nodecheck: listen %s: %w", o.metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		fmt.Fprintf(stdout, "metrics on http://%s/metrics\n", ln.Addr())
	}
	var kc *kubeClient
	if o.node != "" {
		var err error
		if kc, err = inClusterKube(); err != nil {
			fmt.Fprintf(stderr, "portcullis: nodecheck: no Events for node %s: %v\n", o.node, err)
		}
	}
	return o.run(ctx, m, kc, stdout, stderr)
}

// run is loop's body, apart from where metrics and the API come from (tests give their own).
func (o *nodecheckOptions) run(ctx context.Context, m *nodecheckMetrics, kc *kubeClient, stdout, stderr io.Writer) error {
	last := ""
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for {
		fs := o.check()
		m.set(fs)
		enforced, bypass := verdict(fs)
		state := "enforced"
		if !enforced {
			state = "bypass:" + strings.Join(bypass, ",")
		}
		if state != last {
			o.printFindings(fs, stdout)
			if kc != nil {
				if err := o.postEvent(ctx, kc, fs); err != nil {
					fmt.Fprintf(stderr, "portcullis: nodecheck: event: %v\n", err)
				} else {
					last = state
				}
			} else {
				last = state
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (o *nodecheckOptions) printFindings(fs []nodeFinding, w io.Writer) {
	enforced, bypass := verdict(fs)
	if enforced {
		fmt.Fprintf(w, "%s node enforced\n", time.Now().UTC().Format(time.RFC3339))
		return
	}
	fmt.Fprintf(w, "%s node NOT enforced: %s\n", time.Now().UTC().Format(time.RFC3339), strings.Join(bypass, ", "))
	for _, f := range fs {
		if f.Bypass {
			fmt.Fprintf(w, "  %s %s: %s\n", f.Runtime, f.Registry, f.Reason)
		}
	}
}

// postEvent reports the verdict on the Node: Warning PullBypass with the first reasons, or Normal PullEnforced.
func (o *nodecheckOptions) postEvent(ctx context.Context, kc *kubeClient, fs []nodeFinding) error {
	enforced, bypass := verdict(fs)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if enforced {
		return kc.nodeEvent(ctx, o.node, "Normal", "PullEnforced",
			fmt.Sprintf("portcullis nodecheck: every pull of the %d registries checked goes through Portcullis", len(fs)), time.Now())
	}
	var reasons []string
	for _, f := range fs {
		if f.Bypass {
			reasons = append(reasons, f.Runtime+" "+f.Registry+": "+f.Reason)
		}
	}
	msg := fmt.Sprintf("portcullis nodecheck: %d registries can be pulled around Portcullis (%s): %s",
		len(bypass), strings.Join(bypass, ", "), strings.Join(reasons, "; "))
	if len(msg) > 1024 { // the API caps an Event message
		msg = msg[:1021] + "..."
	}
	return kc.nodeEvent(ctx, o.node, "Warning", "PullBypass", msg, time.Now())
}

// stringList collects a repeated string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	*s = append(*s, v)
	return nil
}
