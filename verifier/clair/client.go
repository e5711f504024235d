package clair

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/manifest"
	"github.com/portcullis/portcullis/policy"
)

// Bounds on what Clair and the registry may make the client read.
const (
	maxManifestBody = 4 << 20  // an image manifest, as the proxy caps them
	maxIndexBody    = 16 << 20 // an index report lists every package
	maxReportBody   = 64 << 20 // a vulnerability report, with descriptions
	maxErrorBody    = 64 << 10
)

// Index states (claircore's indexer/controller states) the client tells apart.
const (
	StateIndexFinished = "IndexFinished"
	StateIndexError    = "IndexError"
)

// Client talks to one Clair v4 deployment (indexer, matcher and notifier behind one base URL, as
// in Clair's combined mode or behind its usual ingress). Safe for concurrent use.
type Client struct {
	base *url.URL
	hc   *http.Client
	poll time.Duration
}

// Option configures a Client.
type Option func(*Client) error

// WithHTTPClient sets the HTTP client for Clair and for reading the manifest from the registry.
// Default: a client with a 1 minute timeout per request.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("clair: nil HTTP client")
		}
		c.hc = hc
		return nil
	}
}

// WithPollInterval sets how often an index report that is not finished is asked for again. It
// must be positive. Default: 1s.
func WithPollInterval(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("clair: poll interval must be positive, got %s", d)
		}
		c.poll = d
		return nil
	}
}

// New returns a client for the Clair at baseURL (http or https, e.g. http://clair:6060).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("clair: base URL %q: want http(s)://host[:port][/path]", baseURL)
	}
	c := &Client{base: u, hc: &http.Client{Timeout: time.Minute}, poll: time.Second}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// manifestReq is Clair's Manifest.
type manifestReq struct {
	Hash   string     `json:"hash"`
	Layers []layerReq `json:"layers"`
}

// layerReq is Clair's Layer: Clair fetches uri with headers.
type layerReq struct {
	Hash      string              `json:"hash"`
	URI       string              `json:"uri"`
	Headers   map[string][]string `json:"headers"`
	MediaType string              `json:"media_type,omitempty"`
}

// indexReport is the part of Clair's IndexReport the client reads.
type indexReport struct {
	ManifestHash string `json:"manifest_hash"`
	State        string `json:"state"`
	Success      bool   `json:"success"`
	Err          string `json:"err"`
}

// Scan has Clair index the image manifest repo@dgst in the registry at registryURL (Portcullis,
// as Clair reaches it) and returns its vulnerability report. The manifest is read from the
// registry with registryAuth (the whole Authorization header value, e.g. "Bearer <token>"), and
// each layer is handed to Clair as the registry's blob URL with that header, so Clair pulls the
// layers through Portcullis with the scanner credential. Only image manifests can be indexed;
// mediaType is the manifest's and an index is an error. It waits, until ctx ends, for the index
// to finish. The report's Source is policy.SourceScanner.
func (c *Client) Scan(ctx context.Context, registryURL, registryAuth, repo string, dgst digest.Digest, mediaType string) (*policy.ScanReport, error) {
	u, err := url.Parse(registryURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("clair: scan: registry URL %q: want http(s)://host[:port]", registryURL)
	}
	if repo == "" || strings.Contains(repo, "..") {
		return nil, fmt.Errorf("clair: scan: bad repository %q", repo)
	}
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("clair: scan: digest %q: %w", dgst, err)
	}
	if strings.ContainsAny(registryAuth, "\r\n") {
		return nil, errors.New("clair: scan: registry authorization contains a line break")
	}
	base := strings.TrimSuffix(u.String(), "/") + "/v2/" + repo
	m, err := c.readManifest(ctx, base+"/manifests/"+dgst.String(), registryAuth, dgst)
	if err != nil {
		return nil, err
	}
	if m.IsIndex() {
		return nil, fmt.Errorf("clair: scan: %s is an index (%s); Clair indexes image manifests", dgst, mediaType)
	}
	req := manifestReq{Hash: dgst.String(), Layers: []layerReq{}}
	for _, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("clair: scan: layer %q: %w", l.Digest, err)
		}
		var h map[string][]string
		if registryAuth != "" {
			h = map[string][]string{"Authorization": {registryAuth}}
		}
		req.Layers = append(req.Layers, layerReq{Hash: l.Digest.String(), URI: base + "/blobs/" + l.Digest.String(), Headers: h, MediaType: l.MediaType})
	}
	if err := c.index(ctx, req); err != nil {
		return nil, err
	}
	return c.Report(ctx, dgst)
}

