package admin

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// fuzzEndpoints are the admin endpoints that read a request body, by the fuzzer's selector.
var fuzzEndpoints = []string{"/admin/v1/allow", "/admin/v1/deny", "/admin/v1/reports/", "/admin/v1/vex"}

// FuzzAdminBodies posts arbitrary bodies to every admin endpoint that reads one (list entries, scan reports, VEX).
// Whatever the body, the answer is a success or a 4xx whose body is the OCI-shaped error with a code and a
// message, never a 5xx or a panic; a list entry that is accepted is listed as it was answered and can be removed.
func FuzzAdminBodies(f *testing.F) {
	d := digest.FromString("fuzz")
	f.Add(uint8(0), []byte(`{"match":"ghcr.io/acme/**","reason":"trusted team"}`), "")
	f.Add(uint8(1), []byte(`{"match":"docker.io/library/nginx@`+d.String()+`","reason":"CVE","expires":"2999-01-01T00:00:00Z"}`), "")
	f.Add(uint8(1), []byte(`{"match":"x/***","reason":""}`), "")
	f.Add(uint8(0), []byte(`{"match":"a/b","reason":"r","extra":1}`), "")
	f.Add(uint8(2), []byte(`{"SchemaVersion":2,"Results":[]}`), d.String())
	f.Add(uint8(2), []byte(`{}`), "md5:nope")
	f.Add(uint8(3), []byte(`{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":"CVE-1","products":["`+d.String()+`"],"status":"not_affected","justification":"component_not_present"}]}`), "")
	for _, name := range []string{"trivy-image.json", "openvex.json"} {
		if b, err := os.ReadFile(filepath.Join("..", "verifier", "report", "testdata", name)); err == nil {
			f.Add(uint8(2), b, d.String())
			f.Add(uint8(3), b, "")
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte, pathDigest string) {
		api := fullAPI(t, roleAuth{})
		path := fuzzEndpoints[int(which)%len(fuzzEndpoints)]
		if strings.HasSuffix(path, "/") {
			path += url.PathEscape(pathDigest)
		}
		code, answer := apiCall(t, api, http.MethodPost, path, "w", string(body))
		switch {
		case code == http.StatusNotFound && strings.HasSuffix(path, "/reports/"+url.PathEscape(pathDigest)) && pathDigest == "":
			return // no digest: no route
		case code >= 500:
			t.Fatalf("POST %s: %d %s", path, code, answer)
		case code >= 400:
			var eb errorBody
			if err := json.Unmarshal([]byte(answer), &eb); err != nil || len(eb.Errors) != 1 || eb.Errors[0].Code == "" || eb.Errors[0].Message == "" {
				t.Fatalf("POST %s: %d with body %q, not {\"errors\":[{code, message}]}", path, code, answer)
			}
			return
		case code != http.StatusCreated && code != http.StatusOK:
			t.Fatalf("POST %s: %d %s", path, code, answer)
		}
		if !json.Valid([]byte(answer)) {
			t.Fatalf("POST %s: %d with a body that is not JSON: %q", path, code, answer)
		}
		if path != "/admin/v1/allow" && path != "/admin/v1/deny" {
			return
		}
		var created struct {
			ID    string `json:"id"`
			Entry struct {
				Match string `json:"match"`
			} `json:"entry"`
		}
		if err := json.Unmarshal([]byte(answer), &created); err != nil || created.ID == "" {
			t.Fatalf("POST %s: %d %s: no id", path, code, answer)
		}
		code, listed := apiCall(t, api, http.MethodGet, path, "r", "")
		var list struct {
			Entries []struct{ ID, Match string } `json:"entries"`
		}
		if code != http.StatusOK || json.Unmarshal([]byte(listed), &list) != nil || len(list.Entries) != 1 ||
			list.Entries[0].ID != created.ID || list.Entries[0].Match != created.Entry.Match {
			t.Fatalf("GET %s after adding %s: %d %s", path, created.ID, code, listed)
		}
		if code, answer := apiCall(t, api, http.MethodDelete, path+"/"+url.PathEscape(created.ID), "w", ""); code != http.StatusNoContent {
			t.Fatalf("DELETE %s/%s: %d %s", path, created.ID, code, answer)
		}
	})
}
