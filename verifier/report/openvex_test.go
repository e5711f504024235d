package report

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
)

const (
	appDigest    = digest.Digest("sha256:a92db5bebcc5706cf8b71379e7105e3b8fce9bbabec9017dc1742c7f8d79158f")
	configDigest = digest.Digest("sha256:b58d4b43f876994215aaa685b3b2771d54645f7abeb2fee9d7f0b98adb38b95c")
)

func TestParseOpenVEX(t *testing.T) {
	got, digests, err := ParseOpenVEX(readFile(t, "openvex.json"))
	if err != nil {
		t.Fatal(err)
	}
	netip := "not_affected (vulnerable_code_not_in_execute_path): app never calls netip.Addr.Is* on untrusted input"
	want := map[string]string{
		"CVE-2024-24790": netip,
		"https://nvd.nist.gov/vuln/detail/CVE-2024-24790": netip,
		"GO-2024-2887":  netip,
		"CVE-2024-0727": "fixed: openssl rebuilt from 3.1.4-r5 sources",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]digest.Digest{appDigest, configDigest}, digests); diff != "" {
		t.Errorf("digests (-want +got):\n%s", diff)
	}
}

func TestOpenVEXFor(t *testing.T) {
	tests := []struct {
		dgst digest.Digest
		want map[string]string
	}{
		{appDigest, map[string]string{
			"CVE-2024-24790": "not_affected (vulnerable_code_not_in_execute_path): app never calls netip.Addr.Is* on untrusted input",
			"https://nvd.nist.gov/vuln/detail/CVE-2024-24790": "not_affected (vulnerable_code_not_in_execute_path): app never calls netip.Addr.Is* on untrusted input",
			"GO-2024-2887": "not_affected (vulnerable_code_not_in_execute_path): app never calls netip.Addr.Is* on untrusted input",
		}},
		{configDigest, map[string]string{"CVE-2024-0727": "fixed: openssl rebuilt from 3.1.4-r5 sources"}},
		{digest.FromString("other"), map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.dgst.String(), func(t *testing.T) {
			got, err := OpenVEXFor(readFile(t, "openvex.json"), tt.dgst)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenVEXForms(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		digests []digest.Digest
		err     error
	}{
		{
			name: "v0.0.1 bare strings",
			in: `{"@context":"https://openvex.dev/ns","statements":[{"vulnerability":"CVE-9","products":["pkg:oci/x@` +
				`sha256:a92db5bebcc5706cf8b71379e7105e3b8fce9bbabec9017dc1742c7f8d79158f"],"status":"not_affected","justification":"component_not_present"}]}`,
			want:    map[string]string{"CVE-9": "not_affected (component_not_present)"},
			digests: []digest.Digest{appDigest},
		},
		{
			name: "later statement restores not_affected; junk product ids ignored",
			in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[
				{"vulnerability":{"name":"CVE-9"},"timestamp":"2026-01-03T00:00:00Z","products":[{"@id":"sha256:short"}],"status":"not_affected"},
				{"vulnerability":{"name":"CVE-9"},"timestamp":"2026-01-02T00:00:00Z","products":[{"@id":"pkg:apk/alpine/x@1"}],"status":"under_investigation"}]}`,
			want: map[string]string{"CVE-9": "not_affected"},
		},
		{name: "not openvex", in: `{"@context":"https://example.com/vex"}`, err: ErrUnsupported},
		{name: "bad status", in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"C"},"status":"maybe"}]}`, err: ErrMalformed},
		{name: "no vulnerability", in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"status":"fixed"}]}`, err: ErrMalformed},
		{name: "vulnerability a number", in: `{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":5,"status":"fixed"}]}`, err: ErrMalformed},
		{name: "not json", in: `{`, err: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, digests, err := ParseOpenVEX([]byte(tt.in))
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.digests, digests); diff != "" {
				t.Errorf("digests (-want +got):\n%s", diff)
			}
		})
	}
}
