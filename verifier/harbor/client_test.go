package harbor

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/harbortest"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier/report"
)

const pullCredential = "Basic c2Nhbm5lcjpzM2NyZXQ=" // scanner:s3cret

// registryWithImage starts go-containerregistry's registry behind a gate that
// wants pullCredential and pushes one random image to repo; it returns the
// gated registry's URL and the image digest.
func registryWithImage(t *testing.T, repo string) (string, digest.Digest) {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	gated := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != pullCredential {
			w.Header().Set("WWW-Authenticate", `Basic realm="portcullis"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	seed := httptest.NewServer(h)
	t.Cleanup(func() { gated.Close(); seed.Close() })

	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(seed.URL, "http://")+"/"+repo+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return gated.URL, digest.Digest(d.String())
}

// exchange is one request the client made and the status it got.
type exchange struct {
	Method, Path, Accept string
	Status               int
}

// recorder is a RoundTripper that records exchanges.
type recorder struct {
	mu  sync.Mutex
	log []exchange
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.log = append(r.log, exchange{req.Method, req.URL.Path, req.Header.Get("Accept"), resp.StatusCode})
	r.mu.Unlock()
	return resp, nil
}

func (r *recorder) exchanges() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]exchange(nil), r.log...)
}

var dbTime = time.Date(2026, 4, 27, 12, 0, 0, 0, time.UTC)

func TestMetadata(t *testing.T) {
	s := harbortest.New(t, nil, harbortest.WithDBUpdatedAt(dbTime))
	c, err := New(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	md, err := c.Metadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Scanner{Name: "Trivy", Vendor: "Aqua Security", Version: "harbortest"}, md.Scanner); diff != "" {
		t.Errorf("scanner (-want +got):\n%s", diff)
	}
	if !md.DBUpdatedAt().Equal(dbTime) {
		t.Errorf("DBUpdatedAt = %v, want %v", md.DBUpdatedAt(), dbTime)
	}
	for mt, want := range map[string]bool{
		"application/vnd.oci.image.manifest.v1+json":                true,
		"application/vnd.docker.distribution.manifest.v2+json":      true,
		"application/vnd.oci.image.index.v1+json":                   false,
		"application/vnd.docker.distribution.manifest.list.v2+json": false,
	} {
		if got := md.CanScan(mt); got != want {
			t.Errorf("CanScan(%s) = %v, want %v", mt, got, want)
		}
	}
}

func TestScan(t *testing.T) {
	regURL, dgst := registryWithImage(t, "library/alpine")
	s := harbortest.New(t, func(repo string, d digest.Digest) []harbortest.Vulnerability {
		return []harbortest.Vulnerability{
			{ID: "CVE-2024-0727", Package: "libssl3", Version: "3.1.4-r2", FixVersion: "3.1.4-r5", Severity: "Medium"},
			{ID: "CVE-2024-58251", Package: "busybox", Version: "1.36.1-r15", Severity: "Negligible"},
		}
	}, harbortest.WithDelay(200*time.Millisecond), harbortest.WithDBUpdatedAt(dbTime))
	rec := &recorder{}
	c, err := New(s.URL()+"/", WithHTTPClient(&http.Client{Transport: rec}), WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := c.Scan(context.Background(), regURL, pullCredential, "library/alpine", dgst, "application/vnd.oci.image.manifest.v1+json")
	if err != nil {
		t.Fatal(err)
	}
	if got.ScanTime.Before(start) || time.Since(got.ScanTime) > time.Minute {
		t.Errorf("ScanTime = %v, want about now", got.ScanTime)
	}
	want := &policy.ScanReport{
		Source: policy.SourceScanner, Scanner: "Trivy", ScannerVersion: "harbortest",
		DBTime: dbTime, ScanTime: got.ScanTime,
		Findings: []policy.Finding{
			{ID: "CVE-2024-0727", Severity: policy.SeverityMedium, Package: "libssl3", InstalledVersion: "3.1.4-r2", FixedVersion: "3.1.4-r5"},
			{ID: "CVE-2024-58251", Severity: policy.SeverityLow, Package: "busybox", InstalledVersion: "1.36.1-r15"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}

	// One scan request, pulled through the registry with the credential given.
	reqs := s.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d scan requests, want 1", len(reqs))
	}
	r := reqs[0]
	wantReq := harbortest.Request{
		ID: r.ID, ContentType: MIMEScanRequest,
		RegistryURL: regURL, Authorization: pullCredential,
		Repository: "library/alpine", Digest: dgst, MIMEType: "application/vnd.oci.image.manifest.v1+json",
		Done: true, Pulled: true,
	}
	if diff := cmp.Diff(wantReq, r); diff != "" {
		t.Errorf("scan request (-want +got):\n%s", diff)
	}

	// 202, then 302 while the delay runs (the stand-in asks for 1s), then 200,
	// then the metadata for the database time.
	reportPath := "/api/v1/scan/" + r.ID + "/report"
	wantLog := []exchange{
		{http.MethodPost, "/api/v1/scan", MIMEScanResponse, http.StatusAccepted},
		{http.MethodGet, reportPath, MIMEReport, http.StatusFound},
		{http.MethodGet, reportPath, MIMEReport, http.StatusOK},
		{http.MethodGet, "/api/v1/metadata", MIMEMetadata, http.StatusOK},
	}
	if diff := cmp.Diff(wantLog, rec.exchanges()); diff != "" {
		t.Errorf("exchanges (-want +got):\n%s", diff)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Errorf("Scan took %v: the 302's Refresh-After: 1 was not honoured", d)
	}
}

func TestScanPullRefused(t *testing.T) {
	regURL, dgst := registryWithImage(t, "acme/app")
	s := harbortest.New(t, nil)
	c, err := New(s.URL(), WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Scan(context.Background(), regURL, "Bearer wrong", "acme/app", dgst, "")
	var apiErr *APIError
	if !errors.Is(err, ErrScanFailed) || !errors.As(err, &apiErr) || apiErr.Op != "report" || !strings.Contains(apiErr.Message, "UNAUTHORIZED") {
		t.Fatalf("err = %v, want ErrScanFailed naming the refusal", err)
	}
	if s.Pulls() != 0 {
		t.Errorf("Pulls = %d, want 0", s.Pulls())
	}
}

func TestAdapterAuthorization(t *testing.T) {
	s := harbortest.New(t, nil, harbortest.WithAuthorization("Bearer adapter-token"))
	tests := []struct {
		name string
		opts []Option
		want int
	}{
		{"without", nil, http.StatusUnauthorized},
		{"with", []Option{WithAuthorization("Bearer adapter-token")}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(s.URL(), tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Metadata(context.Background())
			var apiErr *APIError
			switch {
			case tt.want == http.StatusOK && err != nil:
				t.Fatal(err)
			case tt.want != http.StatusOK && (!errors.As(err, &apiErr) || apiErr.StatusCode != tt.want || apiErr.Message != "unauthorized"):
				t.Fatalf("err = %v, want %d unauthorized", err, tt.want)
			}
		})
	}
}

// fakeAdapter answers POST /api/v1/scan with scan and every report request
// with rep.
func fakeAdapter(t *testing.T, scan, rep http.HandlerFunc) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/scan", scan)
	mux.HandleFunc("GET /api/v1/scan/{id}/report", rep)
	mux.HandleFunc("GET /api/v1/metadata", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func answer(status int, contentType, body string, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

const errType = "application/vnd.scanner.adapter.error+json; version=1.0"

func TestScanErrors(t *testing.T) {
	accepted := answer(http.StatusAccepted, MIMEScanResponse, `{"id":"3fa85f64-5717-4562-b3fc-2c963f66afa6"}`)
	okReport := answer(http.StatusOK, MIMEReport, `{"generated_at":"2026-01-01T00:00:00Z","scanner":{"name":"Clair"},"vulnerabilities":[]}`)
	tests := []struct {
		name      string
		scan, rep http.HandlerFunc
		timeout   time.Duration
		wantIs    error
		wantAPI   *APIError
		wantMsg   string
	}{
		{
			name: "adapter 500 on submit", scan: answer(500, errType, `{"error":{"message":"enqueuing scan job: redis down"}}`), rep: okReport,
			wantAPI: &APIError{Op: "scan", StatusCode: 500, Message: "enqueuing scan job: redis down"},
		},
		{
			name: "422 invalid field", scan: answer(422, errType, `{"error":{"message":"invalid registry.url"}}`), rep: okReport,
			wantAPI: &APIError{Op: "scan", StatusCode: 422, Message: "invalid registry.url"},
		},
		{
			name: "501 not capable", scan: answer(501, errType, `{"error":{"message":"no capability"}}`), rep: okReport,
			wantIs: ErrNotCapable,
		},
		{
			name: "400 with a plain body", scan: answer(400, "text/plain", "bad request\n"), rep: okReport,
			wantAPI: &APIError{Op: "scan", StatusCode: 400, Message: "bad request"},
		},
		{name: "202 without an id", scan: answer(202, MIMEScanResponse, `{}`), rep: okReport, wantMsg: "not usable"},
		{name: "202 with .. as id", scan: answer(202, MIMEScanResponse, `{"id":".."}`), rep: okReport, wantMsg: "not usable"},
		{
			name: "unknown scan id", scan: accepted, rep: answer(404, errType, `{"error":{"message":"cannot find scan job"}}`),
			wantIs: ErrUnknownScan,
		},
		{
			name: "scan failed", scan: accepted, rep: answer(500, errType, `{"error":{"message":"running trivy wrapper: exit status 1"}}`),
			wantIs: ErrScanFailed, wantMsg: "exit status 1",
		},
		{name: "report not a report", scan: accepted, rep: answer(200, MIMEReport, `{"hello":1}`), wantIs: report.ErrUnsupported},
		{name: "report not json", scan: accepted, rep: answer(200, MIMEReport, `<html>`), wantIs: report.ErrMalformed},
		{
			name: "never ready", scan: accepted, rep: answer(302, "", "", "Location", "/elsewhere"),
			timeout: 300 * time.Millisecond, wantIs: context.DeadlineExceeded,
		},
		{name: "success despite metadata down", scan: accepted, rep: okReport},
	}
	regURL, dgst := "http://127.0.0.1:5000", digest.FromString("x")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(fakeAdapter(t, tt.scan, tt.rep), WithPollInterval(10*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}
			rep, err := c.Scan(ctx, regURL, pullCredential, "acme/app", dgst, "")
			if tt.wantIs == nil && tt.wantAPI == nil && tt.wantMsg == "" {
				if err != nil || rep.Scanner != "Clair" || !rep.DBTime.IsZero() {
					t.Fatalf("Scan = %+v, %v", rep, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Scan = %+v, want an error", rep)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err = %v, want %v", err, tt.wantIs)
			}
			if tt.wantAPI != nil {
				var got *APIError
				if !errors.As(err, &got) {
					t.Fatalf("err = %v, want an *APIError", err)
				}
				if diff := cmp.Diff(tt.wantAPI, got); diff != "" {
					t.Errorf("APIError (-want +got):\n%s", diff)
				}
				if errors.Is(err, ErrScanFailed) {
					t.Errorf("a submit failure %v is not ErrScanFailed", err)
				}
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %v, want it to mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestScanArguments(t *testing.T) {
	c, err := New("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	good := digest.FromString("x")
	tests := []struct {
		name, registry, auth, repo string
		dgst                       digest.Digest
	}{
		{"registry with a path", "http://portcullis:5000/v2", "", "a", good},
		{"registry without scheme", "portcullis:5000", "", "a", good},
		{"registry with credentials", "http://u:p@portcullis", "", "a", good},
		{"empty repository", "http://portcullis", "", "", good},
		{"bad digest", "http://portcullis", "", "a", "sha256:xyz"},
		{"header injection", "http://portcullis", "Bearer a\r\nX-Evil: 1", "a", good},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Scan(context.Background(), tt.registry, tt.auth, tt.repo, tt.dgst, ""); err == nil {
				t.Fatal("Scan succeeded")
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		base, want string
		opts       []Option
		wantErr    bool
	}{
		{base: "http://scanner:8080", want: "http://scanner:8080/api/v1/metadata"},
		{base: "https://scanner/", want: "https://scanner/api/v1/metadata"},
		{base: "http://gw/trivy/api/v1/", want: "http://gw/trivy/api/v1/metadata"},
		{base: "http://gw/trivy", want: "http://gw/trivy/api/v1/metadata"},
		{base: "scanner:8080", wantErr: true},
		{base: "ftp://scanner", wantErr: true},
		{base: "http://scanner?x=1", wantErr: true},
		{base: "http://u:p@scanner", wantErr: true},
		{base: "http://scanner", opts: []Option{WithPollInterval(0)}, wantErr: true},
		{base: "http://scanner", opts: []Option{WithHTTPClient(nil)}, wantErr: true},
		{base: "http://scanner", opts: []Option{WithAuthorization("Bearer x\nY: z")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.base, func(t *testing.T) {
			c, err := New(tt.base, tt.opts...)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && c.endpoint("metadata") != tt.want {
				t.Errorf("metadata URL = %s, want %s", c.endpoint("metadata"), tt.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	c := &Client{poll: 250 * time.Millisecond}
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"none", http.Header{}, 250 * time.Millisecond},
		{"refresh-after", http.Header{"Refresh-After": {"3"}}, 3 * time.Second},
		{"refresh-after wins", http.Header{"Refresh-After": {"2"}, "Retry-After": {"9"}}, 2 * time.Second},
		{"retry-after seconds", http.Header{"Retry-After": {"4"}}, 4 * time.Second},
		{"zero means the poll interval", http.Header{"Refresh-After": {"0"}}, 250 * time.Millisecond},
		{"junk", http.Header{"Retry-After": {"soon"}}, 250 * time.Millisecond},
		{"capped", http.Header{"Refresh-After": {"86400"}}, time.Minute},
		{"http date in the past", http.Header{"Retry-After": {"Mon, 02 Jan 2006 15:04:05 GMT"}}, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.retryAfter(tt.header); got != tt.want {
				t.Errorf("retryAfter = %v, want %v", got, tt.want)
			}
		})
	}
}
