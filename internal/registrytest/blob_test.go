package registrytest

import (
	"io"
	"net/http"
	"testing"
)

// TestPushBlob: a streamed blob is served back whole under its digest, from memory and from a storage dir.
func TestPushBlob(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(t *testing.T) []Option
	}{
		{"in memory", func(*testing.T) []Option { return nil }},
		{"storage dir", func(t *testing.T) []Option { return []Option{WithStorageDir(t.TempDir())} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New(t, tc.opts(t)...)
			const size = 3<<20 + 7
			d := r.PushBlob(t, "bench/blob", size, 42)
			resp, err := http.Get(r.URL().String() + "/v2/bench/blob/blobs/" + d.String())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			v := d.Verifier()
			n, err := io.Copy(v, resp.Body)
			if err != nil || n != size || !v.Verified() {
				t.Fatalf("GET: %s, %d bytes, verified %v, err %v", resp.Status, n, v.Verified(), err)
			}
			if d2 := r.PushBlob(t, "bench/blob", size, 43); d2 == d || d2.Validate() != nil {
				t.Errorf("another seed gave %s, the first %s", d2, d)
			}
		})
	}
}
