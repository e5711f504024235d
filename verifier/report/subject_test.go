package report

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
)

func TestImageDigests(t *testing.T) {
	other := digest.FromString("other")
	tests := []struct {
		name string
		in   []byte
		want []digest.Digest
	}{
		// Every fixture is about ghcr.io/acme/app@appDigest, whose config (image id) is configDigest: the image id
		// is never taken for the manifest digest.
		{"trivy json: RepoDigests, ArtifactName", readFile(t, "trivy-image.json"), []digest.Digest{appDigest}},
		{"trivy sarif: repoDigests, imageName, not imageID", readFile(t, "trivy-image.sarif.json"), []digest.Digest{appDigest}},
		{"trivy cyclonedx: metadata.component purl, not the ImageID property", readFile(t, "trivy-image.cdx.json"), []digest.Digest{appDigest}},
		{"grype cyclonedx: metadata.component version", readFile(t, "grype-vex.cdx.json"), []digest.Digest{appDigest}},
		{"harbor: artifact.digest", readFile(t, "harbor-report.json"), []digest.Digest{appDigest}},
		{"cosign statement: subject", readFile(t, "cosign-vuln-grype-statement.json"), []digest.Digest{appDigest}},
		{"cosign predicate: its trivy result", readFile(t, "cosign-vuln-trivy.json"), []digest.Digest{appDigest}},
		{"grype sarif names no image", readFile(t, "grype-image.sarif.json"), nil},
		{"trivy by tag, no repo digests", []byte(`{"SchemaVersion":2,"ArtifactName":"alpine:3.19","Metadata":{"ImageID":"` + configDigest.String() + `"}}`), nil},
		{
			"trivy naming two repositories",
			[]byte(`{"SchemaVersion":2,"ArtifactName":"a@` + other.String() + `","Metadata":{"RepoDigests":["a@` + other.String() + `","b@` + appDigest.String() + `","c@junk"]}}`),
			[]digest.Digest{other, appDigest},
		},
		{
			"trivy sarif with imageID only",
			[]byte(`{"version":"2.1.0","runs":[{"properties":{"imageName":"alpine:3.19","imageID":"` + configDigest.String() + `","repoDigests":null}}]}`),
			nil,
		},
		{
			"cyclonedx trivy RepoDigest property",
			[]byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{"component":{"name":"x","properties":[{"name":"aquasecurity:trivy:RepoDigest","value":"ghcr.io/x@` + other.String() + `"},{"name":"aquasecurity:trivy:ImageID","value":"` + configDigest.String() + `"}]}}}`),
			[]digest.Digest{other},
		},
		{"cyclonedx application version is no digest", []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{"component":{"name":"x","version":"1.2.3"}}}`), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ImageDigests(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("digests (-want +got):\n%s", diff)
			}
		})
	}
	for _, in := range []string{`[`, `{"hello":1}`, `{"SchemaVersion":2,"Metadata":{"RepoDigests":"x"}}`} {
		if _, err := ImageDigests([]byte(in)); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
			t.Errorf("ImageDigests(%s) = %v, want a malformed or unsupported error", in, err)
		}
	}
}
