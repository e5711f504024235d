package configs

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEndpoint(t *testing.T) {
	tests := []struct {
		name    string
		up      Upstream
		want    string
		wantErr string
	}{
		{name: "docker.io default", up: Upstream{Name: "docker.io"}, want: "https://registry-1.docker.io"},
		{name: "other host default", up: Upstream{Name: "ghcr.io"}, want: "https://ghcr.io"},
		{name: "host with port default", up: Upstream{Name: "localhost:5000"}, want: "https://localhost:5000"},
		{name: "explicit http", up: Upstream{Name: "docker.io", URL: "http://127.0.0.1:5001"}, want: "http://127.0.0.1:5001"},
		{name: "trailing slash dropped", up: Upstream{Name: "quay.io", URL: "https://quay.io/"}, want: "https://quay.io"},
		{name: "ipv6", up: Upstream{Name: "[::1]:5000", URL: "http://[::1]:5000"}, want: "http://[::1]:5000"},
		{name: "bad scheme", up: Upstream{Name: "a.io", URL: "ftp://a.io"}, wantErr: "scheme must be http or https"},
		{name: "no scheme", up: Upstream{Name: "a.io", URL: "a.io"}, wantErr: "scheme must be http or https"},
		{name: "path", up: Upstream{Name: "a.io", URL: "https://a.io/mirror"}, wantErr: "must not have a path"},
		{name: "query", up: Upstream{Name: "a.io", URL: "https://a.io?x=1"}, wantErr: "must not have a query or fragment"},
		{name: "bad port", up: Upstream{Name: "a.io", URL: "https://a.io:99999"}, wantErr: "invalid port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.up.Endpoint()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Endpoint() = %v, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Errorf("Endpoint() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCheckHost(t *testing.T) {
	valid := []string{"docker.io", "ghcr.io", "localhost", "localhost:5000", "127.0.0.1:5000",
		"registry.internal.example.com", "a-b.c", "[::1]:5000", "[fe80::1]"}
	invalid := []string{"", "Docker.io", "https://ghcr.io", "ghcr.io/acme", "a..b", "-a.io", "a-.io",
		"a.io:", "a.io:x", "a.io:070", "a.io:65536", "[::1", "[1.2.3.4]:5", "[::1]5000", "[::1]:", "user@a.io",
		"a.io.", "a_b.io"}
	for _, h := range valid {
		if err := checkHost(h); err != nil {
			t.Errorf("checkHost(%q) = %v, want nil", h, err)
		}
	}
	for _, h := range invalid {
		if err := checkHost(h); err == nil {
			t.Errorf("checkHost(%q) = nil, want an error", h)
		}
	}
}

func TestCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	hub := write("hub.json", `{"auths": {"https://index.docker.io/v1/": {"auth": "`+b64("hubuser:hub:pass")+`"}}}`)
	multi := write("multi.json", `{"auths": {
		"https://ghcr.io": {"auth": "`+b64("wrong:one")+`"},
		"ghcr.io": {"auth": "`+b64("gh:token")+`"},
		"quay.io": {"username": "qu", "password": "qp"},
		"localhost:5000": {"auth": "`+b64("lo:cal")+`"},
		"empty.io": {},
		"notb64.io": {"auth": "%%%"},
		"nocolon.io": {"auth": "`+b64("justuser")+`"},
		"idtoken.io": {"identitytoken": "abc"}
	}, "credHelpers": {"gcr.io": "gcloud"}}`)
	store := write("store.json", `{"auths": {"ghcr.io": {}}, "credsStore": "desktop"}`)
	notJSON := write("bad.json", `auths:`)
	pw := write("pw", "filepass\r\n")

	tests := []struct {
		name     string
		up       Upstream
		wantUser string
		wantPass string
		wantErr  string
	}{
		{name: "anonymous", up: Upstream{Name: "ghcr.io"}},
		{name: "inline", up: Upstream{Name: "ghcr.io", Username: "u", Password: "p"}, wantUser: "u", wantPass: "p"},
		{name: "password file", up: Upstream{Name: "ghcr.io", Username: "u", PasswordFile: pw}, wantUser: "u", wantPass: "filepass"},
		{name: "docker hub under its CLI key", up: Upstream{Name: "docker.io", DockerConfig: hub}, wantUser: "hubuser", wantPass: "hub:pass"},
		{name: "exact key wins", up: Upstream{Name: "ghcr.io", DockerConfig: multi}, wantUser: "gh", wantPass: "token"},
		{name: "username and password fields", up: Upstream{Name: "quay.io", DockerConfig: multi}, wantUser: "qu", wantPass: "qp"},
		{name: "host with port", up: Upstream{Name: "localhost:5000", DockerConfig: multi}, wantUser: "lo", wantPass: "cal"},
		{name: "no entry", up: Upstream{Name: "other.io", DockerConfig: multi}, wantErr: "no credentials for other.io"},
		{name: "empty entry", up: Upstream{Name: "empty.io", DockerConfig: multi}, wantErr: "holds no credentials"},
		{name: "bad base64", up: Upstream{Name: "notb64.io", DockerConfig: multi}, wantErr: "is not base64"},
		{name: "no colon", up: Upstream{Name: "nocolon.io", DockerConfig: multi}, wantErr: "is not user:password"},
		{name: "identity token", up: Upstream{Name: "idtoken.io", DockerConfig: multi}, wantErr: "identity token"},
		{name: "cred helper", up: Upstream{Name: "gcr.io", DockerConfig: multi}, wantErr: `credential helper "gcloud" for gcr.io is not supported`},
		{name: "creds store", up: Upstream{Name: "ghcr.io", DockerConfig: store}, wantErr: `credsStore "desktop"`},
		{name: "creds store, no entry", up: Upstream{Name: "quay.io", DockerConfig: store}, wantErr: `credsStore "desktop" is not supported`},
		{name: "not json", up: Upstream{Name: "ghcr.io", DockerConfig: notJSON}, wantErr: "not a Docker config.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, pass, err := tt.up.Credentials()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Credentials() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if user != tt.wantUser || pass != tt.wantPass {
				t.Errorf("Credentials() = %q, %q; want %q, %q", user, pass, tt.wantUser, tt.wantPass)
			}
		})
	}

	// CheckFiles reports the same problems against the field.
	c := Default()
	c.Upstreams[0].DockerConfig = store
	c.Upstreams[0].Name = "ghcr.io"
	if err := c.CheckFiles(); err == nil || !strings.Contains(err.Error(), "upstreams[0].dockerConfig: ") {
		t.Errorf("CheckFiles() = %v", err)
	}
}

func TestPrivateAddressesAllowed(t *testing.T) {
	for _, tc := range []struct {
		name string
		u    Upstream
		want bool
	}{
		{"neither", Upstream{}, false},
		{"allowPrivateAddresses", Upstream{AllowPrivateAddresses: true}, true},
		{"old name allowPrivateTokenRealm", Upstream{AllowPrivateTokenRealm: true}, true},
		{"both", Upstream{AllowPrivateAddresses: true, AllowPrivateTokenRealm: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.u.PrivateAddressesAllowed(); got != tc.want {
				t.Errorf("PrivateAddressesAllowed() = %v, want %v", got, tc.want)
			}
		})
	}
}