// readManifest reads and parses the manifest at u, checking its digest.
func (c *Client) readManifest(ctx context.Context, u, auth string, dgst digest.Digest) (manifest.Contents, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return manifest.Contents{}, fmt.Errorf("clair: manifest: %w", err)
	}
	req.Header.Set("Accept", strings.Join(manifest.AcceptTypes(), ", "))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return manifest.Contents{}, fmt.Errorf("clair: manifest %s: %w", dgst, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return manifest.Contents{}, fmt.Errorf("clair: manifest %s: registry answered %s", dgst, resp.Status)
	}
	b, err := readCapped(resp.Body, maxManifestBody)
	if err != nil {
		return manifest.Contents{}, fmt.Errorf("clair: manifest %s: %w", dgst, err)
	}
	if dgst.Algorithm().FromBytes(b) != dgst {
		return manifest.Contents{}, fmt.Errorf("clair: manifest %s: content does not match its digest", dgst)
	}
	m, err := manifest.Parse(b)
	if err != nil {
		return manifest.Contents{}, fmt.Errorf("clair: manifest %s: %w", dgst, err)
	}
	return m, nil
}

// index submits the manifest and waits for its index report to finish.
func (c *Client) index(ctx context.Context, m manifestReq) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("clair: index: %w", err)
	}
	var ir indexReport
	status, err := c.call(ctx, http.MethodPost, c.endpoint("indexer/api/v1/index_report"), "application/vnd.clair.manifest.v1+json", body, maxIndexBody, &ir)
	if err != nil {
		return err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return fmt.Errorf("clair: index: unexpected status %d", status)
	}
	for {
		switch ir.State {
		case StateIndexFinished:
			if !ir.Success {
				return fmt.Errorf("clair: index of %s finished without success: %s", m.Hash, ir.Err)
			}
			return nil
		case StateIndexError:
			return fmt.Errorf("clair: index of %s failed: %s", m.Hash, ir.Err)
		}
		t := time.NewTimer(c.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("clair: waiting for the index of %s (state %s): %w", m.Hash, ir.State, context.Cause(ctx))
		case <-t.C:
		}
		ir = indexReport{}
		if _, err := c.call(ctx, http.MethodGet, c.endpoint("indexer/api/v1/index_report", m.Hash), "", nil, maxIndexBody, &ir); err != nil {
			return err
		}
	}
}

// Report returns the matcher's vulnerability report of the indexed manifest dgst.
func (c *Client) Report(ctx context.Context, dgst digest.Digest) (*policy.ScanReport, error) {
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("clair: report: digest %q: %w", dgst, err)
	}
	var vr vulnerabilityReport
	status, err := c.call(ctx, http.MethodGet, c.endpoint("matcher/api/v1/vulnerability_report", dgst.String()), "", nil, maxReportBody, &vr)
	if err != nil {
		return nil, err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return nil, fmt.Errorf("clair: report: unexpected status %d", status)
	}
	if vr.ManifestHash != dgst.String() {
		return nil, fmt.Errorf("clair: report: it is for %q, not %s", vr.ManifestHash, dgst)
	}
	return vr.scanReport(time.Now()), nil
}

// endpoint joins path segments to the base URL, escaping each.
func (c *Client) endpoint(path string, segs ...string) string {
	u := *c.base
	p := strings.TrimSuffix(u.Path, "/") + "/" + path
	for _, s := range segs {
		p += "/" + url.PathEscape(s)
	}
	u.Path, u.RawPath = "", ""
	return u.String() + p
}

// APIError is a Clair answer that is not a success.
type APIError struct {
	Method, URL string
	Status      int
	// Message is Clair's error message ({"code","message"}), or the start of the body.
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("clair: %s %s: %d %s", e.Method, e.URL, e.Status, e.Message)
}

// call sends one request to Clair and decodes a 2xx JSON body (at most max bytes) into out.
func (c *Client) call(ctx context.Context, method, u, contentType string, body []byte, max int64, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, fmt.Errorf("clair: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("clair: %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := readCapped(resp.Body, maxErrorBody)
		var e struct {
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		return resp.StatusCode, &APIError{Method: method, URL: u, Status: resp.StatusCode, Message: msg}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return resp.StatusCode, nil
	}
	b, err := readCapped(resp.Body, max)
	if err != nil {
		return 0, fmt.Errorf("clair: %s %s: %w", method, u, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return 0, fmt.Errorf("clair: %s %s: response: %w", method, u, err)
	}
	return resp.StatusCode, nil
}

// readCapped reads r, failing when it holds more than max bytes.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("body over %d bytes", max)
	}
	return b, nil
}
