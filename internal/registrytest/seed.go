package registrytest

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// childLayerSize is the size of the one layer in each PushRandomIndex child
// and of each DockerImage layer.
const childLayerSize = 1024

// Platforms returns linux/amd64, linux/arm64 and linux/arm/v7.
func Platforms() []v1.Platform {
	return []v1.Platform{
		{OS: "linux", Architecture: "amd64"},
		{OS: "linux", Architecture: "arm64"},
		{OS: "linux", Architecture: "arm", Variant: "v7"},
	}
}

// PushRandomImage pushes an OCI image of layers random gzip layers, each
// holding layerSize random bytes, with a linux/amd64 config, as repoTag
// ("repo:tag"), and returns it.
func (r *Registry) PushRandomImage(t testing.TB, repoTag string, layers int, layerSize int64) v1.Image {
	t.Helper()
	img := randomImage(t, layers, layerSize, false, v1.Platform{OS: "linux", Architecture: "amd64"})
	r.PushImage(t, repoTag, img)
	return img
}

// DockerImage is PushRandomImage with Docker v2 schema 2 media types
// (manifest, config and layers) and 1 KiB layers, for Accept negotiation tests.
func (r *Registry) DockerImage(t testing.TB, repoTag string, layers int) v1.Image {
	t.Helper()
	img := randomImage(t, layers, childLayerSize, true, v1.Platform{OS: "linux", Architecture: "amd64"})
	r.PushImage(t, repoTag, img)
	return img
}

// PushRandomIndex pushes an OCI image index with one random single-layer
// image per platform (Platforms() when none are given); each child carries
// its platform both in its config and in the index descriptor.
func (r *Registry) PushRandomIndex(t testing.TB, repoTag string, platforms ...v1.Platform) v1.ImageIndex {
	t.Helper()
	if len(platforms) == 0 {
		platforms = Platforms()
	}
	idx := v1.ImageIndex(empty.Index)
	for _, p := range platforms {
		img := randomImage(t, 1, childLayerSize, false, p)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	r.PushIndex(t, repoTag, idx)
	return idx
}

// PushImage pushes img as repoTag ("repo:tag" or "repo@sha256:...").
func (r *Registry) PushImage(t testing.TB, repoTag string, img v1.Image) {
	t.Helper()
	if err := remote.Write(r.seedRef(t, repoTag), img, r.seedOptions(t)...); err != nil {
		t.Fatalf("registrytest: push image %s: %v", repoTag, err)
	}
}

// PushIndex pushes idx and every manifest it references as repoTag.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) {
	t.Helper()
	if err := remote.WriteIndex(r.seedRef(t, repoTag), idx, r.seedOptions(t)...); err != nil {
		t.Fatalf("registrytest: push index %s: %v", repoTag, err)
	}
}

// Tag points the tag in repoTag ("repo:tag") at the manifest dgst, which
// must already be in that repository; it moves the tag if it exists.
func (r *Registry) Tag(t testing.TB, repoTag string, dgst v1.Hash) {
	t.Helper()
	tag, err := name.NewTag(r.seed.Listener.Addr().String()+"/"+repoTag, name.Insecure, name.StrictValidation)
	if err != nil {
		t.Fatalf("registrytest: tag %q: %v", repoTag, err)
	}
	desc, err := remote.Get(tag.Context().Digest(dgst.String()), r.seedOptions(t)...)
	if err != nil {
		t.Fatalf("registrytest: get %s@%s: %v", tag.Context().RepositoryStr(), dgst, err)
	}
	if err := remote.Tag(tag, desc, r.seedOptions(t)...); err != nil {
		t.Fatalf("registrytest: tag %s: %v", repoTag, err)
	}
}

// seedRef parses repoTag against the seeding side door.
func (r *Registry) seedRef(t testing.TB, repoTag string) name.Reference {
	t.Helper()
	if !strings.ContainsAny(repoTag, ":@") {
		t.Fatalf("registrytest: %q: want repo:tag or repo@digest", repoTag)
	}
	ref, err := name.ParseReference(r.seed.Listener.Addr().String()+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatalf("registrytest: reference %q: %v", repoTag, err)
	}
	return ref
}

// seedOptions talks to the side door, which has no auth, middleware or
// counter in front of it.
func (r *Registry) seedOptions(t testing.TB) []remote.Option {
	return []remote.Option{
		remote.WithContext(t.Context()),
		remote.WithTransport(r.seed.Client().Transport),
	}
}

// randomImage builds an image of layers random layers of size bytes each,
// with OCI or Docker schema 2 media types, whose config names platform p.
func randomImage(t testing.TB, layers int, size int64, docker bool, p v1.Platform) v1.Image {
	t.Helper()
	img := empty.Image // Docker schema 2 media types
	layerType := types.DockerLayer
	if !docker {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		layerType = types.OCILayer
	}
	adds := make([]mutate.Addendum, 0, layers)
	for range layers {
		l, err := random.Layer(size, layerType)
		if err != nil {
			t.Fatalf("registrytest: random layer: %v", err)
		}
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "registrytest"}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		t.Fatalf("registrytest: append layers: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("registrytest: config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.OSVersion, cf.OSFeatures = p.OSVersion, p.OSFeatures
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatalf("registrytest: set config: %v", err)
	}
	return img
}
