package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis/portcullis/cache/cachetest"
)

const (
	pcURL  = "https://10.96.0.50:5000"
	pcHost = "10.96.0.50:5000"
)

// writeFiles creates each name (relative to dir) with its content.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// enforcingHosts is nodeconfig's layout for every default registry and _default, as files.
func enforcingHosts(t *testing.T) map[string]string {
	t.Helper()
	u, err := parsePortcullisURL(pcURL)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, r := range append(append([]string{}, nodecheckDefaultRegistries...), "_default") {
		files[r+"/hosts.toml"] = nodeHostsTOML(r, u, false)
	}
	return files
}

// with returns base with the changes applied ("" deletes a file).
func with(base map[string]string, changes map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range changes {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// findingsByRegistry runs the check and keys the findings by registry.
func findingsByRegistry(fs []nodeFinding) map[string]nodeFinding {
	m := map[string]nodeFinding{}
	for _, f := range fs {
		m[f.Registry] = f
	}
	return m
}

func TestNodecheckContainerd(t *testing.T) {
	base := enforcingHosts(t)
	hostOnly := "[host.\"" + pcURL + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	tests := []struct {
		name  string
		files map[string]string
		// bypass lists the registries that must be flagged; every other one must not be.
		bypass []string
		reason string // in the first bypass finding's reason
	}{
		{name: "nodeconfig layout, every registry and _default", files: base},
		{name: "only _default covers everything", files: map[string]string{"_default/hosts.toml": base["_default/hosts.toml"]}},
		{
			name:   "containerd 1.6 cannot parse a file without [host]",
			files:  with(base, map[string]string{"ghcr.io/hosts.toml": "server = \"" + pcURL + "\"\ncapabilities = [\"pull\", \"resolve\"]\n"}),
			bypass: []string{"ghcr.io"}, reason: "containerd 1.6 cannot parse",
		},
		{
			name:   "server is the registry itself",
			files:  with(base, map[string]string{"docker.io/hosts.toml": "server = \"https://registry-1.docker.io\"\n\n" + hostOnly}),
			bypass: []string{"docker.io"}, reason: "server https://registry-1.docker.io is not Portcullis",
		},
		{
			name:   "push-only server is still tried",
			files:  with(base, map[string]string{"quay.io/hosts.toml": "server = \"https://quay.io\"\ncapabilities = [\"push\"]\n\n" + hostOnly}),
			bypass: []string{"quay.io"}, reason: "is not Portcullis",
		},
		{
			name:   "no server falls back to the registry",
			files:  with(base, map[string]string{"registry.k8s.io/hosts.toml": hostOnly}),
			bypass: []string{"registry.k8s.io"}, reason: "has no server",
		},
		{
			name:   "a second host that is not Portcullis",
			files:  with(base, map[string]string{"ghcr.io/hosts.toml": base["ghcr.io/hosts.toml"] + "\n[host.\"https://mirror.example.com\"]\n"}),
			bypass: []string{"ghcr.io"}, reason: "host https://mirror.example.com is not Portcullis",
		},
		{
			name:   "unknown capability fails the parse",
			files:  with(base, map[string]string{"ghcr.io/hosts.toml": strings.Replace(base["ghcr.io/hosts.toml"], `["pull", "resolve"]`, `["pull", "fetch"]`, 1)}),
			bypass: []string{"ghcr.io"}, reason: "unknown capability fetch",
		},
		{
			name:   "TOML syntax error",
			files:  with(base, map[string]string{"ghcr.io/hosts.toml": base["ghcr.io/hosts.toml"] + "\nserver = \n"}),
			bypass: []string{"ghcr.io"}, reason: "TOML",
		},
		{
			name:   "wrong type for ca",
			files:  with(base, map[string]string{"ghcr.io/hosts.toml": base["ghcr.io/hosts.toml"] + "  ca = 5\n"}),
			bypass: []string{"ghcr.io"}, reason: "invalid type",
		},
		{
			name:   "directory with certificates only",
			files:  with(base, map[string]string{"docker.io/hosts.toml": "", "docker.io/ca.crt": "x"}),
			bypass: []string{"docker.io"}, reason: "no hosts.toml",
		},
		{
			name:   "no _default: registries with no configuration",
			files:  with(base, map[string]string{"_default/hosts.toml": ""}),
			bypass: []string{anyOtherRegistry}, reason: "no ",
		},
		{
			name:   "nothing configured",
			files:  map[string]string{"README": "x"},
			bypass: append(append([]string{}, nodecheckDefaultRegistries...), anyOtherRegistry), reason: "containerd pulls from registry-1.docker.io itself",
		},
		{
			name:   "a private registry dir found on the node is checked, host_port_ spelling",
			files:  with(base, map[string]string{"registry.corp_5000_/hosts.toml": "server = \"https://registry.corp:5000\"\n"}),
			bypass: []string{"registry.corp:5000"}, reason: "containerd 1.6 cannot parse",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			pc := portcullisSet{}
			if err := pc.add(pcURL); err != nil {
				t.Fatal(err)
			}
			fs := checkContainerd(dir, nodecheckDefaultRegistries, pc)
			got := findingsByRegistry(fs)
			want := map[string]bool{}
			for _, r := range tc.bypass {
				want[r] = true
				f, ok := got[r]
				if !ok {
					t.Errorf("no finding for %s: %+v", r, fs)
					continue
				}
				if !f.Bypass {
					t.Errorf("%s not flagged: %s", r, f.Reason)
				}
			}
			for _, f := range fs {
				if f.Bypass && !want[f.Registry] {
					t.Errorf("%s flagged: %s", f.Registry, f.Reason)
				}
			}
			if len(tc.bypass) > 0 && !strings.Contains(got[tc.bypass[0]].Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", got[tc.bypass[0]].Reason, tc.reason)
			}
		})
	}
}

// TestNodecheckShippedSamples: the node samples in configs/ are judged as their comments say.
func TestNodecheckShippedSamples(t *testing.T) {
	dir := t.TempDir()
	b, _ := os.ReadFile("../../configs/containerd/hosts.toml")
	d, _ := os.ReadFile("../../configs/containerd/_default-hosts.toml")
	writeFiles(t, dir, map[string]string{"docker.io/hosts.toml": string(b), "_default/hosts.toml": string(d)})
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"containerd samples enforce", []string{"--containerd", dir}, 0, "node enforced"},
		{"docker sample cannot", []string{"--docker", "../../configs/docker/daemon.json"}, 1, "falls back to registry-1.docker.io"},
		{"crio samples enforce", []string{"--registries", "../../configs/crio/registries.conf", "--signature-policy", "../../configs/crio/policy.json"}, 0, "node enforced"},
		{"crio sample without its policy.json", []string{"--registries", "../../configs/crio/registries.conf"}, 1, "BYPASS cri-o *: registries.conf has no catch-all"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"nodecheck", "--portcullis", "http://127.0.0.1:5000"}, tc.args...), &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s%s", code, tc.code, tc.want, out.String(), errb.String())
			}
		})
	}
}

