package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/containerdtest"
	"github.com/portcullis/portcullis/internal/cosigntest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

func nodeconfigRun(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"nodeconfig"}, args...), &out, &errb)
	return code, out.String() + errb.String()
}

func TestNodeconfigWriteAndRemove(t *testing.T) {
	dir := t.TempDir()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: httptest.NewTLSServer(http.NotFoundHandler()).Certificate().Raw})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// An administrator's own file for quay.io, and a directory nodeconfig is not asked about.
	writeFiles(t, dir, map[string]string{"quay.io/hosts.toml": "server = \"https://quay.io\"\n", "other.io/hosts.toml": "mine\n"})

	code, out := nodeconfigRun(t, "--dir", dir, "--portcullis", pcURL, "--ca", caFile, "docker.io", "quay.io", "registry.corp:5000", "_default")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	for _, r := range []string{"docker.io", "quay.io", "registry.corp:5000", "_default"} {
		b, err := os.ReadFile(filepath.Join(dir, r, "hosts.toml"))
		if err != nil {
			t.Fatal(err)
		}
		hosts, err := parseContainerdHosts(b)
		if err != nil {
			t.Fatalf("%s: containerd 1.6 cannot parse what nodeconfig wrote: %v\n%s", r, err, b)
		}
		for _, h := range hosts {
			if h.server != pcURL || len(h.ca) != 1 || h.ca[0] != nodeconfigCAFile || h.caps != capPull|capResolve {
				t.Errorf("%s: host %+v", r, h)
			}
		}
		if ca, _ := os.ReadFile(filepath.Join(dir, r, nodeconfigCAFile)); !bytes.Equal(ca, caPEM) {
			t.Errorf("%s: CA copy differs", r)
		}
	}
	if code, out := run2(t, "nodecheck", "--containerd", dir, "--portcullis", pcURL, "--registry", "registry.corp:5000"); code != 1 ||
		!strings.Contains(out, "BYPASS containerd other.io") || strings.Count(out, "BYPASS") != 1 {
		t.Errorf("nodecheck after nodeconfig: exit %d\n%s", code, out)
	}
	// A second run changes nothing and does not overwrite the backup with its own file.
	if code, out := nodeconfigRun(t, "--dir", dir, "--portcullis", pcURL, "--ca", caFile, "docker.io", "quay.io", "registry.corp:5000", "_default"); code != 0 || strings.Contains(out, "wrote") {
		t.Errorf("second run: exit %d: %s", code, out)
	}
	if code, out := nodeconfigRun(t, "--dir", dir, "--remove", "docker.io", "quay.io", "registry.corp:5000", "_default", "other.io"); code != 0 {
		t.Fatalf("remove: exit %d: %s", code, out)
	}
	for _, r := range []string{"docker.io", "registry.corp:5000", "_default"} {
		if _, err := os.Stat(filepath.Join(dir, r)); !os.IsNotExist(err) {
			t.Errorf("%s still there after remove: %v", r, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "quay.io", "hosts.toml")); string(b) != "server = \"https://quay.io\"\n" {
		t.Errorf("quay.io not restored: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "quay.io", "hosts.toml"+nodeconfigBackupSuffix)); !os.IsNotExist(err) {
		t.Errorf("backup left behind: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "other.io", "hosts.toml")); string(b) != "mine\n" {
		t.Errorf("a file nodeconfig did not write was touched: %q", b)
	}
}

func run2(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String() + errb.String()
}

func TestNodeconfigUsage(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	_ = os.WriteFile(notPEM, []byte("hello"), 0o600)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no dir", []string{"--portcullis", pcURL, "docker.io"}, "--dir is required"},
		{"no registry", []string{"--dir", "/x", "--portcullis", pcURL}, "at least one REGISTRY"},
		{"no url", []string{"--dir", "/x", "docker.io"}, "--portcullis is required"},
		{"url with a path", []string{"--dir", "/x", "--portcullis", pcURL + "/v2", "docker.io"}, "want http://HOST"},
		{"url with a quote", []string{"--dir", "/x", "--portcullis", "http://a\"b", "docker.io"}, "--portcullis"},
		{"registry escaping dir", []string{"--dir", "/x", "--portcullis", pcURL, "../etc"}, "want a host"},
		{"registry with a slash", []string{"--dir", "/x", "--portcullis", pcURL, "docker.io/library"}, "want a host"},
		{"registry twice", []string{"--dir", "/x", "--portcullis", pcURL, "ghcr.io", "ghcr.io"}, "named twice"},
		{"ca not PEM", []string{"--dir", "/x", "--portcullis", pcURL, "--ca", notPEM, "docker.io"}, "not a PEM file"},
		{"bad owner", []string{"--dir", "/x", "--portcullis", pcURL, "--owner", "x", "docker.io"}, "NAMESPACE/NAME"},
		{"bad retire", []string{"--retire", "x"}, "NAMESPACE/NAME"},
		{"retire with a registry", []string{"--retire", "ns/pc", "docker.io"}, "--retire takes no"},
		{"retire with dir", []string{"--retire", "ns/pc", "--dir", "/x"}, "--retire takes no"},
		{"retire timeout", []string{"--retire", "ns/pc", "--retire-timeout", "0s"}, "must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := nodeconfigRun(t, tc.args...)
			if code != 2 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d (want 2), output lacks %q: %s", code, tc.want, out)
			}
		})
	}
}

