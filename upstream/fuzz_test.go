package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzParseTokenResponse: a token server's answer gives a non-empty token or a clear error, never a panic; the
// lifetime it implies is always usable and bounded (1s to 24h); and a token written in either spelling reads back.
func FuzzParseTokenResponse(f *testing.F) {
	for _, s := range []string{
		`{"token":"abc","expires_in":300}`,
		`{"access_token":"xyz","expires_in":-5}`,
		`{"token":"","access_token":"b","expires_in":99999999999}`,
		`{"token":null}`,
		`[]`,
		`{"expires_in":"60"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		value, expiresIn, err := parseTokenResponse(b)
		if err != nil {
			if value != "" || err.Error() == "" {
				t.Fatalf("error %q with token %q", err, value)
			}
			return
		}
		if value == "" {
			t.Fatal("no error and no token")
		}
		if ttl := tokenLifetime(expiresIn); ttl < minTokenTTLForUse || ttl > 24*time.Hour {
			t.Fatalf("expires_in %d gives a lifetime of %s", expiresIn, ttl)
		}
		for _, field := range []string{"token", "access_token"} {
			out, err := json.Marshal(map[string]any{field: value, "expires_in": expiresIn})
			if err != nil {
				t.Fatal(err)
			}
			v, e, err := parseTokenResponse(out)
			if err != nil || v != value || e != expiresIn {
				t.Fatalf("round trip through %q: %q %d %v, want %q %d", field, v, e, err, value, expiresIn)
			}
		}
	})
}

// answer is a transport that answers every request with one canned response: the upstream under test.
type answer struct {
	header http.Header
	body   []byte
}

func (a answer) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: a.header.Clone(), Body: io.NopCloser(bytes.NewReader(a.body)),
		ContentLength: -1, Request: req}, nil
}

func fuzzClient(t *testing.T, rt http.RoundTripper) *Client {
	t.Helper()
	c, err := New("fuzz.example", &url.URL{Scheme: "https", Host: "fuzz.example"}, WithTransport(rt), WithRetries(0, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// FuzzReferrers: whatever an upstream answers to a referrers request (body, Content-Type, OCI-Filters-Applied), the
// client says "no referrers API", or returns an OCI index, filtered to the artifact type asked for unless the
// upstream says it filtered, or a clear error; never a panic.
func FuzzReferrers(f *testing.F) {
	d := digest.FromString("a")
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+d.String()+`","size":1,"artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json"}]}`),
		ocispec.MediaTypeImageIndex, "", "application/vnd.dev.cosign.artifact.sig.v1+json")
	f.Add([]byte(`{"manifests":[{"digest":"`+d.String()+`","artifactType":"x"},{"digest":"`+d.String()+`"}]}`), ocispec.MediaTypeImageIndex, "", "x")
	f.Add([]byte(`{"manifests":[{"digest":"`+d.String()+`","artifactType":"x"},{"digest":"`+d.String()+`"}]}`), ocispec.MediaTypeImageIndex, "artifactType", "x")
	f.Add([]byte(`<html>not found</html>`), "text/html", "", "")
	f.Add([]byte(`{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":null}`), "application/json", "", "y")
	f.Fuzz(func(t *testing.T, body []byte, contentType, filters, artifactType string) {
		h := http.Header{}
		h.Set("Content-Type", contentType)
		if filters != "" {
			h.Set("OCI-Filters-Applied", filters)
		}
		c := fuzzClient(t, answer{header: h, body: body})
		idx, supported, err := c.Referrers(context.Background(), "acme/app", d, artifactType)
		switch {
		case err != nil:
			if supported || idx != nil || !strings.HasPrefix(err.Error(), "upstream ") {
				t.Fatalf("error %q with supported=%v", err, supported)
			}
			return
		case !supported:
			return
		}
		var got ocispec.Index
		if err := json.Unmarshal(idx, &got); err != nil {
			t.Fatalf("returned index is not JSON: %v", err)
		}
		if artifactType != "" && !filterApplied(h, "artifactType") {
			for _, m := range got.Manifests {
				if m.ArtifactType != artifactType {
					t.Fatalf("filtered index lists artifactType %q, asked for %q", m.ArtifactType, artifactType)
				}
			}
		}
	})
}

// FuzzTags: a tag list answer gives tags (never nil) and a next page marker, or an error that names the upstream.
func FuzzTags(f *testing.F) {
	f.Add([]byte(`{"name":"acme/app","tags":["v1","v2"]}`), `</v2/acme/app/tags/list?n=2&last=v2>; rel="next"`)
	f.Add([]byte(`{"tags":null}`), `<x>; rel=next, <y?last=z>; rel="next"`)
	f.Add([]byte(`{"tags":[1]}`), "")
	f.Fuzz(func(t *testing.T, body []byte, link string) {
		h := http.Header{"Content-Type": {"application/json"}}
		if link != "" {
			h.Set("Link", link)
		}
		tags, _, err := fuzzClient(t, answer{header: h, body: body}).Tags(context.Background(), "acme/app", 0, "")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "upstream fuzz.example tags acme/app") {
				t.Fatalf("error %q does not name the upstream and the operation", err)
			}
			return
		}
		if tags == nil {
			t.Fatal("nil tags without an error")
		}
	})
}

func TestParseTokenResponse(t *testing.T) {
	for _, tc := range []struct {
		name, body, value string
		expiresIn         int64
		err               string
	}{
		{"docker", `{"token":"abc","expires_in":300}`, "abc", 300, ""},
		{"oauth2", `{"access_token":"xyz"}`, "xyz", 0, ""},
		{"token wins", `{"token":"a","access_token":"b","expires_in":5}`, "a", 5, ""},
		{"no token", `{"expires_in":5}`, "", 0, "response has no token"},
		{"not JSON", `<html>`, "", 0, "bad JSON"},
		{"expires_in a string", `{"token":"a","expires_in":"60"}`, "", 0, "bad JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, e, err := parseTokenResponse([]byte(tc.body))
			if v != tc.value || e != tc.expiresIn || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("parseTokenResponse(%s) = %q, %d, %v; want %q, %d, error containing %q", tc.body, v, e, err, tc.value, tc.expiresIn, tc.err)
			}
		})
	}
}