func TestNodecheckDocker(t *testing.T) {
	tests := []struct {
		name, daemonJSON, reason string
	}{
		{"mirror through Portcullis still falls back", `{"registry-mirrors": ["` + pcURL + `"]}`, "falls back to registry-1.docker.io when a mirror refuses"},
		{"no mirrors", `{"debug": true}`, "has no registry-mirrors"},
		{"another mirror", `{"registry-mirrors": ["https://mirror.gcr.io"]}`, "are not Portcullis"},
		{"broken file", `{"registry-mirrors": `, "dockerd cannot parse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"daemon.json": tc.daemonJSON})
			fs := checkDocker(filepath.Join(dir, "daemon.json"), nodecheckDefaultRegistries, portcullisSet{pcHost: true})
			got := findingsByRegistry(fs)
			if !strings.Contains(got["docker.io"].Reason, tc.reason) {
				t.Errorf("docker.io: %q lacks %q", got["docker.io"].Reason, tc.reason)
			}
			for _, f := range fs {
				if !f.Bypass {
					t.Errorf("%s not flagged: %s", f.Registry, f.Reason)
				}
			}
			if !strings.Contains(got["ghcr.io"].Reason, "no mirror setting") && tc.name != "broken file" {
				t.Errorf("ghcr.io: %q", got["ghcr.io"].Reason)
			}
		})
	}
}

