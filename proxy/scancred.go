package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ScanCredentials mints the short-lived credentials a scanner uses to pull one image back through Portcullis
// before that image is admitted (scan-and-wait). A credential grants one manifest in one repository and, once
// that manifest was served with it, the blobs and child manifests it names; nothing else.
type ScanCredentials struct {
	kv KV
}

// NewScanCredentials returns a credential minter on kv (shared, so any replica honours it).
func NewScanCredentials(kv KV) *ScanCredentials { return &ScanCredentials{kv: kv} }

type scanGrant struct {
	Upstream   string        `json:"upstream"`
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
}

// Mint returns a new credential for one image, valid for ttl.
func (c *ScanCredentials) Mint(ctx context.Context, upstream, repo string, dgst digest.Digest, ttl time.Duration) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "pcs_" + hex.EncodeToString(b)
	g, _ := json.Marshal(scanGrant{Upstream: upstream, Repository: repo, Digest: dgst})
	if err := c.kv.Set(ctx, "scancred/"+tok, g, ttl); err != nil {
		return "", err
	}
	return tok, nil
}

// grant returns what tok allows, if it is a live credential for this repository.
func (c *ScanCredentials) grant(ctx context.Context, tok, upstream, repo string) (scanGrant, bool) {
	if tok == "" {
		return scanGrant{}, false
	}
	b, err := c.kv.Get(ctx, "scancred/"+tok)
	if err != nil {
		return scanGrant{}, false
	}
	var g scanGrant
	if json.Unmarshal(b, &g) != nil || g.Upstream != upstream || g.Repository != repo {
		return scanGrant{}, false
	}
	return g, true
}

// AllowManifest reports whether tok lets its holder fetch the manifest dgst (body, already verified), and if so
// remembers the blobs and children the manifest names for the same credential.
func (c *ScanCredentials) AllowManifest(ctx context.Context, tok, upstream, repo string, dgst digest.Digest, body []byte) bool {
	g, ok := c.grant(ctx, tok, upstream, repo)
	if !ok {
		return false
	}
	if g.Digest != dgst {
		if _, err := c.kv.Get(ctx, "scancred-item/"+tok+"/"+dgst.String()); err != nil {
			return false
		}
	}
	var m struct {
		Config    *ocispec.Descriptor  `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []ocispec.Descriptor `json:"manifests"`
	}
	if json.Unmarshal(body, &m) == nil {
		items := append(m.Layers, m.Manifests...)
		if m.Config != nil {
			items = append(items, *m.Config)
		}
		for _, d := range items {
			if d.Digest.Validate() == nil {
				_ = c.kv.Set(ctx, "scancred-item/"+tok+"/"+d.Digest.String(), []byte{1}, time.Hour)
			}
		}
	}
	return true
}

// AllowBlob reports whether tok lets its holder fetch the blob: one named by a manifest served with it.
func (c *ScanCredentials) AllowBlob(ctx context.Context, tok, upstream, repo string, dgst digest.Digest) bool {
	if _, ok := c.grant(ctx, tok, upstream, repo); !ok {
		return false
	}
	_, err := c.kv.Get(ctx, "scancred-item/"+tok+"/"+dgst.String())
	return err == nil
}
