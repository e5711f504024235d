package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Where the admin client verbs find the API and their token when no flag says.
const (
	envAdminURL     = "PORTCULLIS_ADMIN_URL"
	envAdminToken   = "PORTCULLIS_ADMIN_TOKEN"
	defaultAdminURL = "http://127.0.0.1:5002"
	// maxAdminResponse caps an answer read from the admin API (10000 audit records fit many times over).
	maxAdminResponse = 64 << 20
)

// adminFlags are the connection and output flags every admin verb takes.
type adminFlags struct {
	url       string
	tokenFile string
	caCert    string
	cert, key string
	timeout   time.Duration
	output    string
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "admin", "", "admin API URL (default $"+envAdminURL+", else "+defaultAdminURL+")")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the admin token (default: the token in $"+envAdminToken+")")
	fs.StringVar(&f.caCert, "cacert", "", "PEM CA bundle that signed the admin API's certificate (default: the system roots)")
	fs.StringVar(&f.cert, "cert", "", "PEM client certificate for mutual TLS (with --key)")
	fs.StringVar(&f.key, "key", "", "PEM private key of --cert")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for the admin API")
	fs.StringVar(&f.output, "o", "text", "output: text or json")
}

// json reports whether the output is JSON; another value than text or json is a usage error.
func (f *adminFlags) json() (bool, error) {
	switch f.output {
	case "text":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usageError{msg: fmt.Sprintf("-o: want text or json, not %q", f.output)}
}

// adminClient talks to the admin API: one base URL, one credential.
type adminClient struct {
	base  *url.URL
	token string
	http  *http.Client
}

// client builds the admin client the flags and the environment describe. A missing credential is a usage error.
func (f *adminFlags) client(stderr io.Writer) (*adminClient, error) {
	raw := f.url
	if raw == "" {
		raw = os.Getenv(envAdminURL)
	}
	if raw == "" {
		raw = defaultAdminURL
	}
	base, err := url.Parse(raw)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.User != nil || base.RawQuery != "" {
		return nil, usageError{msg: fmt.Sprintf("--admin: want http(s)://host:port of the admin API, not %q", raw)}
	}
	if base.Path == "" {
		base.Path = "/"
	}
	var token string
	switch {
	case f.tokenFile != "":
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		if token = strings.TrimRight(string(b), "\r\n"); token == "" {
			return nil, fmt.Errorf("--token-file %s is empty", f.tokenFile)
		}
	default:
		token = os.Getenv(envAdminToken)
	}
	if (f.cert == "") != (f.key == "") {
		return nil, usageError{msg: "--cert and --key go together"}
	}
	if token == "" && f.cert == "" {
		return nil, usageError{msg: "no admin credential: give --token-file FILE or set " + envAdminToken + ", or a client certificate with --cert and --key"}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.caCert != "" {
		pem, err := os.ReadFile(f.caCert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s holds no PEM certificate", f.caCert)
		}
	}
	if f.cert != "" {
		cert, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if base.Scheme == "http" && (f.caCert != "" || f.cert != "") {
		return nil, usageError{msg: "--cacert, --cert and --key need an https:// admin URL, not " + raw}
	}
	if base.Scheme == "http" && token != "" && !isLoopback(base.Hostname()) {
		fmt.Fprintf(stderr, "portcullis: warning: the admin token goes to %s over plain HTTP; anyone on the path can read it (set admin.tls)\n", base.Host)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &adminClient{base: base, token: token, http: &http.Client{
		Transport: tr,
		Timeout:   f.timeout,
		// A redirect would send the request, body and all, somewhere the user did not name.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}, nil
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// adminAPIError is an error answer of the admin API: the status and the first {"errors":[{"code","message"}]}
// entry, or the start of the body when it is not in that shape.
type adminAPIError struct {
	method, path string
	status       int
	code, msg    string
	retryAfter   string
}

func (e *adminAPIError) Error() string {
	s := fmt.Sprintf("%s %s: %d", e.method, e.path, e.status)
	if e.code != "" {
		s += " " + e.code
	}
	if e.msg != "" {
		s += ": " + e.msg
	}
	switch {
	case e.status == http.StatusNotFound && strings.HasPrefix(e.msg, "no admin route"):
		s += " (this Portcullis does not serve that endpoint: it is older than this CLI, or the feature is off)"
	case e.status == http.StatusUnauthorized:
		s += " (check --token-file or " + envAdminToken + ", or the client certificate)"
	case e.retryAfter != "":
		s += " (retry after " + e.retryAfter + "s)"
	}
	return s
}

// do sends one request and returns the answer's body; a status of 400 or more is an *adminAPIError.
func (c *adminClient) do(ctx context.Context, method string, segs []string, query url.Values, body []byte, header http.Header) ([]byte, error) {
	u := c.base.JoinPath(segs...)
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API %s: %w", c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminResponse+1))
	if err != nil {
		return nil, fmt.Errorf("admin API %s: reading the answer: %w", c.base.Redacted(), err)
	}
	if len(b) > maxAdminResponse {
		return nil, fmt.Errorf("admin API %s: the answer is over %d bytes", c.base.Redacted(), maxAdminResponse)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, fmt.Errorf("%s %s: %d redirect to %q, not followed: set --admin to the admin API's own address", method, u.Path, resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp.StatusCode < 400 {
		return b, nil
	}
	apiErr := &adminAPIError{method: method, path: u.Path, status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	var eb struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if json.Unmarshal(b, &eb) == nil && len(eb.Errors) > 0 {
		apiErr.code, apiErr.msg = eb.Errors[0].Code, eb.Errors[0].Message
	} else {
		apiErr.msg = strings.TrimSpace(string(b[:min(len(b), 200)]))
	}
	return nil, apiErr
}

// printJSON writes an answer as indented JSON.
func printJSON(w io.Writer, b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(b), "", "  "); err != nil {
		return fmt.Errorf("the admin API answered with something other than JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}
