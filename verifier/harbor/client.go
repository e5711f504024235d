package harbor

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Media types of the Pluggable Scanner API, as this client sends them.
const (
	// MIMEMetadata is the Accept of GET /api/v1/metadata.
	MIMEMetadata = "application/vnd.scanner.adapter.metadata+json; version=1.0"
	// MIMEScanRequest is the Content-Type of POST /api/v1/scan.
	MIMEScanRequest = "application/vnd.scanner.adapter.scan.request+json; version=1.0"
	// MIMEScanResponse is the Accept of POST /api/v1/scan.
	MIMEScanResponse = "application/vnd.scanner.adapter.scan.response+json; version=1.0"
	// MIMEReport is the Accept of GET /api/v1/scan/{id}/report: the Harbor
	// vulnerability report.
	MIMEReport = "application/vnd.security.vulnerability.report; version=1.1"
)

// Operations, for APIError.Op.
const (
	opMetadata = "metadata"
	opScan     = "scan"
	opReport   = "report"
)

// Body caps: an adapter's answer is read no further than this.
const (
	maxErrorBody    = 64 << 10
	maxMetadataBody = 1 << 20
	maxReportBody   = 64 << 20
)

// maxWait caps the wait an adapter may ask for between report polls.
const maxWait = time.Minute

// Client talks to one scanner adapter. It is safe for concurrent use.
type Client struct {
	base *url.URL // the adapter's API root, ending in /api/v1
	hc   *http.Client
	poll time.Duration
	auth string
}

// Option configures a Client built by New.
type Option func(*Client) error

// WithHTTPClient sends requests through hc. The client is copied and made not
// to follow redirects (a 302 from the report endpoint means "not ready"); its
// Timeout, if any, bounds each request. Default: a client on a clone of
// http.DefaultTransport (TLS 1.2 at least) with no timeout of its own; the
// caller's context bounds every call.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("harbor: WithHTTPClient(nil)")
		}
		cp := *hc
		c.hc = &cp
		return nil
	}
}

// WithPollInterval sets the wait between report polls when the adapter's 302
// names none (neither Refresh-After nor Retry-After). A wait the adapter names
// is honoured up to one minute. Default: 1s.
func WithPollInterval(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("harbor: poll interval %s, want > 0", d)
		}
		c.poll = d
		return nil
	}
}

// WithAuthorization sends value as the Authorization header of every request
// to the adapter ("Bearer <token>" or "Basic <base64>", as the adapter was
// configured). It authenticates Portcullis to the adapter; it is not the
// credential the adapter pulls the image with (see Scan). Default: none.
func WithAuthorization(value string) Option {
	return func(c *Client) error {
		if strings.ContainsAny(value, "\r\n") {
			return errors.New("harbor: authorization value contains a line break")
		}
		c.auth = value
		return nil
	}
}

// New returns a client for the adapter at baseURL, its root
// ("http://harbor-scanner-trivy:8080"); "/api/v1" is appended unless the URL
// already ends with it.
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("harbor: adapter URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("harbor: adapter URL %q: want http(s)://host[:port][/path] without credentials, query or fragment", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(u.Path, "/api/v1") {
		u.Path += "/api/v1"
	}
	u.RawPath = ""
	c := &Client{
		base: u,
		hc:   &http.Client{Transport: tls12Transport()},
		poll: time.Second,
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	c.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c, nil
}

// Metadata is the adapter's description of itself (GET /api/v1/metadata).
type Metadata struct {
	Scanner      Scanner           `json:"scanner"`
	Capabilities []Capability      `json:"capabilities"`
	Properties   map[string]string `json:"properties"`
}

// Scanner names the scanner behind an adapter.
type Scanner struct {
	Name    string `json:"name"`
	Vendor  string `json:"vendor"`
	Version string `json:"version"`
}

// Capability is one kind of scan an adapter does: the artifact media types it
// reads and the report media types it writes.
type Capability struct {
	// Type is "vulnerability" or "sbom"; empty means vulnerability (API v1.0
	// and v1.1 adapters).
	Type              string   `json:"type,omitempty"`
	ConsumesMIMETypes []string `json:"consumes_mime_types"`
	ProducesMIMETypes []string `json:"produces_mime_types"`
}

// PropertyDBUpdatedAt is the metadata property holding the vulnerability
// database's time, as harbor-scanner-trivy reports it.
const PropertyDBUpdatedAt = "harbor.scanner-adapter/vulnerability-database-updated-at"

// DBUpdatedAt returns the vulnerability database's time from the adapter's
// properties, or the zero time.
func (m Metadata) DBUpdatedAt() time.Time {
	t, err := time.Parse(time.RFC3339Nano, m.Properties[PropertyDBUpdatedAt])
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// CanScan reports whether a vulnerability capability consumes artifacts of
// mediaType and produces a Harbor vulnerability report.
func (m Metadata) CanScan(mediaType string) bool {
	for _, c := range m.Capabilities {
		if c.Type != "" && c.Type != "vulnerability" {
			continue
		}
		consumes, produces := false, false
		for _, t := range c.ConsumesMIMETypes {
			consumes = consumes || t == mediaType
		}
		for _, t := range c.ProducesMIMETypes {
			produces = produces || sameMIME(t, MIMEReport) || sameMIME(t, "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0")
		}
		if consumes && produces {
			return true
		}
	}
	return false
}

// sameMIME compares media types ignoring spaces around parameters.
func sameMIME(a, b string) bool {
	norm := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, " ", ""), "\t", "") }
	return strings.EqualFold(norm(a), norm(b))
}

// Metadata fetches the adapter's metadata.
func (c *Client) Metadata(ctx context.Context) (Metadata, error) {
	resp, err := c.do(ctx, opMetadata, http.MethodGet, c.endpoint("metadata"), MIMEMetadata, "", nil)
	if err != nil {
		return Metadata{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Metadata{}, apiError(opMetadata, resp)
	}
	var m Metadata
	if err := decode(resp.Body, maxMetadataBody, &m); err != nil {
		return Metadata{}, fmt.Errorf("harbor: metadata: %w", err)
	}
	return m, nil
}

// endpoint joins escaped path elements to the API root.
func (c *Client) endpoint(elem ...string) string {
	return c.base.JoinPath(elem...).String()
}

// do sends one request to the adapter.
func (c *Client) do(ctx context.Context, op, method, target, accept, contentType string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, r)
	if err != nil {
		return nil, fmt.Errorf("harbor: %s: %w", op, err)
	}
	req.Header.Set("Accept", accept)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("harbor: %s: %w", op, err)
	}
	return resp, nil
}

// apiError reads an unexpected answer into an *APIError.
func apiError(op string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &APIError{Op: op, StatusCode: resp.StatusCode}
	var doc struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &doc) == nil && doc.Error != nil {
		e.Message = doc.Error.Message
	} else {
		e.Message = strings.TrimSpace(string(b[:min(len(b), 200)]))
	}
	return e
}

// decode reads at most limit bytes of JSON into v.
func decode(r io.Reader, limit int64, v any) error {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("body over %d bytes", limit)
	}
	return json.Unmarshal(b, v)
}

// tls12Transport is http.DefaultTransport refusing TLS before 1.2.
func tls12Transport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return tr
}
