package harbortest

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/internal/httpauth"
	"github.com/portcullis/portcullis/internal/manifest"
)

// maxDepth bounds index nesting.
const maxDepth = 4

// pull fetches repo@dgst and everything it references from the registry at
// registryURL and verifies every digest. Like harbor-scanner-trivy (which hands
// Trivy TRIVY_USERNAME/TRIVY_PASSWORD or TRIVY_REGISTRY_TOKEN) it turns the
// authorization into go-containerregistry credentials and lets the registry's
// own challenge (the /v2/ ping) decide how they are sent, so a registry that
// answers the ping anonymously gets no credential at all. It uses the URL's
// scheme and host only; http means an insecure registry.
func pull(ctx context.Context, rt http.RoundTripper, registryURL, authorization, repo string, dgst digest.Digest) error {
	u, err := url.Parse(registryURL)
	if err != nil {
		return fmt.Errorf("parsing registry URL: %w", err)
	}
	var nopts []name.Option
	if u.Scheme == "http" {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRepository(u.Host+"/"+repo, nopts...)
	if err != nil {
		return err
	}
	p, err := remote.NewPuller(
		remote.WithContext(ctx),
		remote.WithAuth(credentials(authorization)),
		remote.WithTransport(rt),
	)
	if err != nil {
		return err
	}
	return pullManifest(ctx, p, r, dgst, 0)
}

func pullManifest(ctx context.Context, p *remote.Puller, r name.Repository, dgst digest.Digest, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("index nesting deeper than %d", maxDepth)
	}
	desc, err := p.Get(ctx, r.Digest(dgst.String()))
	if err != nil {
		return fmt.Errorf("manifest %s: %w", dgst, err)
	}
	if err := dgst.Validate(); err != nil || dgst.Algorithm().FromBytes(desc.Manifest) != dgst {
		return fmt.Errorf("manifest %s: content does not match its digest", dgst)
	}
	m, err := manifest.Parse(desc.Manifest)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", dgst, err)
	}
	for _, child := range m.Manifests {
		if err := pullManifest(ctx, p, r, child.Digest, depth+1); err != nil {
			return err
		}
	}
	for _, b := range m.Blobs() {
		if len(b.URLs) > 0 {
			continue // a foreign layer lives elsewhere
		}
		if err := pullBlob(ctx, p, r, b.Digest); err != nil {
			return err
		}
	}
	return nil
}

func pullBlob(ctx context.Context, p *remote.Puller, r name.Repository, dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("blob %q: %w", dgst, err)
	}
	l, err := p.Layer(ctx, r.Digest(dgst.String()))
	if err != nil {
		return fmt.Errorf("blob %s: %w", dgst, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("blob %s: %w", dgst, err)
	}
	defer rc.Close()
	v := dgst.Verifier()
	if _, err := io.Copy(v, rc); err != nil {
		return fmt.Errorf("blob %s: %w", dgst, err)
	}
	if !v.Verified() {
		return fmt.Errorf("blob %s: content does not match its digest", dgst)
	}
	return nil
}

// credentials maps a Harbor scan request's registry authorization to what Trivy would use.
func credentials(authorization string) authn.Authenticator {
	if tok, ok := httpauth.Bearer(authorization); ok {
		return authn.FromConfig(authn.AuthConfig{RegistryToken: tok})
	}
	scheme, value, _ := strings.Cut(authorization, " ")
	if strings.EqualFold(scheme, "basic") {
		if raw, err := base64.StdEncoding.DecodeString(value); err == nil {
			user, pass, _ := strings.Cut(string(raw), ":")
			return &authn.Basic{Username: user, Password: pass}
		}
	}
	return authn.Anonymous
}
