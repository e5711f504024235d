package configs

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// hostLabels matches a lowercase DNS name: dot-separated labels of letters, digits and inner
// hyphens.
var hostLabels = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`)

// checkHost checks a registry host as clients name it: host[:port], lowercase, no scheme and
// no path. IPv6 literals go in brackets.
func checkHost(name string) error {
	switch {
	case name == "":
		return errors.New("is required")
	case strings.Contains(name, "://"):
		return fmt.Errorf("%q must be a registry host without a scheme (put the endpoint in url)", name)
	case strings.ContainsAny(name, "/?#@"):
		return fmt.Errorf("%q must be a registry host (host[:port]) without a path", name)
	}
	host, port := name, ""
	if strings.HasPrefix(name, "[") {
		end := strings.IndexByte(name, ']')
		if end < 0 {
			return fmt.Errorf("%q: unclosed IPv6 bracket", name)
		}
		host, port = name[1:end], strings.TrimPrefix(name[end+1:], ":")
		if ip := net.ParseIP(host); ip == nil || ip.To4() != nil || name[end+1:] == ":" ||
			(name[end+1:] != "" && !strings.HasPrefix(name[end+1:], ":")) {
			return fmt.Errorf("%q is not a valid [IPv6]:port host", name)
		}
	} else if h, p, ok := strings.Cut(name, ":"); ok {
		host, port = h, p
		if port == "" {
			return fmt.Errorf("%q has an empty port", name)
		}
		if !hostLabels.MatchString(host) {
			return fmt.Errorf("%q is not a valid lowercase host name", name)
		}
	} else if !hostLabels.MatchString(host) {
		return fmt.Errorf("%q is not a valid lowercase host name", name)
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
			return fmt.Errorf("%q has an invalid port", name)
		}
	}
	return nil
}

// Endpoint returns the resolved upstream URL: URL when set, else https://registry-1.docker.io
// for docker.io and https://<name> for any other name. The result has no trailing slash. It
// fails unless the scheme is http or https, there is a host, and there is no path beyond "/",
// no query, fragment or user info.
func (u Upstream) Endpoint() (*url.URL, error) {
	raw := u.URL
	if raw == "" {
		if u.Name == defaultUpstreamName {
			raw = dockerHubURL
		} else {
			raw = "https://" + u.Name
		}
	}
	e, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL %q", raw)
	}
	switch {
	case e.Scheme != "http" && e.Scheme != "https":
		return nil, errors.New("scheme must be http or https")
	case e.Host == "" || e.Hostname() == "":
		return nil, fmt.Errorf("%q has no host", raw)
	case e.User != nil:
		return nil, errors.New("must not carry credentials (use username and password)")
	case e.RawQuery != "" || e.ForceQuery || e.Fragment != "":
		return nil, errors.New("must not have a query or fragment")
	case e.Path != "" && e.Path != "/":
		return nil, fmt.Errorf("must not have a path (got %q): the registry API lives at /v2/", e.Path)
	}
	if p := e.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("invalid port %q", p)
		}
	}
	e.Path, e.RawPath = "", ""
	return e, nil
}

// Credentials returns the basic credentials for this upstream: from DockerConfig when set,
// otherwise Username with Password or the contents of PasswordFile (one trailing newline
// removed). Both are "" for anonymous access. It reads files, so it can fail.
func (u Upstream) Credentials() (username, password string, err error) {
	if u.DockerConfig != "" {
		return dockerCredentials(u.DockerConfig, u.Name)
	}
	if u.PasswordFile != "" {
		b, err := os.ReadFile(u.PasswordFile)
		if err != nil {
			return "", "", err
		}
		pw := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pw == "" {
			return "", "", fmt.Errorf("password file %s is empty", u.PasswordFile)
		}
		return u.Username, pw, nil
	}
	return u.Username, u.Password, nil
}

// dockerConfigFile is the part of a Docker config.json that holds credentials.
type dockerConfigFile struct {
	Auths       map[string]dockerAuth `json:"auths"`
	CredHelpers map[string]string     `json:"credHelpers"`
	CredsStore  string                `json:"credsStore"`
}

type dockerAuth struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// dockerHubKeys are the names Docker Hub credentials are stored under.
var dockerHubKeys = []string{"index.docker.io", "docker.io", "registry-1.docker.io"}

// dockerCredentials looks up host in the Docker config.json at path. An entry matches when its
// key, with any scheme and path removed, is host (Docker Hub: any of its names, including the
// CLI's "https://index.docker.io/v1/"). Credential helpers are refused, not run.
func dockerCredentials(path, host string) (string, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var cf dockerConfigFile
	if err := json.Unmarshal(b, &cf); err != nil {
		return "", "", fmt.Errorf("%s: not a Docker config.json: %v", path, err)
	}
	hosts := []string{host}
	if host == defaultUpstreamName {
		hosts = dockerHubKeys
	}
	for _, h := range hosts {
		if helper, ok := cf.CredHelpers[h]; ok {
			return "", "", fmt.Errorf("%s: credential helper %q for %s is not supported; put the credentials in auths", path, helper, h)
		}
	}
	// An exact key wins; otherwise the first matching key in sorted order, for determinism.
	var entry *dockerAuth
	for _, key := range slices.Sorted(maps.Keys(cf.Auths)) {
		k := key
		if _, rest, ok := strings.Cut(k, "://"); ok {
			k = rest
		}
		k, _, _ = strings.Cut(k, "/")
		if slices.ContainsFunc(hosts, func(h string) bool { return strings.EqualFold(k, h) }) &&
			(entry == nil || key == host) {
			a := cf.Auths[key]
			entry = &a
		}
	}
	switch {
	case entry == nil && cf.CredsStore != "":
		return "", "", fmt.Errorf("%s: no credentials for %s in auths, and credsStore %q is not supported", path, host, cf.CredsStore)
	case entry == nil:
		return "", "", fmt.Errorf("%s: no credentials for %s", path, host)
	case entry.Auth != "":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(entry.Auth))
		if err != nil {
			return "", "", fmt.Errorf("%s: auths[%s].auth is not base64", path, host)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", fmt.Errorf("%s: auths[%s].auth is not user:password", path, host)
		}
		return user, pass, nil
	case entry.Username != "" || entry.Password != "":
		return entry.Username, entry.Password, nil
	case entry.IdentityToken != "":
		return "", "", fmt.Errorf("%s: auths[%s] holds only an identity token, which is not supported", path, host)
	case cf.CredsStore != "":
		return "", "", fmt.Errorf("%s: credentials for %s are in credsStore %q, which is not supported", path, host, cf.CredsStore)
	}
	return "", "", fmt.Errorf("%s: auths[%s] holds no credentials", path, host)
}
