package report

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
)

const (
	appDigest    = digest.Digest("sha256:a92db5bebcc5706cf8b71379e7105e3b8fce9bbabec9017dc1742c7f8d79158f")
	configDigest = digest.Digest("sha256:b58d4b43f876994215aaa685b3b2771d54645f7abeb2fee9d7f0b98adb38b95c")
)

func TestOpenVEXFixture(t *testing.T) {
	v, err := ParseOpenVEX(readFile(t, "openvex.json"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]digest.Digest{appDigest, configDigest}, v.Digests()); diff != "" {
		t.Errorf("digests (-want +got):\n%s", diff)
	}
	// In time order; the undated CVE-2024-0727 statement takes the document's timestamp.
	tests := []struct {
		dgst digest.Digest
		want []policy.VEXStatement
	}{
		{appDigest, []policy.VEXStatement{
			{
				IDs:      []string{"CVE-2024-24790", "https://nvd.nist.gov/vuln/detail/CVE-2024-24790", "GO-2024-2887"},
				Packages: []policy.VEXPackage{{Name: "stdlib", Version: "v1.22.3"}},
				Status:   "not_affected", Note: "not_affected (vulnerable_code_not_in_execute_path): app never calls netip.Addr.Is* on untrusted input",
				Time: at("2026-04-28T10:00:00Z"),
			},
			{IDs: []string{"CVE-2024-45337"}, Status: "not_affected", Note: "not_affected (vulnerable_code_not_present): the ssh server is not linked", Time: at("2026-04-28T10:00:00Z")},
			{IDs: []string{"CVE-2023-6129"}, Status: "under_investigation", Note: "under_investigation", Time: at("2026-04-28T10:00:00Z")},
			{IDs: []string{"CVE-2024-45337"}, Status: "affected", Note: "affected", Time: at("2026-04-29T09:30:00Z")},
		}},
		{configDigest, []policy.VEXStatement{
			{IDs: []string{"CVE-2024-0727"}, Status: "fixed", Note: "fixed: openssl rebuilt from 3.1.4-r5 sources", Time: at("2026-04-28T10:00:00Z")},
		}},
		{digest.FromString("other"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.dgst.String(), func(t *testing.T) {
			if diff := cmp.Diff(tt.want, v.For(tt.dgst), cmpReport); diff != "" {
				t.Errorf("statements (-want +got):\n%s", diff)
			}
			got, err := OpenVEXFor(readFile(t, "openvex.json"), tt.dgst)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpReport); diff != "" {
				t.Errorf("OpenVEXFor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenVEXForms(t *testing.T) {
	const app = `sha256:a92db5bebcc5706cf8b71379e7105e3b8fce9bbabec9017dc1742c7f8d79158f`
	tests := []struct {
		name    string
		in      string
		want    []policy.VEXStatement // For(appDigest)
		digests []digest.Digest
		err     error
	}{
		{
			name: "v0.0.1 bare strings",
			in: `{"@context":"https://openvex.dev/ns","statements":[{"vulnerability":"CVE-9","products":["pkg:oci/x@sha256%3A` + app[7:] +
				`"],"status":"not_affected","justification":"component_not_present"}]}`,
			want:    []policy.VEXStatement{{IDs: []string{"CVE-9"}, Status: "not_affected", Note: "not_affected (component_not_present)"}},
			digests: []digest.Digest{appDigest},
		},
		{
			name: "v0.0.1 subcomponents, listed beside the products, narrow every product",
			in: `{"@context":"https://openvex.dev/ns","statements":[{"vulnerability":"CVE-9","products":["` + app + `"],` +
				`"subcomponents":["pkg:apk/alpine/openssl@3.1.4-r0"],"status":"not_affected"}]}`,
			want: []policy.VEXStatement{{IDs: []string{"CVE-9"}, Status: "not_affected", Note: "not_affected",
				Packages: []policy.VEXPackage{{Name: "openssl", Version: "3.1.4-r0"}}}},
			digests: []digest.Digest{appDigest},
		},
		{
			name: "subcomponents name packages by purl, identifiers or plain name",
			in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"CVE-9"},"status":"fixed","products":[{"@id":"` + app + `","subcomponents":[
				{"@id":"pkg:apk/alpine/openssl@3.1.4-r0?arch=x86_64"},{"identifiers":{"purl":"pkg:golang/golang.org/x/crypto@v0.21.0"}},
				"busybox",{"@id":"pkg:maven/org.yaml/snakeyaml"},{"hashes":{"sha-256":"abc"}}]}]}]}`,
			want: []policy.VEXStatement{{IDs: []string{"CVE-9"}, Status: "fixed", Note: "fixed", Packages: []policy.VEXPackage{
				{Name: "openssl", Version: "3.1.4-r0"}, {Name: "golang.org/x/crypto", Version: "v0.21.0"}, {Name: "busybox"},
				{Name: "org.yaml:snakeyaml"}, {Name: "sha256:abc"}}}},
			digests: []digest.Digest{appDigest},
		},
		{
			name: "a product naming the image without subcomponents makes it whole-image; other images' subcomponents do not count",
			in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"CVE-9"},"status":"not_affected","products":[
				{"@id":"` + app + `","subcomponents":[{"@id":"openssl"}]},{"@id":"` + app + `"},{"@id":"sha256:` + configDigest.Encoded() + `","subcomponents":[{"@id":"zlib"}]}]},
				{"vulnerability":{"name":"CVE-10"},"status":"not_affected","products":[{"@id":"` + app + `","subcomponents":[{"@id":"openssl"}]},
				{"@id":"sha256:` + configDigest.Encoded() + `","subcomponents":[{"@id":"zlib"}]}]}]}`,
			want: []policy.VEXStatement{
				{IDs: []string{"CVE-9"}, Status: "not_affected", Note: "not_affected"},
				{IDs: []string{"CVE-10"}, Status: "not_affected", Note: "not_affected", Packages: []policy.VEXPackage{{Name: "openssl"}}},
			},
			digests: []digest.Digest{appDigest, configDigest},
		},
		{
			name: "time order, document order among equal times; junk product ids ignored",
			in: `{"@context":"https://openvex.dev/ns/v0.2.0","timestamp":"2026-01-02T00:00:00Z","statements":[
				{"vulnerability":{"name":"CVE-9"},"timestamp":"2026-01-03T00:00:00Z","products":[{"@id":"` + app + `"}],"status":"not_affected"},
				{"vulnerability":{"name":"CVE-9"},"products":[{"@id":"` + app + `"},{"@id":"sha256:short"}],"status":"affected"},
				{"vulnerability":{"name":"CVE-9"},"last_updated":"2026-01-02T00:00:00Z","products":[{"@id":"` + app + `"}],"status":"under_investigation"},
				{"vulnerability":{"name":"CVE-9"},"timestamp":"2026-01-01T00:00:00Z","products":[{"@id":"pkg:apk/alpine/x@1"}],"status":"fixed"}]}`,
			want: []policy.VEXStatement{
				{IDs: []string{"CVE-9"}, Status: "affected", Note: "affected", Time: at("2026-01-02T00:00:00Z")},
				{IDs: []string{"CVE-9"}, Status: "under_investigation", Note: "under_investigation", Time: at("2026-01-02T00:00:00Z")},
				{IDs: []string{"CVE-9"}, Status: "not_affected", Note: "not_affected", Time: at("2026-01-03T00:00:00Z")},
			},
			digests: []digest.Digest{appDigest},
		},
		{name: "not openvex", in: `{"@context":"https://example.com/vex"}`, err: ErrUnsupported},
		{name: "bad status", in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"C"},"status":"maybe"}]}`, err: ErrMalformed},
		{name: "no vulnerability", in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"status":"fixed"}]}`, err: ErrMalformed},
		{name: "vulnerability a number", in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":5,"status":"fixed"}]}`, err: ErrMalformed},
		{name: "subcomponent naming nothing", in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":"C","status":"fixed","products":[{"@id":"` + app + `","subcomponents":[{}]}]}]}`, err: ErrMalformed},
		{name: "subcomponent a number", in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":"C","status":"fixed","products":[{"@id":"` + app + `","subcomponents":[7]}]}]}`, err: ErrMalformed},
		{name: "not json", in: `{`, err: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := ParseOpenVEX([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, v.For(appDigest), cmpReport); diff != "" {
				t.Errorf("statements (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.digests, v.Digests()); diff != "" {
				t.Errorf("digests (-want +got):\n%s", diff)
			}
		})
	}
}
