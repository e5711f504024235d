package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseChallengeHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []challenge
	}{
		{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`,
			[]challenge{{"bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/alpine:pull"}}}},
		{`Basic realm="Registry Realm"`, []challenge{{"basic", map[string]string{"realm": "Registry Realm"}}}},
		{`Basic`, []challenge{{"basic", map[string]string{}}}},
		{`Basic realm="a", Bearer realm="b" , service=svc`, []challenge{
			{"basic", map[string]string{"realm": "a"}},
			{"bearer", map[string]string{"realm": "b", "service": "svc"}}}},
		{`BEARER Realm = "x\"y\\z"`, []challenge{{"bearer", map[string]string{"realm": `x"y\z`}}}},
		{`Negotiate abc==, Basic realm=x`, []challenge{{"negotiate", map[string]string{"abc": ""}}, {"basic", map[string]string{"realm": "x"}}}},
		{`Bearer realm="unterminated`, []challenge{{"bearer", map[string]string{"realm": "unterminated"}}}},
		{``, nil},
		{`,,, `, nil},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := parseChallengeHeader(tc.in)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(challenge{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseChallengeHeader(f *testing.F) {
	for _, s := range []string{`Bearer realm="x",service="y"`, `Basic`, `a b=c, d="e\"`, `=,=,"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range parseChallengeHeader(s) {
			if c.scheme == "" || c.scheme != strings.ToLower(c.scheme) {
				t.Fatalf("bad scheme %q", c.scheme)
			}
		}
	})
}

func TestScopeFor(t *testing.T) {
	for _, tc := range []struct{ path, prefix, want string }{
		{"/v2/", "", ""},
		{"/v2/library/alpine/manifests/3.20", "", "repository:library/alpine:pull"},
		{"/v2/a/blobs/sha256:abc", "", "repository:a:pull"},
		{"/v2/a/b/c/tags/list", "", "repository:a/b/c:pull"},
		{"/v2/a/referrers/sha256:abc", "", "repository:a:pull"},
		{"/v2/foo/blobs/bar/manifests/x", "", "repository:foo/blobs/bar:pull"},
		{"/mirror/v2/a/manifests/x", "/mirror", "repository:a:pull"},
		{"/v2/_catalog", "", ""},
		{"/other", "", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := scopeFor(tc.path, tc.prefix); got != tc.want {
				t.Errorf("scopeFor(%q) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

func TestNextLast(t *testing.T) {
	for _, tc := range []struct {
		name  string
		links []string
		want  string
	}{
		{"none", nil, ""},
		{"docker", []string{`</v2/a/tags/list?n=2&last=b>; rel="next"`}, "b"},
		{"unquoted rel", []string{`</v2/a/tags/list?last=b%2Bc&n=2>; rel=next`}, "b+c"},
		{"absolute", []string{`<https://r.example/v2/a/tags/list?n=1&last=x>; rel="next"`}, "x"},
		{"several", []string{`</p?last=a>; rel="prev", </n?last=z>; rel="next"`}, "z"},
		{"no next", []string{`</p?last=a>; rel="prev"`}, ""},
		{"garbage", []string{`nonsense; rel="next"`}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextLast(tc.links); got != tc.want {
				t.Errorf("nextLast(%q) = %q, want %q", tc.links, got, tc.want)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	sentinels := []error{ErrNotFound, ErrUnauthorized, ErrDenied, ErrUnavailable}
	for _, tc := range []struct {
		e    Error
		want error
	}{
		{Error{Status: 404}, ErrNotFound},
		{Error{Status: 400, Code: "NAME_UNKNOWN"}, ErrNotFound},
		{Error{Status: 404, Code: "BLOB_UNKNOWN"}, ErrNotFound},
		{Error{Status: 401}, ErrUnauthorized},
		{Error{Status: 403, Code: "DENIED"}, ErrDenied},
		{Error{Status: 500}, ErrUnavailable},
		{Error{Status: 429, Code: "TOOMANYREQUESTS"}, ErrUnavailable},
		{Error{Status: 400}, nil},
	} {
		t.Run(fmt.Sprint(tc.e.Status, tc.e.Code), func(t *testing.T) {
			err := fmt.Errorf("wrapped: %w", &tc.e)
			for _, s := range sentinels {
				if got := errors.Is(err, s); got != (s == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, s, got)
				}
			}
		})
	}
}

func TestNewErrorBody(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Error
	}{
		{"oci", `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}`, Error{Status: 404, Code: "MANIFEST_UNKNOWN", Message: "manifest unknown", Op: "op"}},
		{"text", "not here\n", Error{Status: 404, Message: "not here", Op: "op"}},
		{"binary", "\x00\x01", Error{Status: 404, Op: "op"}},
		{"huge", strings.Repeat("x", 1<<20), Error{Status: 404, Message: strings.Repeat("x", 200) + "...", Op: "op"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &http.Response{StatusCode: 404, Body: http.NoBody}
			resp.Body = readCloser{strings.NewReader(tc.body)}
			if diff := cmp.Diff(tc.want, *newError("op", resp)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

func TestTokenLifetime(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want time.Duration
	}{
		{0, 50 * time.Second},
		{-5, 50 * time.Second},
		{300, 290 * time.Second},
		{20, 15 * time.Second},
		{1, time.Second},
	} {
		if got := tokenLifetime(tc.in); got != tc.want {
			t.Errorf("tokenLifetime(%d) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