func TestNodecheckCRIO(t *testing.T) {
	entry := func(prefix, location, extra string, mirrors ...string) string {
		s := "[[registry]]\nprefix = \"" + prefix + "\"\nlocation = \"" + location + "\"\n" + extra
		for _, m := range mirrors {
			s += "[[registry.mirror]]\nlocation = \"" + m + "\"\n"
		}
		return s + "\n"
	}
	enforcing := func(reg string) string { return entry(reg, reg, "blocked = true\n", pcHost+"/"+reg) }
	all := ""
	for _, r := range nodecheckDefaultRegistries {
		all += enforcing(r)
	}
	rejectPolicy := `{"default": [{"type": "reject"}], "transports": {"docker": {"docker.io": [{"type": "insecureAcceptAnything"}], "ghcr.io": [{"type": "insecureAcceptAnything"}]}}}`
	tests := []struct {
		name, conf, policy string
		bypass             []string
		reason             string
	}{
		{name: "blocked location, mirror through Portcullis", conf: all, policy: rejectPolicy},
		{name: "location is Portcullis", conf: strings.Replace(all, enforcing("quay.io"), entry("quay.io", pcHost+"/quay.io", ""), 1), policy: rejectPolicy},
		{name: "without a policy.json any other registry is open", conf: all, bypass: []string{anyOtherRegistry}, reason: "no catch-all"},
		{name: "policy default accepts", conf: all, policy: `{"default": [{"type": "insecureAcceptAnything"}]}`, bypass: []string{anyOtherRegistry}, reason: "default is not reject"},
		{
			name: "mirror without blocked", policy: rejectPolicy,
			conf:   strings.Replace(all, enforcing("ghcr.io"), entry("ghcr.io", "ghcr.io", "", pcHost+"/ghcr.io"), 1),
			bypass: []string{"ghcr.io"}, reason: "ghcr.io is not blocked",
		},
		{
			name: "blocked prefix, but the location is another name", policy: rejectPolicy,
			conf:   strings.Replace(all, enforcing("docker.io"), entry("docker.io", "registry-1.docker.io", "blocked = true\n", pcHost+"/docker.io"), 1),
			bypass: []string{"docker.io"}, reason: "pulls from registry-1.docker.io itself",
		},
		{
			name: "mirror is not Portcullis", policy: rejectPolicy,
			conf:   strings.Replace(all, enforcing("quay.io"), entry("quay.io", "quay.io", "blocked = true\n", "mirror.example.com/quay.io"), 1),
			bypass: []string{"quay.io"}, reason: "mirror mirror.example.com/quay.io of quay.io is not Portcullis",
		},
		{
			name: "registry without an entry", policy: rejectPolicy,
			conf:   strings.Replace(all, enforcing("registry.k8s.io"), "", 1),
			bypass: []string{"registry.k8s.io"}, reason: "has no [[registry]] for registry.k8s.io",
		},
		{
			name: "a registry the policy accepts must be configured too", policy: strings.Replace(rejectPolicy, `"ghcr.io"`, `"registry.corp"`, 1),
			conf: all, bypass: []string{"registry.corp"}, reason: "has no [[registry]] for registry.corp",
		},
		{name: "version 1 format", policy: rejectPolicy, conf: "[registries.search]\nregistries = ['docker.io']\n",
			bypass: append(append([]string{}, nodecheckDefaultRegistries...), "ghcr.io"), reason: "version 1 format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"registries.conf": tc.conf}
			policy := ""
			if tc.policy != "" {
				files["policy.json"] = tc.policy
				policy = filepath.Join(dir, "policy.json")
			}
			writeFiles(t, dir, files)
			fs := checkCRIO(filepath.Join(dir, "registries.conf"), policy, nodecheckDefaultRegistries, portcullisSet{pcHost: true})
			got := findingsByRegistry(fs)
			want := map[string]bool{}
			for _, r := range tc.bypass {
				want[r] = true
				if !got[r].Bypass {
					t.Errorf("%s not flagged: %+v", r, got[r])
				}
			}
			for _, f := range fs {
				if f.Bypass && !want[f.Registry] {
					t.Errorf("%s flagged: %s", f.Registry, f.Reason)
				}
			}
			if len(tc.bypass) > 0 && !strings.Contains(got[tc.bypass[0]].Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", got[tc.bypass[0]].Reason, tc.reason)
			}
		})
	}
}

func TestNodecheckUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no runtime", []string{"--portcullis", pcURL}, "at least one of"},
		{"no portcullis", []string{"--containerd", "/x"}, "--portcullis is required"},
		{"bad portcullis", []string{"--containerd", "/x", "--portcullis", "ftp://x"}, "want http(s)"},
		{"bad registry", []string{"--containerd", "/x", "--portcullis", pcURL, "--registry", "a/b"}, "want a registry host"},
		{"metrics without interval", []string{"--containerd", "/x", "--portcullis", pcURL, "--metrics-listen", ":0"}, "positive --interval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), append([]string{"nodecheck"}, tc.args...), &out, &errb); code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.want)
			}
		})
	}
}

// TestNodecheckReports: the DaemonSet's loop sets the metrics and posts a Warning Event on the Node when the node
// can be bypassed, then a Normal one once it is fixed, and no Event while nothing changes.
func TestNodecheckReports(t *testing.T) {
	type posted struct {
		Type, Reason, Message string
		Kind, Name            string
	}
	events := make(chan posted, 10)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v1/namespaces/default/events" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		var ev kubeEvent
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		events <- posted{ev.Type, ev.Reason, ev.Message, ev.InvolvedObject.Kind, ev.InvolvedObject.Name}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte("{}"))
	}))
	defer api.Close()
	kc, err := newKubeClient(api.URL, "tok", api.Client())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFiles(t, dir, with(enforcingHosts(t), map[string]string{"ghcr.io/hosts.toml": "server = \"" + pcURL + "\"\n"}))
	o := &nodecheckOptions{containerd: dir, pc: portcullisSet{pcHost: true}, interval: 20 * time.Millisecond, node: "node-a"}
	reg := prometheus.NewRegistry()
	m := newNodecheckMetrics(reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.run(ctx, m, kc, &cachetest.SyncBuilder{}, &cachetest.SyncBuilder{}) }()

	next := func() posted {
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return posted{}
	}
	e := next()
	if e.Type != "Warning" || e.Reason != "PullBypass" || e.Kind != "Node" || e.Name != "node-a" || !strings.Contains(e.Message, "containerd/ghcr.io") {
		t.Errorf("first event: %+v", e)
	}
	if v := testutil.ToFloat64(m.enforced); v != 0 {
		t.Errorf("portcullis_node_enforced = %v while bypassable", v)
	}
	if v := testutil.ToFloat64(m.bypass.WithLabelValues("containerd", "ghcr.io")); v != 1 {
		t.Errorf("bypass{ghcr.io} = %v", v)
	}
	writeFiles(t, dir, enforcingHosts(t)) // the DaemonSet's nodeconfig repairs the file
	e = next()
	if e.Type != "Normal" || e.Reason != "PullEnforced" {
		t.Errorf("second event: %+v", e)
	}
	time.Sleep(100 * time.Millisecond) // several more checks, no change
	select {
	case e := <-events:
		t.Errorf("event without a change: %+v", e)
	default:
	}
	if v := testutil.ToFloat64(m.enforced); v != 1 {
		t.Errorf("portcullis_node_enforced = %v once enforced", v)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
