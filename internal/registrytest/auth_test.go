package registrytest

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestBearerAuth(t *testing.T) {
	tests := []struct {
		name     string
		user     string
		pass     string
		tls      bool
		auth     authn.Authenticator
		wantPull bool
	}{
		{name: "basic creds", user: "alice", pass: "s3cret", auth: &authn.Basic{Username: "alice", Password: "s3cret"}, wantPull: true},
		{name: "basic creds over TLS", user: "alice", pass: "s3cret", tls: true, auth: &authn.Basic{Username: "alice", Password: "s3cret"}, wantPull: true},
		{name: "wrong password", user: "alice", pass: "s3cret", auth: &authn.Basic{Username: "alice", Password: "nope"}},
		{name: "no creds when required", user: "alice", pass: "s3cret", auth: authn.Anonymous},
		{name: "anonymous tokens", auth: authn.Anonymous, wantPull: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := []Option{WithBearerAuth(tt.user, tt.pass)}
			if tt.tls {
				opts = append(opts, WithTLS())
			}
			r := New(t, opts...)
			img := r.PushRandomImage(t, "team/app:v1", 1, 64)
			if n := r.TokensIssued(); n != 0 {
				t.Errorf("seeding issued %d tokens, want 0", n)
			}

			resp := get(t, r, "/v2/team/app/manifests/v1")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("unauthenticated GET = %d, want 401", resp.StatusCode)
			}
			scheme := "http"
			if tt.tls {
				scheme = "https"
			}
			tokenURL := fmt.Sprintf("%s://localhost:%s/token", scheme, r.tokenSrv.URL[strings.LastIndex(r.tokenSrv.URL, ":")+1:])
			if got := r.TokenRealm(); got != tokenURL {
				t.Errorf("TokenRealm = %s, want %s", got, tokenURL)
			}
			want := `Bearer realm="` + tokenURL + `",service="registrytest",scope="repository:team/app:pull"`
			if got := resp.Header.Get("WWW-Authenticate"); got != want {
				t.Errorf("challenge = %s, want %s", got, want)
			}
			if got := get(t, r, "/v2/").Header.Get("WWW-Authenticate"); got != `Bearer realm="`+tokenURL+`",service="registrytest"` {
				t.Errorf("ping challenge = %s", got)
			}

			got, err := remote.Image(mustRef(t, r.Ref("team/app:v1")), remoteOpts(t, r, remote.WithAuth(tt.auth))...)
			if !tt.wantPull {
				if err == nil {
					t.Fatal("pull succeeded, want an auth error")
				}
				if n := r.TokensIssued(); n != 0 {
					t.Errorf("TokensIssued = %d, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if digestOf(t, got) != digestOf(t, img) {
				t.Errorf("pulled digest differs")
			}
			if n := r.TokensIssued(); n < 1 {
				t.Errorf("TokensIssued = %d, want >= 1", n)
			}
		})
	}
}

func TestTokenServerOAuthForm(t *testing.T) {
	t.Parallel()
	r := New(t, WithBearerAuth("alice", "s3cret"))
	c := &http.Client{Transport: transport(r)}
	for _, tc := range []struct {
		pass string
		want int
	}{{"s3cret", http.StatusOK}, {"nope", http.StatusUnauthorized}} {
		resp, err := c.PostForm(r.tokenSrv.URL+"/token", map[string][]string{
			"grant_type": {"password"}, "username": {"alice"}, "password": {tc.pass},
			"service": {"registrytest"}, "scope": {"repository:a:pull"},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("POST /token with %q = %d, want %d", tc.pass, resp.StatusCode, tc.want)
		}
	}
	if n := r.TokensIssued(); n != 1 {
		t.Errorf("TokensIssued = %d, want 1", n)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	r := New(t, WithTLS())
	if r.CertPool() == nil {
		t.Fatal("CertPool is nil with WithTLS")
	}
	if r.URL().Scheme != "https" {
		t.Errorf("scheme = %s, want https", r.URL().Scheme)
	}
	img := r.PushRandomImage(t, "a:v1", 1, 64)
	got, err := remote.Image(mustRef(t, r.Ref("a:v1")), remoteOpts(t, r)...)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, got) != digestOf(t, img) {
		t.Error("pulled digest differs")
	}
	// Without the pool the certificate is not trusted.
	if _, err := http.Get(r.URL().String() + "/v2/"); err == nil {
		t.Error("GET without CertPool succeeded, want a certificate error")
	}
	if New(t).CertPool() != nil {
		t.Error("CertPool without WithTLS is not nil")
	}
}
