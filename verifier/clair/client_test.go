package clair_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/clairtest"
	"github.com/portcullis/portcullis/internal/registrytest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier/clair"
)

// TestScan indexes real images of an in-process registry with the Clair stand-in and checks the report's
// findings, and what fails: a layer Clair cannot fetch, an index, bad arguments.
func TestScan(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	img := reg.PushRandomImage(t, "team/app:v1", 2, 512)
	h, _ := img.Digest()
	d := digest.Digest(h.String())
	idx := reg.PushRandomIndex(t, "team/multi:v1", v1.Platform{OS: "linux", Architecture: "amd64"})
	ih, _ := idx.Digest()

	srv := clairtest.New(t, func(digest.Digest) []clairtest.Vulnerability {
		return []clairtest.Vulnerability{
			{Name: "CVE-1", Package: "openssl", Version: "3.0.1", FixedIn: "3.0.2", Severity: "Critical"},
			{Name: "CVE-2", Package: "openssl", Version: "3.0.1", Severity: "Negligible"},
			{Name: "CVE-3", Package: "bash", Version: "5.1", Severity: "Whatever"},
		}
	})
	c, err := clair.New(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	regURL := reg.URL().String()

	rep, err := c.Scan(context.Background(), regURL, "", "team/app", d, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Finding{
		{ID: "CVE-1", Severity: policy.SeverityCritical, Package: "openssl", InstalledVersion: "3.0.1", FixedVersion: "3.0.2"},
		{ID: "CVE-2", Severity: policy.SeverityLow, Package: "openssl", InstalledVersion: "3.0.1"},
		{ID: "CVE-3", Severity: policy.SeverityUnknown, Package: "bash", InstalledVersion: "5.1"},
	}
	if diff := cmp.Diff(want, rep.Findings); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	if rep.Source != policy.SourceScanner || rep.Scanner != "Clair" || rep.ScanTime.IsZero() {
		t.Errorf("report %+v: want source scanner, scanner Clair, a scan time", rep)
	}
	if n := len(srv.Pulls()); n != 2 || !srv.Indexed(d) {
		t.Errorf("Clair fetched %d layers (want 2), indexed %v", n, srv.Indexed(d))
	}

	tests := []struct {
		name, registry, repo string
		dgst                 digest.Digest
		want                 string
	}{
		{name: "manifest not in the repository", registry: regURL, repo: "team/other", dgst: d, want: "manifest"},
		{name: "index", registry: regURL, repo: "team/multi", dgst: digest.Digest(ih.String()), want: "is an index"},
		{name: "bad registry URL", registry: "ftp://x", repo: "team/app", dgst: d, want: "registry URL"},
		{name: "bad digest", registry: regURL, repo: "team/app", dgst: "sha256:nope", want: "digest"},
		{name: "no repository", registry: regURL, dgst: d, want: "repository"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := tt.repo
			_, err := c.Scan(context.Background(), tt.registry, "", repo, tt.dgst, "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Scan = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestIndexError checks that a layer Clair cannot fetch (the registry refuses it) fails the scan with Clair's
// reason, rather than yielding an empty report.
func TestIndexError(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") && r.Header.Get("Authorization") != "Bearer ok" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}))
	img := reg.PushRandomImage(t, "team/app:v1", 1, 512)
	h, _ := img.Digest()
	srv := clairtest.New(t, nil)
	c, _ := clair.New(srv.URL())
	_, err := c.Scan(context.Background(), reg.URL().String(), "Bearer wrong", "team/app", digest.Digest(h.String()), "")
	if err == nil || !strings.Contains(err.Error(), "failed") || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Scan = %v, want the index error naming the refused fetch", err)
	}
	if _, err := c.Scan(context.Background(), reg.URL().String(), "Bearer ok", "team/app", digest.Digest(h.String()), ""); err != nil {
		t.Fatalf("with the credential: %v", err)
	}
}

// TestNotificationHandler checks the webhook: a notification's manifests get a fresh report stored and the
// notification is deleted; the callback URL in the body is never followed; bad requests are refused.
func TestNotificationHandler(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t)
	img := reg.PushRandomImage(t, "team/app:v1", 1, 512)
	h, _ := img.Digest()
	d := digest.Digest(h.String())
	srv := clairtest.New(t, nil)
	c, _ := clair.New(srv.URL())
	if _, err := c.Scan(context.Background(), reg.URL().String(), "", "team/app", d, ""); err != nil {
		t.Fatal(err)
	}
	stored := map[digest.Digest]*policy.ScanReport{}
	hook := httptest.NewServer(c.NotificationHandler(func(_ context.Context, d digest.Digest, r *policy.ScanReport) error {
		stored[d] = r
		return nil
	}, nil))
	defer hook.Close()
	decoy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the webhook's callback URL was followed: %s", r.URL)
	}))
	defer decoy.Close()

	id := srv.Add(d, clairtest.Vulnerability{Name: "CVE-9", Package: "zlib", Version: "1", FixedIn: "2", Severity: "High"})
	body := `{"notification_id":"` + id + `","callback":"` + decoy.URL + `/notifier/api/v1/notification/` + id + `"}`
	resp, err := http.Post(hook.URL, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("webhook = %d, want 204", resp.StatusCode)
	}
	if r := stored[d]; r == nil || len(r.Findings) != 1 || r.Findings[0].ID != "CVE-9" {
		t.Errorf("stored report = %+v, want one with CVE-9", r)
	}
	if !srv.Deleted(id) {
		t.Errorf("notification not deleted")
	}

	bad := []struct {
		name, method, body string
		status             int
	}{
		{"GET", http.MethodGet, "", http.StatusMethodNotAllowed},
		{"not JSON", http.MethodPost, "{", http.StatusBadRequest},
		{"bad id", http.MethodPost, `{"notification_id":"../x","callback":"http://x"}`, http.StatusBadRequest},
		{"unknown id", http.MethodPost, `{"notification_id":"nope","callback":"http://x"}`, http.StatusBadGateway},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, hook.URL, strings.NewReader(tt.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}
