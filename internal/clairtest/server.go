package clairtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Vulnerability is one vulnerability the stand-in's database matches in an image.
type Vulnerability struct {
	Name     string // e.g. CVE-2024-9001
	Package  string
	Version  string // installed
	FixedIn  string // "" when there is no fix
	Severity string // normalized: Unknown, Negligible, Low, Medium, High, Critical
}

// Pull is one layer fetch the indexer made.
type Pull struct {
	Manifest      digest.Digest
	Layer         digest.Digest
	URI           string
	Authorization string
	// Err is why the fetch failed (status, digest mismatch), "" when it succeeded.
	Err string
}

// Server is a running Clair stand-in.
type Server struct {
	srv      *httptest.Server
	findings func(digest.Digest) []Vulnerability

	mu            sync.Mutex
	indexed       map[digest.Digest]*indexReport
	added         map[digest.Digest][]Vulnerability
	notifications map[string][]notification
	deleted       map[string]bool
	pulls         []Pull
}

// New starts a stand-in whose matcher finds findings(manifest) (nil: nothing) in every image it
// indexed, plus what Add adds. It stops when the test ends.
func New(t testing.TB, findings func(digest.Digest) []Vulnerability) *Server {
	t.Helper()
	if findings == nil {
		findings = func(digest.Digest) []Vulnerability { return nil }
	}
	s := &Server{findings: findings, indexed: map[digest.Digest]*indexReport{}, added: map[digest.Digest][]Vulnerability{},
		notifications: map[string][]notification{}, deleted: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /indexer/api/v1/index_report", s.index)
	mux.HandleFunc("GET /indexer/api/v1/index_report/{digest}", s.getIndex)
	mux.HandleFunc("GET /indexer/api/v1/index_state", s.indexState)
	mux.HandleFunc("GET /matcher/api/v1/vulnerability_report/{digest}", s.vulnReport)
	mux.HandleFunc("GET /notifier/api/v1/notification/{id}", s.getNotification)
	mux.HandleFunc("DELETE /notifier/api/v1/notification/{id}", s.deleteNotification)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the stand-in's base URL (indexer, matcher and notifier, as in Clair's combined mode).
func (s *Server) URL() string { return s.srv.URL }

// Pulls lists the layer fetches the indexer made, in order.
func (s *Server) Pulls() []Pull {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Pull(nil), s.pulls...)
}

// Indexed reports whether the manifest was indexed successfully.
func (s *Server) Indexed(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ir := s.indexed[d]
	return ir != nil && ir.Success
}

// Deleted reports whether the notification was deleted (acknowledged) by a client.
func (s *Server) Deleted(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleted[id]
}

// Add puts v in the database as affecting the indexed manifest d, as an updater run would, and
// returns the id of the notification the notifier made of it (reason "added").
func (s *Server) Add(d digest.Digest, v Vulnerability) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.added[d] = append(s.added[d], v)
	id := newID()
	s.notifications[id] = append(s.notifications[id], notification{
		ID: newID(), Manifest: d.String(), Reason: "added",
		Vulnerability: summary{Name: v.Name, FixedInVersion: v.FixedIn, Description: v.Name, NormalizedSeverity: v.Severity,
			Package: &pkg{Name: v.Package, Version: v.Version, Kind: "binary"}},
	})
	return id
}

