package harbor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/verifier/report"
)

// scanRequest is the ScanRequest schema.
type scanRequest struct {
	Registry struct {
		URL           string `json:"url"`
		Authorization string `json:"authorization,omitempty"`
	} `json:"registry"`
	Artifact struct {
		Repository string `json:"repository"`
		Digest     string `json:"digest"`
		MIMEType   string `json:"mime_type,omitempty"`
	} `json:"artifact"`
}

// Scan asks the adapter to scan the artifact repo@dgst in the registry at
// registryURL and waits, until ctx ends, for the report.
//
// registryURL is the registry's base URL as the adapter must reach it,
// "http(s)://host[:port]"; adapters use its scheme and host only (harbor-scanner-
// trivy builds "host/repo@digest" and treats http as an insecure registry), so
// a path is refused. registryAuth is the whole Authorization header value the
// adapter pulls with: "Basic <base64 user:password>" (harbor-scanner-trivy
// splits the password at its first colon, so it must not contain one) or
// "Bearer <token>" (used as a registry token, sent as is). mediaType is the
// artifact's manifest media type; adapters consume OCI and Docker v2 image
// manifests.
//
// The report's Source is policy.SourceScanner; its DBTime comes from the adapter's
// metadata when that can be read (a failure there is not an error). An adapter
// error is an *APIError; a failed scan wraps ErrScanFailed.
func (c *Client) Scan(ctx context.Context, registryURL, registryAuth, repo string, dgst digest.Digest, mediaType string) (*policy.ScanReport, error) {
	u, err := url.Parse(registryURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("harbor: scan: registry URL %q: want http(s)://host[:port]", registryURL)
	}
	if repo == "" {
		return nil, fmt.Errorf("harbor: scan: empty repository")
	}
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("harbor: scan: digest %q: %w", dgst, err)
	}
	if strings.ContainsAny(registryAuth, "\r\n") {
		return nil, fmt.Errorf("harbor: scan: registry authorization contains a line break")
	}
	var req scanRequest
	req.Registry.URL = u.Scheme + "://" + u.Host
	req.Registry.Authorization = registryAuth
	req.Artifact.Repository = repo
	req.Artifact.Digest = dgst.String()
	req.Artifact.MIMEType = mediaType

	id, err := c.submit(ctx, req)
	if err != nil {
		return nil, err
	}
	rep, err := c.wait(ctx, id)
	if err != nil {
		return nil, err
	}
	if rep.DBTime.IsZero() {
		if md, err := c.Metadata(ctx); err == nil {
			rep.DBTime = md.DBUpdatedAt()
		}
	}
	return rep, nil
}

// submit posts the scan request and returns the scan id.
func (c *Client) submit(ctx context.Context, req scanRequest) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", fmt.Errorf("harbor: scan: %w", err)
	}
	resp, err := c.do(ctx, opScan, http.MethodPost, c.endpoint("scan"), MIMEScanResponse, MIMEScanRequest, body)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", apiError(opScan, resp)
	}
	var sr struct {
		ID string `json:"id"`
	}
	if err := decode(resp.Body, maxErrorBody, &sr); err != nil {
		return "", fmt.Errorf("harbor: scan: response: %w", err)
	}
	if sr.ID == "" || sr.ID == "." || sr.ID == ".." {
		return "", fmt.Errorf("harbor: scan: response id %q is not usable", sr.ID)
	}
	return sr.ID, nil
}

// wait polls for the report of scan id until it is ready, fails or ctx ends.
func (c *Client) wait(ctx context.Context, id string) (*policy.ScanReport, error) {
	target := c.endpoint("scan", url.PathEscape(id), "report")
	for {
		rep, wait, err := c.poll1(ctx, target)
		if rep != nil || err != nil {
			return rep, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("harbor: report: waiting for scan %s: %w", id, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// poll1 asks for the report once: the report, or how long to wait before
// asking again, or an error.
func (c *Client) poll1(ctx context.Context, target string) (*policy.ScanReport, time.Duration, error) {
	resp, err := c.do(ctx, opReport, http.MethodGet, target, MIMEReport, "", nil)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxReportBody+1))
		if err != nil {
			return nil, 0, fmt.Errorf("harbor: report: %w", err)
		}
		if len(b) > maxReportBody {
			return nil, 0, fmt.Errorf("harbor: report: body over %d bytes", maxReportBody)
		}
		rep, err := report.ParseHarbor(b)
		if err != nil {
			return nil, 0, fmt.Errorf("harbor: report: %w", err)
		}
		rep.Source = policy.SourceScanner
		return rep, 0, nil
	case http.StatusFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil, c.retryAfter(resp.Header), nil
	}
	return nil, 0, apiError(opReport, resp)
}

// retryAfter is the wait a 302 asks for: Refresh-After (the spec's header,
// seconds), else Retry-After (seconds or an HTTP date), else the poll interval;
// at most maxWait.
func (c *Client) retryAfter(h http.Header) time.Duration {
	d := time.Duration(-1)
	if s, err := strconv.Atoi(strings.TrimSpace(h.Get("Refresh-After"))); err == nil {
		d = time.Duration(s) * time.Second
	} else if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if s, err := strconv.Atoi(v); err == nil {
			d = time.Duration(s) * time.Second
		} else if t, err := http.ParseTime(v); err == nil {
			d = time.Until(t)
		}
	}
	if d <= 0 {
		d = c.poll
	}
	return min(d, maxWait)
}
