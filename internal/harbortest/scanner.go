package harbortest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Media types of the Pluggable Scanner API.
const (
	mimeMetadata     = "application/vnd.scanner.adapter.metadata+json; version=1.0"
	mimeScanRequest  = "application/vnd.scanner.adapter.scan.request+json"
	mimeScanResponse = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
	mimeReport       = "application/vnd.security.vulnerability.report; version=1.1"
	mimeReportHarbor = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
	mimeError        = "application/vnd.scanner.adapter.error+json; version=1.0"
	mimeOCIManifest  = "application/vnd.oci.image.manifest.v1+json"
	mimeDockerV2     = "application/vnd.docker.distribution.manifest.v2+json"
)

// Vulnerability is one finding the stand-in reports, in the Harbor report's
// terms. Severity is Harbor's: Unknown, Negligible, Low, Medium, High or
// Critical.
type Vulnerability struct {
	ID, Package, Version, FixVersion, Severity string
}

// Request is one scan request the stand-in accepted, and how its pull went.
type Request struct {
	// ID is the scan id the stand-in answered with.
	ID string
	// ContentType is the request's Content-Type.
	ContentType string
	// RegistryURL and Authorization are registry.url and
	// registry.authorization.
	RegistryURL, Authorization string
	// Repository, Digest and MIMEType are the artifact's.
	Repository string
	Digest     digest.Digest
	MIMEType   string
	// Done is true once the pull has finished, well or not.
	Done bool
	// Pulled is true when the manifest and every blob came back and verified.
	Pulled bool
	// PullError says why the pull failed; "" when it did not.
	PullError string
}

// Option configures a Scanner built by New.
type Option func(*Scanner)

// WithDelay keeps each report unready for d after its scan request, answering
// 302 with Refresh-After and Retry-After (whole seconds left, at least 1)
// meanwhile. Default: 0, ready as soon as the pull has finished.
func WithDelay(d time.Duration) Option {
	return func(s *Scanner) { s.delay = d }
}

// WithAuthorization makes the adapter itself demand this Authorization header
// value, answering 401 otherwise. Default: no authentication.
func WithAuthorization(value string) Option {
	return func(s *Scanner) { s.auth = value }
}

// WithPullTransport pulls through rt (e.g. one that trusts a test TLS
// registry). Default: a clone of http.DefaultTransport.
func WithPullTransport(rt http.RoundTripper) Option {
	return func(s *Scanner) { s.rt = rt }
}

// WithDBUpdatedAt sets the vulnerability database time the metadata reports.
// Default: the time New ran, to the second.
func WithDBUpdatedAt(t time.Time) Option {
	return func(s *Scanner) { s.dbTime = t.UTC() }
}

// Scanner is a running stand-in adapter. Build it with New.
type Scanner struct {
	srv      *httptest.Server
	findings func(repo string, dgst digest.Digest) []Vulnerability
	delay    time.Duration
	auth     string
	rt       http.RoundTripper
	dbTime   time.Time

	ctx    context.Context // ends pulls at cleanup
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	reqs  []Request
	jobs  map[string]*job
	pulls int
}

// job is one scan's state.
type job struct {
	index    int // into reqs
	accepted time.Time
	report   *harborReport // set once the pull succeeded
}

// New starts a stand-in adapter and stops it in t.Cleanup. findings gives the
// vulnerabilities to report for a pulled artifact; nil reports none.
func New(t testing.TB, findings func(repo string, dgst digest.Digest) []Vulnerability, opts ...Option) *Scanner {
	t.Helper()
	s := &Scanner{
		findings: findings,
		rt:       http.DefaultTransport.(*http.Transport).Clone(),
		dbTime:   time.Now().UTC().Truncate(time.Second),
		jobs:     map[string]*job{},
	}
	for _, o := range opts {
		o(s)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	t.Cleanup(func() {
		s.cancel()
		s.wg.Wait()
		s.srv.Close()
	})
	return s
}

// URL returns the adapter's root, http://127.0.0.1:PORT (the API is under
// /api/v1).
func (s *Scanner) URL() string { return s.srv.URL }

// Requests returns the scan requests received so far, oldest first.
func (s *Scanner) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.reqs...)
}

// Pulls returns how many pulls succeeded.
func (s *Scanner) Pulls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pulls
}