// Deliver posts notification id to webhook as Clair's webhook deliverer does, and returns the
// webhook's status.
func (s *Server) Deliver(ctx context.Context, webhook, id string) (int, error) {
	b, _ := json.Marshal(webhookBody{NotificationID: id, Callback: s.srv.URL + "/notifier/api/v1/notification/" + id})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, webhook, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// The API's JSON shapes (httptransport/types/v1/*.schema.json), as Clair writes them.
type (
	manifestDoc struct {
		Hash   string     `json:"hash"`
		Layers []layerDoc `json:"layers"`
	}
	layerDoc struct {
		Hash      string              `json:"hash"`
		URI       string              `json:"uri"`
		Headers   map[string][]string `json:"headers"`
		MediaType string              `json:"media_type,omitempty"`
	}
	indexReport struct {
		ManifestHash  string                   `json:"manifest_hash"`
		State         string                   `json:"state"`
		Err           string                   `json:"err"`
		Success       bool                     `json:"success"`
		Packages      map[string]pkg           `json:"packages"`
		Distributions map[string]any           `json:"distributions"`
		Repository    map[string]any           `json:"repository"`
		Environments  map[string][]environment `json:"environments"`
	}
	pkg struct {
		ID      string `json:"id,omitempty"`
		Name    string `json:"name"`
		Version string `json:"version"`
		Kind    string `json:"kind,omitempty"`
	}
	environment struct {
		PackageDB      string   `json:"package_db"`
		IntroducedIn   string   `json:"introduced_in"`
		DistributionID string   `json:"distribution_id"`
		RepositoryIDs  []string `json:"repository_ids"`
	}
	vulnerability struct {
		ID                 string `json:"id"`
		Updater            string `json:"updater"`
		Name               string `json:"name"`
		Description        string `json:"description"`
		Issued             string `json:"issued"`
		Links              string `json:"links"`
		Severity           string `json:"severity"`
		NormalizedSeverity string `json:"normalized_severity"`
		Package            *pkg   `json:"package,omitempty"`
		FixedInVersion     string `json:"fixed_in_version"`
	}
	vulnerabilityReport struct {
		ManifestHash           string                   `json:"manifest_hash"`
		Packages               map[string]pkg           `json:"packages"`
		Distributions          map[string]any           `json:"distributions"`
		Repository             map[string]any           `json:"repository"`
		Environments           map[string][]environment `json:"environments"`
		Vulnerabilities        map[string]vulnerability `json:"vulnerabilities"`
		PackageVulnerabilities map[string][]string      `json:"package_vulnerabilities"`
		Enrichments            map[string][]any         `json:"enrichments"`
	}
	summary struct {
		Name               string `json:"name"`
		FixedInVersion     string `json:"fixed_in_version"`
		Description        string `json:"description"`
		NormalizedSeverity string `json:"normalized_severity"`
		Package            *pkg   `json:"package,omitempty"`
	}
	notification struct {
		ID            string  `json:"id"`
		Manifest      string  `json:"manifest"`
		Reason        string  `json:"reason"`
		Vulnerability summary `json:"vulnerability"`
	}
	notificationPage struct {
		Page struct {
			Size int    `json:"size"`
			Next string `json:"next,omitempty"`
		} `json:"page"`
		Notifications []notification `json:"notifications"`
	}
	webhookBody struct {
		NotificationID string `json:"notification_id"`
		Callback       string `json:"callback"`
	}
)

// apiError writes Clair's error body.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, mediaType string, v any) {
	w.Header().Set("Content-Type", mediaType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// index is POST /indexer/api/v1/index_report: fetch every layer, then report IndexFinished (or
// IndexError with the reason), synchronously as Clair does.
func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" && mt != "application/vnd.clair.manifest.v1+json" {
		apiError(w, http.StatusUnsupportedMediaType, "method-not-allowed", "unsupported media type "+r.Header.Get("Content-Type"))
		return
	}
	var m manifestDoc
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&m); err != nil {
		apiError(w, http.StatusBadRequest, "bad-request", "failed to deserialize manifest: "+err.Error())
		return
	}
	d, err := digest.Parse(m.Hash)
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad-request", "bad manifest hash: "+err.Error())
		return
	}
	ir := &indexReport{ManifestHash: d.String(), State: "IndexFinished", Success: true,
		Packages: map[string]pkg{}, Distributions: map[string]any{}, Repository: map[string]any{}, Environments: map[string][]environment{}}
	for _, l := range m.Layers {
		if err := s.fetch(r.Context(), d, l); err != nil {
			ir.State, ir.Success, ir.Err = "IndexError", false, err.Error()
			break
		}
	}
	s.mu.Lock()
	s.indexed[d] = ir
	s.mu.Unlock()
	w.Header().Set("Location", "/indexer/api/v1/index_report/"+d.String())
	writeJSON(w, http.StatusCreated, "application/vnd.clair.index_report.v1+json", ir)
}

