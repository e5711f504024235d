package admission

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	ocimanifest "github.com/portcullis/portcullis/internal/manifest"
)

// ScanCredentials mints the short-lived credentials a scanner uses to pull one image back through Portcullis
// before that image is admitted (scan-and-wait). A credential grants one manifest in one repository and, once
// that manifest was served with it, what it names: its child manifests (index entries of a manifest or index
// media type) as manifests, its config and layers (an artifact manifest's blobs too) as blobs; nothing else. The
// two kinds of grant are kept apart, so a layer is never served as a manifest nor a child manifest as a blob.
//
// KV keys (shared, so any replica honours a credential), all living as long as the credential:
//
//	scancred/<token>                   the grant: upstream, repository, image digest, expiry
//	scancred-manifest/<token>/<digest> a child manifest the token may fetch from the manifests endpoint
//	scancred-blob/<token>/<digest>     a blob the token may fetch from the blobs endpoint
type ScanCredentials struct {
	kv  KV
	now func() time.Time
}

// NewScanCredentials returns a credential minter on kv (shared, so any replica honours it).
func NewScanCredentials(kv KV) *ScanCredentials { return &ScanCredentials{kv: kv, now: time.Now} }

type scanGrant struct {
	Upstream   string        `json:"upstream"`
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
	Expires    time.Time     `json:"expires"`
}

// Mint returns a new credential for one image, valid for ttl.
func (c *ScanCredentials) Mint(ctx context.Context, upstream, repo string, dgst digest.Digest, ttl time.Duration) (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := "pcs_" + hex.EncodeToString(b)
	g, _ := json.Marshal(scanGrant{Upstream: upstream, Repository: repo, Digest: dgst, Expires: c.now().Add(ttl)})
	if err := c.kv.Set(ctx, scanCredentialKey(tok), g, ttl); err != nil {
		return "", err
	}
	return tok, nil
}

// grant returns what tok allows, if it is a live credential for this repository.
func (c *ScanCredentials) grant(ctx context.Context, tok, upstream, repo string) (scanGrant, bool) {
	if tok == "" {
		return scanGrant{}, false
	}
	b, err := c.kv.Get(ctx, scanCredentialKey(tok))
	if err != nil {
		return scanGrant{}, false
	}
	var g scanGrant
	if json.Unmarshal(b, &g) != nil || g.Upstream != upstream || g.Repository != repo || !c.now().Before(g.Expires) {
		return scanGrant{}, false
	}
	return g, true
}

// AllowManifest reports whether tok lets its holder fetch the manifest dgst (body, already verified): the image
// it was minted for, or a child manifest of one served with it. When allowed, it remembers the child manifests
// and the blobs the manifest names for the same credential. It returns an error saying why not when tok is a live
// credential for this repository that does not grant dgst as a manifest (a layer, a config, an image it was not
// minted for, bytes that are not a manifest): the holder is a scanner, and the caller refuses it rather than
// deciding on the digest as an image.
func (c *ScanCredentials) AllowManifest(ctx context.Context, tok, upstream, repo string, dgst digest.Digest, body []byte) (bool, error) {
	g, ok := c.grant(ctx, tok, upstream, repo)
	if !ok {
		return false, nil
	}
	if g.Digest != dgst && !c.granted(ctx, scanManifestGrantKey(tok, dgst)) {
		return false, fmt.Errorf("the scanner credential for %s does not grant %s as a manifest", g.Digest, dgst)
	}
	m, err := ocimanifest.Parse(body)
	if err != nil {
		return false, fmt.Errorf("%s is not a manifest: %w", dgst, err)
	}
	ttl := g.Expires.Sub(c.now())
	for _, d := range m.Manifests {
		if ocimanifest.IsManifestType(d.MediaType) {
			_ = c.kv.Set(ctx, scanManifestGrantKey(tok, d.Digest), []byte{1}, ttl)
		}
	}
	for _, d := range m.Blobs() {
		_ = c.kv.Set(ctx, scanBlobGrantKey(tok, d.Digest), []byte{1}, ttl)
	}
	return true, nil
}

// AllowBlob reports whether tok lets its holder fetch the blob: a config or layer of a manifest served with it.
func (c *ScanCredentials) AllowBlob(ctx context.Context, tok, upstream, repo string, dgst digest.Digest) bool {
	if _, ok := c.grant(ctx, tok, upstream, repo); !ok {
		return false
	}
	return c.granted(ctx, scanBlobGrantKey(tok, dgst))
}

func (c *ScanCredentials) granted(ctx context.Context, key string) bool {
	_, err := c.kv.Get(ctx, key)
	return err == nil
}
