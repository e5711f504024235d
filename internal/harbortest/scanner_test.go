package harbortest

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
)

const credential = "Bearer scanner-token"

// gatedRegistry is go-containerregistry's in-memory registry behind a gate
// that refuses requests without the Authorization header want, and records
// what passes.
type gatedRegistry struct {
	url  string // the gated registry
	seed string // the same storage, ungated, for pushing test images

	mu      sync.Mutex
	allowed []string // "GET /v2/..." that passed the gate
	refused int
}

func newGatedRegistry(t *testing.T, want string) *gatedRegistry {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	g := &gatedRegistry{}
	gated := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		defer g.mu.Unlock()
		if r.Header.Get("Authorization") != want {
			g.refused++
			w.Header().Set("WWW-Authenticate", `Basic realm="portcullis"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		g.allowed = append(g.allowed, r.Method+" "+r.URL.Path)
		h.ServeHTTP(w, r)
	}))
	seed := httptest.NewServer(h)
	t.Cleanup(func() { gated.Close(); seed.Close() })
	g.url, g.seed = gated.URL, seed.URL
	return g
}

func (g *gatedRegistry) push(t *testing.T, repo string, img remote.Taggable) digest.Digest {
	t.Helper()
	ref, err := name.ParseReference(strings.TrimPrefix(g.seed, "http://")+"/"+repo+":latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	switch v := img.(type) {
	case v1.Image:
		err = remote.Write(ref, v)
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, v)
	}
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.(interface{ Digest() (v1.Hash, error) }).Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(d.String())
}

func (g *gatedRegistry) blobGETs() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, a := range g.allowed {
		if strings.HasPrefix(a, "GET ") && strings.Contains(a, "/blobs/") {
			n++
		}
	}
	return n
}

// api sends one request to the stand-in.
func api(t *testing.T, method, target string, header map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func scanBody(registryURL, auth, repo string, dgst digest.Digest) string {
	b, _ := json.Marshal(map[string]any{
		"registry": map[string]string{"url": registryURL, "authorization": auth},
		"artifact": map[string]string{"repository": repo, "digest": dgst.String(), "mime_type": "application/vnd.oci.image.manifest.v1+json"},
	})
	return string(b)
}

var scanHeaders = map[string]string{
	"Content-Type": "application/vnd.scanner.adapter.scan.request+json; version=1.0",
	"Accept":       "application/vnd.scanner.adapter.scan.response+json; version=1.0",
}

var reportHeaders = map[string]string{"Accept": "application/vnd.security.vulnerability.report; version=1.1"}

// submit posts a scan request and returns its id.
func submit(t *testing.T, s *Scanner, body string) string {
	t.Helper()
	resp, b := api(t, http.MethodPost, s.URL()+"/api/v1/scan", scanHeaders, body)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Content-Type") != "application/vnd.scanner.adapter.scan.response+json; version=1.0" {
		t.Fatalf("POST /scan = %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	var sr struct{ ID string }
	if err := json.Unmarshal(b, &sr); err != nil || sr.ID == "" {
		t.Fatalf("scan response %s: %v", b, err)
	}
	return sr.ID
}

// await polls the report until it is no longer 302.
func await(t *testing.T, s *Scanner, id string) (*http.Response, []byte) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, b := api(t, http.MethodGet, s.URL()+"/api/v1/scan/"+id+"/report", reportHeaders, "")
		if resp.StatusCode != http.StatusFound {
			return resp, b
		}
		if time.Now().After(deadline) {
			t.Fatal("report never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPullsWithTheGivenCredential(t *testing.T) {
	reg := newGatedRegistry(t, credential)
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	dgst := reg.push(t, "acme/app", img)
	vulns := []Vulnerability{{ID: "CVE-2024-0727", Package: "libssl3", Version: "3.1.4-r2", FixVersion: "3.1.4-r5", Severity: "Medium"}}
	s := New(t, func(repo string, d digest.Digest) []Vulnerability {
		if repo == "acme/app" && d == dgst {
			return vulns
		}
		return nil
	})

	tests := []struct {
		name       string
		auth       string
		wantStatus int
		wantPulled bool
	}{
		{"right credential", credential, http.StatusOK, true},
		{"wrong credential", "Bearer stolen", http.StatusInternalServerError, false},
		{"no credential", "", http.StatusInternalServerError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Pulls()
			id := submit(t, s, scanBody(reg.url, tt.auth, "acme/app", dgst))
			resp, b := await(t, s, id)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("report = %d %s, want %d", resp.StatusCode, b, tt.wantStatus)
			}
			reqs := s.Requests()
			got := reqs[len(reqs)-1]
			if got.ID != id || got.Authorization != tt.auth || got.RegistryURL != reg.url || got.Repository != "acme/app" || got.Digest != dgst || !got.Done || got.Pulled != tt.wantPulled {
				t.Errorf("request = %+v", got)
			}
			if tt.wantPulled {
				if s.Pulls() != before+1 || got.PullError != "" {
					t.Errorf("pulls %d -> %d, error %q", before, s.Pulls(), got.PullError)
				}
				if resp.Header.Get("Content-Type") != "application/vnd.security.vulnerability.report; version=1.1" {
					t.Errorf("Content-Type = %q", resp.Header.Get("Content-Type"))
				}
				var rep harborReport
				if err := json.Unmarshal(b, &rep); err != nil {
					t.Fatal(err)
				}
				if rep.Severity != "Medium" || rep.Artifact.Digest != dgst.String() || len(rep.Vulnerabilities) != 1 || rep.Vulnerabilities[0].ID != "CVE-2024-0727" {
					t.Errorf("report = %s", b)
				}
				return
			}
			if s.Pulls() != before || !strings.Contains(got.PullError, "401") && !strings.Contains(got.PullError, "UNAUTHORIZED") {
				t.Errorf("pulls %d -> %d, error %q", before, s.Pulls(), got.PullError)
			}
			if !strings.Contains(string(b), `"error":{"message":"running trivy wrapper: pulling acme/app@`) {
				t.Errorf("error body = %s", b)
			}
		})
	}
	// The successful pull fetched the config and both layers.
	if n := reg.blobGETs(); n != 3 {
		t.Errorf("%d blob GETs passed the gate, want 3", n)
	}
}

