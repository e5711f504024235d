package integration

import (
	"io"
	"net/http"
	"testing"
)

// The benchmarks put the proxy next to a direct pull from the same in-process upstream: same client, same loopback.
// Run with `make bench`.

func benchGet(b *testing.B, client *http.Client, url string, accept string) {
	b.Helper()
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkManifestWarm: a manifest by tag, warm (tag resolved within its TTL, manifest in the store).
func BenchmarkManifestWarm(b *testing.B) {
	e := newEnv(b)
	img := e.up.PushRandomImage(b, "bench/app:v1", 1, 1024)
	mt, _ := img.MediaType()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	b.Run("direct", func(b *testing.B) {
		benchGet(b, client, e.up.URL().String()+"/v2/bench/app/manifests/v1", string(mt))
	})
	b.Run("proxy", func(b *testing.B) {
		benchGet(b, client, e.srv.URL+"/v2/bench/app/manifests/v1", string(mt)) // warms on the first iteration
	})
}

// BenchmarkBlobWarm: a 16 MiB layer, served from the proxy's content store versus from the upstream.
func BenchmarkBlobWarm(b *testing.B) {
	e := newEnv(b)
	const size = 16 << 20
	img := e.up.PushRandomImage(b, "bench/blob:v1", 1, size)
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	cl, _ := layers[0].Size()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(cl)
		benchGet(b, client, e.up.URL().String()+"/v2/bench/blob/blobs/"+ld.String(), "")
	})
	b.Run("proxy", func(b *testing.B) {
		b.SetBytes(cl)
		benchGet(b, client, e.srv.URL+"/v2/bench/blob/blobs/"+ld.String(), "")
	})
}
