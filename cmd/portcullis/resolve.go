package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/admin"
	"github.com/portcullis/portcullis/admission"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/upstream"
)

// imageResolver names and fetches images on the configured upstreams' clients, the way `portcullis check` reads
// IMAGE and a pull without ns= is routed (parseImage): for check, and for the admin API's explain, decisions and
// policy preview.
type imageResolver struct {
	cfg     *configs.Config
	clients map[string]*upstream.Client
}

var (
	_ admin.Resolver      = imageResolver{}
	_ admission.Manifests = imageResolver{}
)

// subject turns img into the subject a pull of it is decided on: a tag is resolved to its digest now, and with
// manifest the manifest is fetched (verified against the digest by the client).
func (r imageResolver) subject(ctx context.Context, img image, manifest bool) (admission.Subject, error) {
	s := admission.Subject{Upstream: img.upstream, Repository: img.repo, Tag: img.tag, Digest: img.digest}
	client := r.clients[img.upstream]
	if client == nil {
		return s, fmt.Errorf("upstream %s has no client", img.upstream)
	}
	if s.Digest == "" {
		desc, err := client.Resolve(ctx, img.repo, img.tag, nil)
		if err != nil {
			return s, fmt.Errorf("resolve %s/%s:%s: %w", img.upstream, img.repo, img.tag, err)
		}
		s.Digest = desc.Digest
	}
	if manifest {
		var err error
		if s.Manifest, s.MediaType, err = r.Manifest(ctx, s.Upstream, s.Repository, s.Digest); err != nil {
			return s, err
		}
	}
	return s, nil
}

// Manifest fetches a manifest by digest: admission.Manifests, for policy previews.
func (r imageResolver) Manifest(ctx context.Context, up, repo string, dgst digest.Digest) ([]byte, string, error) {
	client := r.clients[up]
	if client == nil {
		return nil, "", fmt.Errorf("%w: upstream %q is not configured", admin.ErrBadImage, up)
	}
	body, mediaType, _, err := client.Manifest(ctx, repo, dgst.String(), nil)
	if err != nil {
		return nil, "", fmt.Errorf("fetch %s/%s@%s: %w", up, repo, dgst, err)
	}
	return body, mediaType, nil
}

// Resolve implements admin.Resolver.
func (r imageResolver) Resolve(ctx context.Context, ref string) (admission.Subject, error) {
	return r.resolve(ctx, ref, true)
}

// Name implements admin.Resolver.
func (r imageResolver) Name(ctx context.Context, ref string) (admission.Subject, error) {
	return r.resolve(ctx, ref, false)
}

func (r imageResolver) resolve(ctx context.Context, ref string, manifest bool) (admission.Subject, error) {
	img, err := parseImage(r.cfg, ref)
	if err != nil {
		return admission.Subject{}, fmt.Errorf("%w: %w", admin.ErrBadImage, err)
	}
	s, err := r.subject(ctx, img, manifest)
	if errors.Is(err, upstream.ErrNotFound) {
		err = fmt.Errorf("%w: %w", admin.ErrImageUnknown, err)
	}
	return s, err
}

// Repository implements admin.Resolver: name is [host/]path, without a tag or a digest.
func (r imageResolver) Repository(name string) (string, string, error) {
	ref, err := reference.Parse(name)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", admin.ErrBadImage, name, err)
	}
	_, tagged := ref.(reference.Tagged)
	_, digested := ref.(reference.Digested)
	if tagged || digested {
		return "", "", fmt.Errorf("%w: %q names an image; give its repository only, e.g. ghcr.io/acme/app", admin.ErrBadImage, name)
	}
	img, err := parseImage(r.cfg, name)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", admin.ErrBadImage, err)
	}
	return img.upstream, img.repo, nil
}