func (s *Scanner) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if s.auth != "" && r.Header.Get("Authorization") != s.auth {
		writeError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	const prefix = "/api/v1/"
	p, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		writeError(w, http.StatusNotFound, "not found: "+r.URL.Path)
		return
	}
	route, method := "", http.MethodGet
	var id string
	switch {
	case p == "metadata":
		route = "metadata"
	case p == "scan":
		route, method = "scan", http.MethodPost
	default:
		rest, isScan := strings.CutPrefix(p, "scan/")
		if id, ok = strings.CutSuffix(rest, "/report"); !isScan || !ok || id == "" || strings.Contains(id, "/") {
			writeError(w, http.StatusNotFound, "not found: "+r.URL.Path)
			return
		}
		route = "report"
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	switch route {
	case "metadata":
		s.metadata(w)
	case "scan":
		s.scan(w, r)
	case "report":
		s.report(w, r, id)
	}
}

// metadata answers GET /api/v1/metadata as harbor-scanner-trivy does.
func (s *Scanner) metadata(w http.ResponseWriter) {
	writeJSON(w, http.StatusOK, mimeMetadata, map[string]any{
		"scanner": scannerInfo,
		"capabilities": []map[string]any{{
			"type":                "vulnerability",
			"consumes_mime_types": []string{mimeOCIManifest, mimeDockerV2},
			"produces_mime_types": []string{mimeReport},
		}},
		"properties": map[string]string{
			"harbor.scanner-adapter/scanner-type":                      "os-package-vulnerability",
			"harbor.scanner-adapter/vulnerability-database-updated-at": s.dbTime.Format(time.RFC3339),
			"env.SCANNER_TRIVY_OFFLINE_SCAN":                           "true",
		},
	})
}

// scannerInfo is the scanner the stand-in claims to be.
var scannerInfo = map[string]string{"name": "Trivy", "vendor": "Aqua Security", "version": "harbortest"}

// scanRequest is the ScanRequest schema.
type scanRequest struct {
	Registry struct {
		URL           string `json:"url"`
		Authorization string `json:"authorization"`
	} `json:"registry"`
	Artifact struct {
		Repository string `json:"repository"`
		Digest     string `json:"digest"`
		Tag        string `json:"tag"`
		MIMEType   string `json:"mime_type"`
	} `json:"artifact"`
	EnabledCapabilities []struct {
		Type string `json:"type"`
	} `json:"enabled_capabilities"`
}

// scan answers POST /api/v1/scan: validate, enqueue, 202 {"id"}.
func (s *Scanner) scan(w http.ResponseWriter, r *http.Request) {
	ct := r.Header.Get("Content-Type")
	if mt, params, err := mime.ParseMediaType(ct); err != nil || mt != mimeScanRequest || (params["version"] != "1.0" && params["version"] != "1.1") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported media type "+ct)
		return
	}
	var req scanRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "unmarshalling scan request: "+err.Error())
		return
	}
	for _, c := range req.EnabledCapabilities {
		if c.Type != "vulnerability" && c.Type != "sbom" {
			writeError(w, http.StatusUnprocessableEntity, "invalid scan type")
			return
		}
	}
	var dgst digest.Digest
	switch u, err := url.ParseRequestURI(req.Registry.URL); {
	case req.Registry.URL == "":
		writeError(w, http.StatusUnprocessableEntity, "missing registry.url")
		return
	case err != nil || u.Host == "":
		writeError(w, http.StatusUnprocessableEntity, "invalid registry.url")
		return
	case req.Artifact.Repository == "":
		writeError(w, http.StatusUnprocessableEntity, "missing artifact.repository")
		return
	case req.Artifact.Digest == "":
		writeError(w, http.StatusUnprocessableEntity, "missing artifact.digest")
		return
	default:
		if dgst, err = digest.Parse(req.Artifact.Digest); err != nil {
			writeError(w, http.StatusUnprocessableEntity, "invalid artifact.digest")
			return
		}
	}

	id := newID()
	s.mu.Lock()
	s.reqs = append(s.reqs, Request{
		ID:            id,
		ContentType:   ct,
		RegistryURL:   req.Registry.URL,
		Authorization: req.Registry.Authorization,
		Repository:    req.Artifact.Repository,
		Digest:        dgst,
		MIMEType:      req.Artifact.MIMEType,
	})
	j := &job{index: len(s.reqs) - 1, accepted: time.Now()}
	s.jobs[id] = j
	s.mu.Unlock()

	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := pull(s.ctx, s.rt, req.Registry.URL, req.Registry.Authorization, req.Artifact.Repository, dgst)
		var vulns []Vulnerability
		if err == nil && s.findings != nil {
			vulns = s.findings(req.Artifact.Repository, dgst)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		rq := &s.reqs[j.index]
		rq.Done = true
		if err != nil {
			rq.PullError = err.Error()
			return
		}
		rq.Pulled = true
		s.pulls++
		j.report = newReport(req, vulns)
	}()

	writeJSON(w, http.StatusAccepted, mimeScanResponse, map[string]string{"id": id})
}

