package containerdtest

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// WriteHostsDir writes DIR/<upstreamHost>/hosts.toml, which sends every pull and resolve for upstreamHost to
// mirrorURL (for example "http://127.0.0.1:5000", plain HTTP when the scheme is http) and never to the upstream
// itself, and returns DIR for Pull's hostsDir. DIR is a t.TempDir.
func WriteHostsDir(t testing.TB, upstreamHost string, mirrorURL string) string {
	t.Helper()
	return WriteHostsDirCA(t, upstreamHost, mirrorURL, "")
}

// WriteHostsDirCA is WriteHostsDir for an https mirror whose certificate chains to the PEM CA in caFile ("" for the
// system roots).
func WriteHostsDirCA(t testing.TB, upstreamHost, mirrorURL, caFile string) string {
	t.Helper()
	doc, err := hostsTOML(upstreamHost, mirrorURL, caFile)
	if err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	dir := t.TempDir()
	hostDir := filepath.Join(dir, upstreamHost)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(doc), 0o644); err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	return dir
}

// hostsTOML renders the hosts.toml of WriteHostsDir.
//
// The server is the mirror as well: containerd falls back to the server after a mirror answers with an error
// other than 404, and a push-only server does not stop that (a denied image was fetched from the registry
// itself in integration's TestContainerdSampleHostsFiles before this). Neither entry has push, which is what
// makes containerd treat them as mirrors and add ns=<upstreamHost> to every request.
// override_path stays false, so requests go to <mirrorURL>/v2/<repo>/...
func hostsTOML(upstreamHost, mirrorURL, caFile string) (string, error) {
	if upstreamHost == "" || strings.ContainsAny(upstreamHost, "/\\ \"") {
		return "", fmt.Errorf("invalid upstream host %q", upstreamHost)
	}
	u, err := url.Parse(mirrorURL)
	if err != nil {
		return "", fmt.Errorf("invalid mirror URL %q: %w", mirrorURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" ||
		strings.Contains(mirrorURL, "\"") {
		return "", fmt.Errorf("invalid mirror URL %q: want http(s)://host[:port][/path]", mirrorURL)
	}
	if strings.ContainsAny(caFile, "\"\n") {
		return "", fmt.Errorf("invalid CA file name %q", caFile)
	}
	mirror := strings.TrimSuffix(mirrorURL, "/")
	ca, hostCA := "", ""
	if caFile != "" {
		ca, hostCA = fmt.Sprintf("ca = %q\n", caFile), fmt.Sprintf("  ca = %q\n", caFile)
	}
	// server is the mirror too: containerd falls back to server after any mirror error (a 403 included), and
	// a push-only server does not stop that, so a denial must not be able to reach the registry itself.
	return fmt.Sprintf(`# Written by containerdtest: pull %[1]s only through the mirror.
server = %[2]q
capabilities = ["pull", "resolve"]
%[3]s
[host.%[2]q]
  capabilities = ["pull", "resolve"]
%[4]s`, upstreamHost, mirror, ca, hostCA), nil
}