func TestPullsEveryChildOfAnIndex(t *testing.T) {
	reg := newGatedRegistry(t, credential)
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	dgst := reg.push(t, "acme/multi", idx)
	s := New(t, nil)
	resp, b := await(t, s, submit(t, s, scanBody(reg.url, credential, "acme/multi", dgst)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("report = %d %s", resp.StatusCode, b)
	}
	if n := reg.blobGETs(); n != 4 { // two images: config + one layer each
		t.Errorf("%d blob GETs, want 4", n)
	}
	if !strings.Contains(string(b), `"vulnerabilities":[]`) || !strings.Contains(string(b), `"severity":"Unknown"`) {
		t.Errorf("report = %s", b)
	}
}

func TestProtocol(t *testing.T) {
	reg := newGatedRegistry(t, credential)
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	dgst := reg.push(t, "acme/app", img)
	s := New(t, nil, WithDelay(time.Hour))
	pending := submit(t, s, scanBody(reg.url, credential, "acme/app", dgst))

	tests := []struct {
		name        string
		method      string
		path        string
		header      map[string]string
		body        string
		wantStatus  int
		wantType    string
		wantInBody  string
		wantHeaders map[string]string
	}{
		{
			name: "metadata", method: http.MethodGet, path: "/api/v1/metadata",
			header:     map[string]string{"Accept": "application/vnd.scanner.adapter.metadata+json; version=1.0"},
			wantStatus: 200, wantType: "application/vnd.scanner.adapter.metadata+json; version=1.0",
			wantInBody: `"consumes_mime_types":["application/vnd.oci.image.manifest.v1+json","application/vnd.docker.distribution.manifest.v2+json"]`,
		},
		{
			name: "scan with a wrong content type", method: http.MethodPost, path: "/api/v1/scan",
			header: map[string]string{"Content-Type": "application/json"}, body: scanBody(reg.url, "", "a", dgst),
			wantStatus: 415, wantType: "application/vnd.scanner.adapter.error+json; version=1.0", wantInBody: `{"error":{"message":"unsupported media type application/json"}}`,
		},
		{
			name: "scan request version 1.1 is accepted", method: http.MethodPost, path: "/api/v1/scan",
			header:     map[string]string{"Content-Type": "application/vnd.scanner.adapter.scan.request+json; version=1.1"},
			body:       scanBody(reg.url, credential, "acme/app", dgst),
			wantStatus: 202, wantType: "application/vnd.scanner.adapter.scan.response+json; version=1.0", wantInBody: `{"id":"`,
		},
		{
			name: "scan with bad json", method: http.MethodPost, path: "/api/v1/scan", header: scanHeaders, body: `{"registry":`,
			wantStatus: 400, wantInBody: `"message":"unmarshalling scan request: `,
		},
		{
			name: "scan without a digest", method: http.MethodPost, path: "/api/v1/scan", header: scanHeaders,
			body:       `{"registry":{"url":"http://r"},"artifact":{"repository":"a"}}`,
			wantStatus: 422, wantInBody: `{"error":{"message":"missing artifact.digest"}}`,
		},
		{
			name: "scan without a registry", method: http.MethodPost, path: "/api/v1/scan", header: scanHeaders,
			body:       `{"artifact":{"repository":"a","digest":"` + dgst.String() + `"}}`,
			wantStatus: 422, wantInBody: `{"error":{"message":"missing registry.url"}}`,
		},
		{
			name: "scan with a bad digest", method: http.MethodPost, path: "/api/v1/scan", header: scanHeaders,
			body:       `{"registry":{"url":"http://r"},"artifact":{"repository":"a","digest":"sha256:nope"}}`,
			wantStatus: 422, wantInBody: `invalid artifact.digest`,
		},
		{
			name: "report not ready", method: http.MethodGet, path: "/api/v1/scan/" + pending + "/report", header: reportHeaders,
			wantStatus:  302,
			wantHeaders: map[string]string{"Refresh-After": "3600", "Retry-After": "3600", "Location": "/api/v1/scan/" + pending + "/report"},
		},
		{
			name: "report for an unknown id", method: http.MethodGet, path: "/api/v1/scan/nope/report", header: reportHeaders,
			wantStatus: 404, wantType: "application/vnd.scanner.adapter.error+json; version=1.0", wantInBody: `{"error":{"message":"cannot find scan job: nope"}}`,
		},
		{
			name: "report with an unsupported accept", method: http.MethodGet, path: "/api/v1/scan/" + pending + "/report",
			header:     map[string]string{"Accept": "application/vnd.security.sbom.report+json; version=1.0"},
			wantStatus: 415, wantInBody: `unsupported media type application/vnd.security.sbom.report+json; version=1.0`,
		},
		{name: "wrong method", method: http.MethodGet, path: "/api/v1/scan", wantStatus: 405, wantHeaders: map[string]string{"Allow": "POST"}},
		{name: "unknown path", method: http.MethodGet, path: "/api/v2/metadata", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := api(t, tt.method, s.URL()+tt.path, tt.header, tt.body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d %s, want %d", resp.StatusCode, b, tt.wantStatus)
			}
			if tt.wantType != "" && resp.Header.Get("Content-Type") != tt.wantType {
				t.Errorf("Content-Type = %q, want %q", resp.Header.Get("Content-Type"), tt.wantType)
			}
			if !bytes.Contains(b, []byte(tt.wantInBody)) {
				t.Errorf("body = %s, want it to contain %s", b, tt.wantInBody)
			}
			for k, v := range tt.wantHeaders {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestAdapterAuthorization(t *testing.T) {
	s := New(t, nil, WithAuthorization("Bearer adapter"))
	resp, b := api(t, http.MethodGet, s.URL()+"/api/v1/metadata", nil, "")
	if resp.StatusCode != http.StatusUnauthorized || !bytes.Contains(b, []byte(`"message":"unauthorized"`)) {
		t.Errorf("without credential: %d %s", resp.StatusCode, b)
	}
	resp, _ = api(t, http.MethodGet, s.URL()+"/api/v1/metadata", map[string]string{"Authorization": "Bearer adapter"}, "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("with credential: %d", resp.StatusCode)
	}
}