// report answers GET /api/v1/scan/{id}/report.
func (s *Scanner) report(w http.ResponseWriter, r *http.Request, id string) {
	accept := r.Header.Get("Accept")
	mt, ok := reportType(accept)
	if !ok {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported media type "+accept)
		return
	}
	s.mu.Lock()
	j, found := s.jobs[id]
	var rq Request
	var rep *harborReport
	if found {
		rq, rep = s.reqs[j.index], j.report
	}
	s.mu.Unlock()
	switch {
	case !found:
		writeError(w, http.StatusNotFound, "cannot find scan job: "+id)
	case !rq.Done || time.Since(j.accepted) < s.delay:
		left := max(time.Second, s.delay-time.Since(j.accepted))
		secs := strconv.Itoa(int(math.Ceil(left.Seconds())))
		w.Header().Set("Location", r.URL.String())
		w.Header().Set("Refresh-After", secs)
		w.Header().Set("Retry-After", secs)
		w.WriteHeader(http.StatusFound)
	case rq.PullError != "":
		writeError(w, http.StatusInternalServerError, "running trivy wrapper: pulling "+rq.Repository+"@"+rq.Digest.String()+": "+rq.PullError)
	default:
		writeJSON(w, http.StatusOK, mt, rep)
	}
}

// reportType reads the Accept of a report request: empty and */* mean the
// Harbor vulnerability report.
func reportType(accept string) (string, bool) {
	switch strings.TrimSpace(accept) {
	case "", "*/*":
		return mimeReport, true
	}
	mt, params, err := mime.ParseMediaType(accept)
	if err != nil {
		return "", false
	}
	switch {
	case mt == "application/vnd.security.vulnerability.report" && params["version"] == "1.1":
		return mimeReport, true
	case mt == "application/vnd.scanner.adapter.vuln.report.harbor+json" && params["version"] == "1.0":
		return mimeReportHarbor, true
	}
	return "", false
}

// harborReport is the HarborVulnerabilityReport schema.
type harborReport struct {
	GeneratedAt time.Time `json:"generated_at"`
	Artifact    struct {
		Repository string `json:"repository"`
		Digest     string `json:"digest"`
		MIMEType   string `json:"mime_type,omitempty"`
	} `json:"artifact"`
	Scanner         map[string]string `json:"scanner"`
	Severity        string            `json:"severity"`
	Vulnerabilities []harborVuln      `json:"vulnerabilities"`
}

type harborVuln struct {
	ID          string   `json:"id"`
	Package     string   `json:"package"`
	Version     string   `json:"version"`
	FixVersion  string   `json:"fix_version,omitempty"`
	Severity    string   `json:"severity"`
	Description string   `json:"description"`
	Links       []string `json:"links"`
}

// harborRank orders Harbor severities.
var harborRank = map[string]int{"Unknown": 0, "Negligible": 1, "Low": 2, "Medium": 3, "High": 4, "Critical": 5}

func newReport(req scanRequest, vulns []Vulnerability) *harborReport {
	rep := &harborReport{GeneratedAt: time.Now().UTC(), Scanner: scannerInfo, Severity: "Unknown", Vulnerabilities: []harborVuln{}}
	rep.Artifact.Repository = req.Artifact.Repository
	rep.Artifact.Digest = req.Artifact.Digest
	rep.Artifact.MIMEType = req.Artifact.MIMEType
	for _, v := range vulns {
		rep.Vulnerabilities = append(rep.Vulnerabilities, harborVuln{
			ID: v.ID, Package: v.Package, Version: v.Version, FixVersion: v.FixVersion, Severity: v.Severity,
			Links: []string{"https://avd.aquasec.com/nvd/" + strings.ToLower(v.ID)},
		})
		if harborRank[v.Severity] > harborRank[rep.Severity] {
			rep.Severity = v.Severity
		}
	}
	return rep
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with the spec's ErrorResponse.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, mimeError, map[string]map[string]string{"error": {"message": msg}})
}

// newID returns a random UUID-shaped scan id.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("harbortest: random id: %v", err))
	}
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