// TestNodeconfigRemovesOnlyWhenOwnerGone: at SIGTERM the files go only when the DaemonSet is deleted (uninstall);
// while it exists (rolling update) or when the API cannot answer, the node stays enforced.
func TestNodeconfigRemovesOnlyWhenOwnerGone(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantRemove bool
	}{
		{"daemonset exists", 200, `{"metadata": {"name": "pc"}}`, false},
		{"daemonset being deleted", 200, `{"metadata": {"name": "pc", "deletionTimestamp": "2026-01-01T00:00:00Z"}}`, true},
		{"daemonset gone", 404, `{"kind": "Status"}`, true},
		{"API refuses", 403, `{"kind": "Status"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/apis/apps/v1/namespaces/ns/daemonsets/pc" {
					http.NotFound(w, r)
					return
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer api.Close()
			kc, _ := newKubeClient(api.URL, "tok", api.Client())
			dir := t.TempDir()
			u, _ := parsePortcullisURL(pcURL)
			o := &nodeconfigOptions{dir: dir, portcullis: u, registries: []string{"docker.io", "_default"}, owner: "ns/pc", interval: time.Minute}
			if err := o.writeAll(&bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := o.removeIfOwnerGone(kc, &out, &out); err != nil {
				t.Fatal(err)
			}
			_, err := os.Stat(filepath.Join(dir, "docker.io", "hosts.toml"))
			if removed := os.IsNotExist(err); removed != tc.wantRemove {
				t.Errorf("removed = %v, want %v (%s)", removed, tc.wantRemove, out.String())
			}
		})
	}
}

// TestNodeconfigRetire: the chart's pre-delete hook deletes the DaemonSet in the foreground and waits until it is
// gone, so each pod's nodeconfig asks "is my DaemonSet gone?" while its permissions still exist and removes the
// node's files. The fake API keeps a foreground-deleted DaemonSet (being deleted) until its "pod" has finished.
func TestNodeconfigRetire(t *testing.T) {
	tests := []struct {
		name         string
		deleteStatus int  // the API's answer to DELETE
		podFinishes  bool // the pod's SIGTERM handler runs and returns
		wantErr      string
		wantRemoved  bool
	}{
		{name: "pods finish", deleteStatus: 200, podFinishes: true, wantRemoved: true},
		{name: "already gone", deleteStatus: 404},
		{name: "pods never finish", deleteStatus: 200, wantErr: "not gone after"},
		{name: "delete refused", deleteStatus: 403, wantErr: "403"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const dsPath = "/apis/apps/v1/namespaces/ns/daemonsets/pc-node"
			var deleting, gone atomic.Bool
			var propagation atomic.Value
			propagation.Store("")
			dir := t.TempDir()
			u, _ := parsePortcullisURL(pcURL)
			pod := &nodeconfigOptions{dir: dir, portcullis: u, registries: []string{"docker.io", "_default"}, owner: "ns/pc-node", interval: time.Minute}
			if err := pod.writeAll(&bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			podDone := make(chan struct{})
			var api *httptest.Server
			api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != dsPath {
					http.NotFound(w, r)
					return
				}
				switch {
				case r.Method == http.MethodDelete:
					var opts struct {
						PropagationPolicy string `json:"propagationPolicy"`
					}
					_ = json.NewDecoder(r.Body).Decode(&opts)
					propagation.Store(opts.PropagationPolicy)
					w.WriteHeader(tc.deleteStatus)
					if tc.deleteStatus != 200 {
						return
					}
					if opts.PropagationPolicy != "Foreground" {
						gone.Store(true) // background: the object goes at once (and helm deletes the RBAC next)
						close(podDone)
						return
					}
					deleting.Store(true)
					if tc.podFinishes {
						go func() { // the garbage collector stops the pod; its nodeconfig asks the API at SIGTERM
							defer close(podDone)
							kc, _ := newKubeClient(api.URL, "pod-token", api.Client())
							var out bytes.Buffer
							_ = pod.removeIfOwnerGone(kc, &out, &out)
							gone.Store(true)
						}()
					} else {
						close(podDone)
					}
				case gone.Load():
					http.NotFound(w, r)
				case deleting.Load():
					_, _ = w.Write([]byte(`{"metadata": {"name": "pc-node", "deletionTimestamp": "2026-01-01T00:00:00Z"}}`))
				default:
					_, _ = w.Write([]byte(`{"metadata": {"name": "pc-node"}}`))
				}
			}))
			defer api.Close()
			kc, _ := newKubeClient(api.URL, "hook-token", api.Client())
			timeout := time.Minute
			if tc.wantErr != "" {
				timeout = 300 * time.Millisecond
			}
			o := &nodeconfigOptions{retire: "ns/pc-node", retireTimeout: timeout}
			var out bytes.Buffer
			err := o.retireDaemonSet(context.Background(), kc, &out)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("retire: %v, want error %q\n%s", err, tc.wantErr, out.String())
			}
			if tc.deleteStatus == 200 {
				<-podDone
				if p := propagation.Load(); p != "Foreground" {
					t.Errorf("DELETE asked for propagation %q, want Foreground (the pods must finish before the RBAC goes)", p)
				}
			}
			_, statErr := os.Stat(filepath.Join(dir, "docker.io", "hosts.toml"))
			if removed := os.IsNotExist(statErr); removed != tc.wantRemoved {
				t.Errorf("node files removed = %v, want %v", removed, tc.wantRemoved)
			}
		})
	}
}

// upstreamCounter counts the requests containerd itself sends to the upstream registry: a node that pulls only
// through Portcullis sends none.
func upstreamCounter(n *atomic.Int64) registrytest.Option {
	return registrytest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.UserAgent(), "containerd/") {
				n.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	})
}

// startSignedApp starts Portcullis with a policy that admits images signed by a fresh key, in front of an upstream
// that counts containerd's direct requests, and returns a signing function.
func startSignedApp(t *testing.T, direct *atomic.Int64, edit func(*configs.Config)) (*app, *registrytest.Registry, func(repoTag string)) {
	t.Helper()
	up := registrytest.New(t, upstreamCounter(direct))
	bin := cosigntest.Binary(t)
	priv, pub := cosigntest.KeyPair(t)
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("trust:\n  release: {key: "+pub+"}\ndefault:\n  signedBy: {anyOf: [release]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _, _ := startApp(t, up, &cachetest.SyncBuilder{}, func(cfg *configs.Config) {
		cfg.Policy = pol
		cfg.Shutdown.DrainDelay = 0
		if edit != nil {
			edit(cfg)
		}
	})
	sign := func(repoTag string) {
		img := up.PushRandomImage(t, repoTag, 2, 2048)
		d, _ := img.Digest()
		repo, _, _ := strings.Cut(repoTag, ":")
		cosigntest.Sign(t, bin, up.Ref(repo+"@"+d.String()), priv)
	}
	return a, up, sign
}

// TestNodeconfigFilesPullThroughPortcullis: the files `portcullis nodeconfig` writes, for the registry's own
// directory and for _default, used by a real containerd: a signed image pulls through Portcullis; an unsigned one
// fails with the reason, and containerd never asks the registry itself. Over plain HTTP and over TLS with --ca.
func TestNodeconfigFilesPullThroughPortcullis(t *testing.T) {
	d := containerdtest.Start(t)
	var direct atomic.Int64
	certPath, keyPath, _ := selfSigned(t)
	plain, up, sign := startSignedApp(t, &direct, nil)
	sign("node/signed:v1")
	up.PushRandomImage(t, "node/unsigned:v1", 2, 2048)
	tlsApp, _, _ := startApp(t, up, &cachetest.SyncBuilder{}, func(cfg *configs.Config) {
		cfg.Policy, cfg.Shutdown.DrainDelay = plain.cfg.Policy, 0
		cfg.TLS.Cert, cfg.TLS.Key = certPath, keyPath
	})
	for _, tc := range []struct {
		name, registry, url string
		ca                  string
	}{
		{"registry directory, plain HTTP", up.Host(), "http://" + plain.addr.String(), ""},
		{"_default, plain HTTP", "_default", "http://" + plain.addr.String(), ""},
		{"registry directory, TLS with --ca", up.Host(), "https://" + tlsApp.addr.String(), certPath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts := t.TempDir()
			args := []string{"--dir", hosts, "--portcullis", tc.url}
			if tc.ca != "" {
				args = append(args, "--ca", tc.ca)
			}
			if code, out := nodeconfigRun(t, append(args, tc.registry)...); code != 0 {
				t.Fatalf("nodeconfig: exit %d: %s", code, out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			direct.Store(0)
			// --plain-http: were containerd to fall back to the registry itself, it could reach this test's
			// plain-HTTP upstream, so a fallback would show as a pull and as a direct request.
			if out, err := d.Ctr(ctx, "images", "pull", "--plain-http", "--hosts-dir", hosts, "--snapshotter", d.Snapshotter(), up.Ref("node/signed:v1")); err != nil {
				t.Fatalf("signed image: %v\n%s", err, out)
			}
			out, err := d.Ctr(ctx, "images", "pull", "--plain-http", "--hosts-dir", hosts, "--snapshotter", d.Snapshotter(), up.Ref("node/unsigned:v1"))
			if err == nil {
				t.Fatalf("unsigned image pulled:\n%s", out)
			}
			if !strings.Contains(out, "403 portcullis: ") || !strings.Contains(out, "not signed by release") {
				t.Errorf("ctr does not show the denial:\n%s", out)
			}
			if n := direct.Load(); n != 0 {
				t.Errorf("containerd sent %d requests to the registry itself", n)
			}
			_, _ = d.Ctr(ctx, "images", "rm", up.Ref("node/signed:v1"))
		})
	}
}

// TestContainerd16IgnoresHostsWithoutHostTable is why nodeconfig always writes a [host] table and why nodecheck
// flags a file without one: containerd 1.6 cannot parse it and pulls from the registry itself, so a denied image
// is fetched around Portcullis.
func TestContainerd16IgnoresHostsWithoutHostTable(t *testing.T) {
	d := containerdtest.Start(t)
	var direct atomic.Int64
	a, up, _ := startSignedApp(t, &direct, nil)
	up.PushRandomImage(t, "node/unsigned:v1", 1, 1024)
	hosts := t.TempDir()
	writeFiles(t, hosts, map[string]string{up.Host() + "/hosts.toml": "server = \"http://" + a.addr.String() + "\"\ncapabilities = [\"pull\", \"resolve\"]\n"})
	if code, out := run2(t, "nodecheck", "--containerd", hosts, "--portcullis", "http://"+a.addr.String(), "--registry", up.Host()); code != 1 ||
		!strings.Contains(out, "containerd 1.6 cannot parse") {
		t.Errorf("nodecheck: exit %d\n%s", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := d.Ctr(ctx, "images", "pull", "--plain-http", "--hosts-dir", hosts, "--snapshotter", d.Snapshotter(), up.Ref("node/unsigned:v1"))
	ctrVersion, _ := d.Ctr(ctx, "version")
	if !strings.Contains(ctrVersion, "1.6.") {
		t.Skipf("containerd is not 1.6:\n%s", ctrVersion)
	}
	if err != nil || direct.Load() == 0 {
		t.Errorf("containerd 1.6 did not fall back to the registry (err %v, %d direct requests): the finding nodecheck relies on changed\n%s", err, direct.Load(), out)
	}
}

// TestNodeconfigRewriteIsAtomic: containerd reads hosts.toml on every pull, so a reader racing the DaemonSet's
// rewrites must only ever see a whole file; half a file (or an empty one) would not parse, and containerd 1.6
// would then pull from the registry itself.
func TestNodeconfigRewriteIsAtomic(t *testing.T) {
	dir := t.TempDir()
	a, _ := parsePortcullisURL("https://10.96.0.50:5000")
	b, _ := parsePortcullisURL("https://10.96.0.51:5000")
	path := filepath.Join(dir, "docker.io", "hosts.toml")
	if _, err := writeHostsDir(dir, "docker.io", a, nil); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	bad := make(chan string, 1)
	var reads atomic.Int64
	go func() {
		for {
			select {
			case <-stop:
				close(bad)
				return
			default:
			}
			data, err := os.ReadFile(path)
			reads.Add(1)
			if err != nil {
				bad <- err.Error()
				close(bad)
				return
			}
			if _, err := parseContainerdHosts(data); err != nil {
				bad <- fmt.Sprintf("%v: %q", err, data)
				close(bad)
				return
			}
		}
	}()
	for i := 0; i < 400; i++ {
		u := a
		if i%2 == 1 {
			u = b
		}
		if _, err := writeHostsDir(dir, "docker.io", u, nil); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	if msg, ok := <-bad; ok {
		t.Fatalf("a reader saw a file containerd cannot use: %s", msg)
	}
	if reads.Load() < 100 {
		t.Logf("only %d reads raced the writes", reads.Load())
	}
}
