package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/registrytest"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listen: 127.0.0.1:5000\nupstreams:\n  - name: docker.io\n    retires: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badPolicy := filepath.Join(dir, "bad-policy.yaml")
	if err := os.WriteFile(badPolicy, []byte("trust: {}\ndefault:\n  signedBy: {anyOf: [nobody]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noDefault := filepath.Join(dir, "no-default.yaml")
	if err := os.WriteFile(noDefault, []byte("rules:\n  - {name: apps, match: {repository: \"apps/**\"}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	regoPolicy := filepath.Join(dir, "rego-policy.yaml")
	if err := os.WriteFile(regoPolicy, []byte("default:\n  rego: |\n    package p\n\n    deny contains msg if {\n      input.scan.count.medium > 3\n      msg := \"x\"\n    }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpPolicy := filepath.Join(dir, "http-policy.yaml")
	if err := os.WriteFile(httpPolicy, []byte("default:\n  rego: |\n    package p\n\n    deny contains msg if {\n      r := http.send({\"method\": \"GET\", \"url\": \"http://x\"})\n      msg := r.body\n    }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"rego type error at the policy file's line", []string{"validate", "--policy", regoPolicy}, 1, "rego-policy.yaml:6: default.rego: rego_type_error: undefined ref: input.scan.count.medium"},
		{"rego http.send refused", []string{"validate", "--policy", httpPolicy}, 1, "http-policy.yaml:6: default.rego: rego_type_error: http.send is not available"},
		{"rego timeout from the config", []string{"validate", "--config", regoConfig(t, dir, "0s")}, 1, "admission.regoTimeout: must be a positive duration"},
		{"policy without default says what that means", []string{"validate", "--policy", noDefault}, 0, "no default: section, so images that no rule matches are denied"},
		{"quickstart", []string{"validate", "--config", "../../configs/quickstart.yaml"}, 0, "ok"},
		{"positional", []string{"validate", "../../configs/quickstart.yaml"}, 0, "ok"},
		{"flags only", []string{"validate", "--upstream", "127.0.0.1:6000=http://127.0.0.1:6000"}, 0, "default 127.0.0.1:6000"},
		{"unknown field names file and line", []string{"validate", "--config", bad}, 1, "bad.yaml:4"},
		{"bad upstream flag", []string{"validate", "--upstream", "nourl"}, 2, "NAME=URL"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"missing file", []string{"validate", "--config", filepath.Join(dir, "nope.yaml")}, 1, "nope.yaml"},
		{"policy with a line error", []string{"validate", "--policy", badPolicy}, 1, "bad-policy.yaml:3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runCLI(t, tc.args, tc.wantCode, tc.wantOut) })
	}
}

// TestServeLifecycle runs the wired binary graph against a real upstream: it serves a pull, exposes metrics and
// health, and on cancel goes unready, drains and stops.
func TestServeLifecycle(t *testing.T) {
	up := registrytest.New(t)
	img := up.PushRandomImage(t, "team/app:v1", 2, 2048)

	var logs cachetest.SyncBuilder
	a, done, cancel := startApp(t, up, &logs, func(cfg *configs.Config) {
		cfg.Shutdown.DrainDelay = configs.Duration(300 * time.Millisecond)
	})
	if !strings.Contains(logs.String(), "no policy configured: every image is served") {
		t.Errorf("start-up log does not say that every image is served:\n%s", logs.String())
	}
	ops := "http://" + a.opsAddr.String()
	if code, _ := httpGet(t, ops+"/readyz"); code != 200 {
		t.Errorf("readyz %d", code)
	}
	got, err := crane.Pull(a.addr.String()+"/team/app:v1", crane.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	gd, _ := got.Digest()
	wd, _ := img.Digest()
	if gd != wd {
		t.Fatalf("digest %s, want %s", gd, wd)
	}
	if _, err := got.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	code, metrics := httpGet(t, ops+"/metrics")
	for _, want := range []string{`portcullis_requests_total{code="200",method="GET",route="manifest"}`, "portcullis_upstream_requests_total", "portcullis_cache_lookups_total", "portcullis_bytes_served_total"} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	cancel()
	time.Sleep(100 * time.Millisecond) // inside the drain delay
	if code, _ := httpGet(t, ops+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("readyz during drain: %d, want 503", code)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop")
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestExamplePoliciesValidate keeps every policy in configs/policies passing `portcullis validate`.
func TestExamplePoliciesValidate(t *testing.T) {
	paths, _ := filepath.Glob("../../configs/policies/*.yaml")
	if len(paths) == 0 {
		t.Fatal("no example policies")
	}
	paths = append(paths, "../../configs/policies/rego/policy.yaml") // Rego modules: policy's own tests load no engine
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), []string{"validate", "--policy", p}, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), filepath.Base(p)+": ok") {
				t.Errorf("output: %s", out.String())
			}
		})
	}
}

// startApp wires and starts the app the way serve does, with free ports, in front of up; edit adjusts the
// config first. The app stops when the test ends or when cancel is called.
func startApp(t *testing.T, up *registrytest.Registry, logs io.Writer, edit func(*configs.Config)) (*app, <-chan error, context.CancelFunc) {
	t.Helper()
	var cf commonFlags
	cf.listen, cf.opsListen, cf.dataDir = "127.0.0.1:0", "127.0.0.1:0", t.TempDir()
	_ = cf.upstreams.Set(up.Host() + "=" + up.URL().String())
	cfg, err := cf.load()
	if err != nil {
		t.Fatal(err)
	}
	edit(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, err := build(ctx, cfg, newLogger(cfg.Log, logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	done, err := a.start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return a, done, cancel
}

// TestListenersLimitHeaders: every listener (registry, ops, admin) refuses a request whose headers are over
// maxHeaderBytes with 431, and serves one with ordinary headers.
func TestListenersLimitHeaders(t *testing.T) {
	up := registrytest.New(t)
	a, _, _ := startApp(t, up, io.Discard, func(cfg *configs.Config) {
		cfg.Admin.Listen, cfg.Admin.Token = "127.0.0.1:0", "s3cret"
	})
	for _, l := range []struct {
		name, addr, path string
		ok               int // the status of a request with small headers
	}{
		{"registry", a.addr.String(), "/v2/", http.StatusOK},
		{"ops", a.opsAddr.String(), "/healthz", http.StatusOK},
		{"admin", a.adminAddr.String(), "/admin/v1/vex", http.StatusUnauthorized},
	} {
		for _, tc := range []struct {
			name   string
			header int
			want   int
		}{
			{"small headers", 4 << 10, l.ok},
			{"oversized headers", 2 * maxHeaderBytes, http.StatusRequestHeaderFieldsTooLarge},
		} {
			t.Run(l.name+"/"+tc.name, func(t *testing.T) {
				if got := rawGet(t, l.addr, l.path, tc.header); got != tc.want {
					t.Errorf("status %d, want %d", got, tc.want)
				}
			})
		}
	}
}

// rawGet sends GET path to addr over a plain connection with an X-Padding header of n bytes and returns the
// response status.
func rawGet(t *testing.T, addr, path string, n int) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nX-Padding: " + strings.Repeat("a", n) + "\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// regoConfig writes a config whose admission.regoTimeout is timeout.
func regoConfig(t *testing.T, dir, timeout string) string {
	t.Helper()
	p := filepath.Join(dir, "rego-config.yaml")
	if err := os.WriteFile(p, []byte("admission:\n  regoTimeout: "+timeout+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicyTest runs `portcullis policy test` over the example's Rego tests, and over a test that fails, a test
// that calls a builtin the gate refuses, and a directory without tests.
func TestPolicyTest(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		d := filepath.Join(dir, strings.TrimSuffix(name, ".rego"))
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	failing := write("failing.rego", "package f\n\ndeny contains \"no\" if input.x\n\ntest_admits if count(deny) == 0 with input as {\"x\": true}\n")
	network := write("network.rego", "package n\n\ntest_fetch if http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1\"})\n")
	none := write("none.rego", "package z\n\ndeny contains \"no\" if input.x\n")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"example passes", []string{"policy", "test", "-v", "../../configs/policies/rego"}, 0, "PASS: 4/4"},
		{"run filter", []string{"policy", "test", "--run", "old_base", "../../configs/policies/rego"}, 0, "PASS: 1/1"},
		{"a failing test", []string{"policy", "test", failing}, 1, "data.f.test_admits: FAIL"},
		{"http.send refused", []string{"policy", "test", network}, 1, "http.send is not available"},
		{"no tests", []string{"policy", "test", none}, 1, "no tests"},
		{"no directory", []string{"policy", "test"}, 2, "needs a directory"},
		{"no verb", []string{"policy"}, 2, "portcullis policy test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runCLI(t, tc.args, tc.wantCode, tc.wantOut) })
	}
}

// runCLI runs the command line args and checks its exit code and that its output (stdout and stderr) holds each
// of want; it returns that output.
func runCLI(t *testing.T, args []string, wantCode int, want ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	all := out.String() + errb.String()
	if code != wantCode {
		t.Fatalf("exit %d, want %d:\n%s", code, wantCode, all)
	}
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("output lacks %q:\n%s", w, all)
		}
	}
	return all
}
