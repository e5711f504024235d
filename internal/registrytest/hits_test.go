package registrytest

import (
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		path string
		kind Kind
		repo string
	}{
		{name: "ping", path: "/v2/", kind: KindPing},
		{name: "ping without slash", path: "/v2", kind: KindPing},
		{name: "manifest by tag", path: "/v2/library/alpine/manifests/3.20", kind: KindManifest, repo: "library/alpine"},
		{name: "manifest by digest", path: "/v2/a/manifests/sha256:abc", kind: KindManifest, repo: "a"},
		{name: "blob", path: "/v2/a/b/c/blobs/sha256:abc", kind: KindBlob, repo: "a/b/c"},
		{name: "repo named blobs", path: "/v2/x/blobs/blobs/sha256:abc", kind: KindBlob, repo: "x/blobs"},
		{name: "upload start", path: "/v2/a/blobs/uploads/", kind: KindOther, repo: "a"},
		{name: "upload chunk", path: "/v2/a/blobs/uploads/1234-uuid", kind: KindOther, repo: "a"},
		{name: "tags", path: "/v2/a/b/tags/list", kind: KindTags, repo: "a/b"},
		{name: "referrers", path: "/v2/a/referrers/sha256:abc", kind: KindReferrers, repo: "a"},
		{name: "catalog", path: "/v2/_catalog", kind: KindOther},
		{name: "not v2", path: "/token", kind: KindOther},
		{name: "v2 prefix only", path: "/v2x/a/manifests/b", kind: KindOther},
		{name: "too short", path: "/v2/manifests/x", kind: KindOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, repo := classify(tt.path)
			if kind != tt.kind || repo != tt.repo {
				t.Errorf("classify(%q) = %q, %q; want %q, %q", tt.path, kind, repo, tt.kind, tt.repo)
			}
		})
	}
}

func TestHitsCount(t *testing.T) {
	h := newHits()
	for _, req := range [][2]string{
		{"GET", "/v2/"},
		{"HEAD", "/v2/a/manifests/v1"},
		{"GET", "/v2/a/manifests/v1"},
		{"GET", "/v2/a/blobs/sha256:1"},
		{"GET", "/v2/a/blobs/sha256:1"},
		{"HEAD", "/v2/a/blobs/sha256:2"},
	} {
		h.record(httptest.NewRequest(req[0], req[1]+"?ns=example.com", nil))
	}
	got := map[string]int{
		"GET ping":        h.Count("GET", KindPing),
		"HEAD manifest":   h.Count("HEAD", KindManifest),
		"any manifest":    h.Count("", KindManifest),
		"GET blob":        h.Count("GET", KindBlob),
		"any blob":        h.Count("", KindBlob),
		"GET tags":        h.Count("GET", KindTags),
		"GET blob path":   h.CountPath("GET", "/v2/a/blobs/sha256:1"),
		"any blob path":   h.CountPath("", "/v2/a/blobs/sha256:2"),
		"path with query": h.CountPath("GET", "/v2/a/blobs/sha256:1?ns=example.com"),
		"total":           h.Total(),
	}
	want := map[string]int{
		"GET ping":        1,
		"HEAD manifest":   1,
		"any manifest":    2,
		"GET blob":        2,
		"any blob":        3,
		"GET tags":        0,
		"GET blob path":   2,
		"any blob path":   1,
		"path with query": 0,
		"total":           6,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	h.Reset()
	if n := h.Total(); n != 0 {
		t.Errorf("Total after Reset = %d, want 0", n)
	}
	if n := h.Count("", KindBlob); n != 0 {
		t.Errorf("Count after Reset = %d, want 0", n)
	}
}