// fetch GETs one layer from its URI with its headers and checks its digest.
func (s *Server) fetch(ctx context.Context, m digest.Digest, l layerDoc) error {
	p := Pull{Manifest: m, Layer: digest.Digest(l.Hash), URI: l.URI}
	if a := l.Headers["Authorization"]; len(a) > 0 {
		p.Authorization = a[0]
	}
	err := func() error {
		ld, err := digest.Parse(l.Hash)
		if err != nil {
			return fmt.Errorf("layer hash %q: %w", l.Hash, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.URI, nil)
		if err != nil {
			return err
		}
		for k, vs := range l.Headers {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("fetching layer %s: unexpected status code: %s", ld, resp.Status)
		}
		v := ld.Verifier()
		if _, err := io.Copy(v, resp.Body); err != nil {
			return err
		}
		if !v.Verified() {
			return fmt.Errorf("layer %s: content does not match its digest", ld)
		}
		return nil
	}()
	if err != nil {
		p.Err = err.Error()
	}
	s.mu.Lock()
	s.pulls = append(s.pulls, p)
	s.mu.Unlock()
	return err
}

func (s *Server) getIndex(w http.ResponseWriter, r *http.Request) {
	d, err := digest.Parse(r.PathValue("digest"))
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad-request", "malformed path: "+err.Error())
		return
	}
	s.mu.Lock()
	ir := s.indexed[d]
	s.mu.Unlock()
	if ir == nil {
		apiError(w, http.StatusNotFound, "not-found", "index report for "+d.String()+" not found")
		return
	}
	writeJSON(w, http.StatusOK, "application/vnd.clair.index_report.v1+json", ir)
}

func (s *Server) indexState(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, "application/vnd.clair.index_state.v1+json", map[string]string{"state": "clairtest"})
}

// vulnReport is GET /matcher/api/v1/vulnerability_report/{digest}: 201 with the report of an
// indexed manifest, 404 otherwise.
func (s *Server) vulnReport(w http.ResponseWriter, r *http.Request) {
	d, err := digest.Parse(r.PathValue("digest"))
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad-request", "malformed path: "+err.Error())
		return
	}
	s.mu.Lock()
	ir := s.indexed[d]
	added := append([]Vulnerability(nil), s.added[d]...)
	s.mu.Unlock()
	if ir == nil || ir.State != "IndexFinished" {
		apiError(w, http.StatusNotFound, "not-found", "index report for "+d.String()+" not found")
		return
	}
	vr := vulnerabilityReport{ManifestHash: d.String(), Packages: map[string]pkg{}, Distributions: map[string]any{},
		Repository: map[string]any{}, Environments: map[string][]environment{}, Vulnerabilities: map[string]vulnerability{},
		PackageVulnerabilities: map[string][]string{}, Enrichments: map[string][]any{}}
	pkgIDs := map[string]string{}
	for i, v := range append(s.findings(d), added...) {
		key := v.Package + "@" + v.Version
		pid, ok := pkgIDs[key]
		if !ok {
			pid = strconv.Itoa(len(pkgIDs) + 1)
			pkgIDs[key] = pid
			vr.Packages[pid] = pkg{ID: pid, Name: v.Package, Version: v.Version, Kind: "binary"}
			vr.Environments[pid] = []environment{{PackageDB: "var/lib/dpkg/status", IntroducedIn: d.String(), RepositoryIDs: []string{}}}
		}
		vid := strconv.Itoa(1000 + i)
		vr.Vulnerabilities[vid] = vulnerability{ID: vid, Updater: "clairtest", Name: v.Name, Description: v.Name,
			Issued: time.Now().UTC().Format(time.RFC3339), Severity: v.Severity, NormalizedSeverity: v.Severity,
			Package: &pkg{Name: v.Package, Kind: "binary"}, FixedInVersion: v.FixedIn}
		vr.PackageVulnerabilities[pid] = append(vr.PackageVulnerabilities[pid], vid)
	}
	writeJSON(w, http.StatusCreated, "application/vnd.clair.vulnerability_report.v1+json", vr)
}

func (s *Server) getNotification(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	ns, ok := s.notifications[id]
	gone := s.deleted[id]
	s.mu.Unlock()
	if !ok || gone {
		apiError(w, http.StatusNotFound, "not-found", "notification "+id+" not found")
		return
	}
	size := 500
	if v := r.URL.Query().Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			apiError(w, http.StatusBadRequest, "bad-request", "bad page_size")
			return
		}
		size = n
	}
	start := 0
	if v := r.URL.Query().Get("next"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > len(ns) {
			apiError(w, http.StatusBadRequest, "bad-request", "bad next")
			return
		}
		start = n
	}
	end := min(start+size, len(ns))
	var page notificationPage
	page.Notifications = ns[start:end]
	page.Page.Size = len(page.Notifications)
	if end < len(ns) {
		page.Page.Next = strconv.Itoa(end)
	}
	writeJSON(w, http.StatusOK, "application/vnd.clair.notification_page.v1+json", page)
}

func (s *Server) deleteNotification(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.deleted[r.PathValue("id")] = true
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return strings.Join([]string{h[:8], h[8:12], h[12:16], h[16:20], h[20:]}, "-")
}
