package report

import (
	"encoding/json"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// ImageDigests returns the image manifest (or index) digests a report says it
// is about, where its format carries them; none when it names no digest.
//
//   - Trivy JSON: Metadata.RepoDigests ("repo@sha256:…") and ArtifactName when
//     the image was named by digest ("repo@sha256:…").
//   - SARIF as Trivy writes it: each run's properties.repoDigests and
//     properties.imageName when it holds a digest.
//   - CycloneDX: metadata.component's purl and bom-ref when they are package
//     URLs whose version is a digest (Trivy: pkg:oci/app@sha256%3A…), its
//     version when that is a digest (Grype, Syft), and Trivy's
//     aquasecurity:trivy:RepoDigest properties.
//   - Harbor: artifact.digest.
//   - A cosign vulnerability predicate: what its scanner.result names, and, for
//     a whole in-toto statement, its subjects' sha256 digests.
//
// Image ids (Trivy's Metadata.ImageID, SARIF's imageID, CycloneDX's
// aquasecurity:trivy:ImageID) are config digests, not manifest digests, and are
// never returned. The error is Detect's: b is not a report this package reads.
func ImageDigests(b []byte) ([]digest.Digest, error) {
	if err := checkSize("report", b); err != nil {
		return nil, err
	}
	k, err := sniff(b)
	if err != nil {
		return nil, err
	}
	var ds digestSet
	switch k {
	case kindTrivy:
		var r struct {
			ArtifactName string
			Metadata     struct{ RepoDigests []string }
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, malformed("trivy", err)
		}
		ds.addRef(r.ArtifactName)
		for _, rd := range r.Metadata.RepoDigests {
			ds.addRef(rd)
		}
	case kindSARIF:
		var log struct {
			Runs []struct {
				Properties struct {
					ImageName   string   `json:"imageName"`
					RepoDigests []string `json:"repoDigests"`
				} `json:"properties"`
			} `json:"runs"`
		}
		if err := json.Unmarshal(b, &log); err != nil {
			return nil, malformed("sarif", err)
		}
		for _, run := range log.Runs {
			ds.addRef(run.Properties.ImageName)
			for _, rd := range run.Properties.RepoDigests {
				ds.addRef(rd)
			}
		}
	case kindCycloneDX:
		var bom struct {
			Metadata *struct {
				Component *struct {
					BOMRef     string `json:"bom-ref"`
					PURL       string `json:"purl"`
					Version    string `json:"version"`
					Properties []struct {
						Name  string `json:"name"`
						Value string `json:"value"`
					} `json:"properties"`
				} `json:"component"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(b, &bom); err != nil {
			return nil, malformed("cyclonedx", err)
		}
		if bom.Metadata != nil && bom.Metadata.Component != nil {
			c := bom.Metadata.Component
			for _, id := range []string{c.PURL, c.BOMRef} {
				if p, ok := parsePURL(id); ok {
					ds.add(p.Version)
				}
			}
			ds.add(c.Version)
			for _, p := range c.Properties {
				if p.Name == "aquasecurity:trivy:RepoDigest" {
					ds.addRef(p.Value)
				}
			}
		}
	case kindHarbor:
		var r struct {
			Artifact *struct {
				Digest string `json:"digest"`
			} `json:"artifact"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, malformed("harbor", err)
		}
		if r.Artifact != nil {
			ds.add(r.Artifact.Digest)
		}
	case kindCosign:
		var stmt struct {
			Subject []struct {
				Digest map[string]string `json:"digest"`
			} `json:"subject"`
			Predicate *struct {
				Scanner *struct {
					Result json.RawMessage `json:"result"`
				} `json:"scanner"`
			} `json:"predicate"`
			Scanner *struct {
				Result json.RawMessage `json:"result"`
			} `json:"scanner"`
		}
		if err := json.Unmarshal(b, &stmt); err != nil {
			return nil, malformed("cosign-vuln", err)
		}
		for _, s := range stmt.Subject {
			if h, ok := s.Digest["sha256"]; ok {
				ds.add("sha256:" + h)
			}
		}
		scanner := stmt.Scanner
		if stmt.Predicate != nil {
			scanner = stmt.Predicate.Scanner
		}
		if scanner != nil && len(scanner.Result) > 0 {
			if k, err := sniff(scanner.Result); err == nil && k != kindCosign {
				inner, err := ImageDigests(scanner.Result)
				if err != nil {
					return nil, err
				}
				for _, d := range inner {
					ds.add(d.String())
				}
			}
		}
	}
	return ds.list, nil
}

// digestSet collects digests in order of first mention.
type digestSet struct{ list []digest.Digest }

// add records s if it is a digest.
func (s *digestSet) add(v string) {
	d, err := digest.Parse(strings.TrimSpace(v))
	if err == nil && !slices.Contains(s.list, d) {
		s.list = append(s.list, d)
	}
}

// addRef records the digest of a reference "name@sha256:…"; a reference by tag names none.
func (s *digestSet) addRef(ref string) {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		s.add(ref[i+1:])
	}
}
