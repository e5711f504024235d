package registrytest

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"testing"

	"github.com/opencontainers/go-digest"
)

// PushBlob uploads a blob of size pseudo-random bytes, determined by seed, to repo and returns its digest. The
// bytes are generated as they are sent, never held in memory, so a blob may be gigabytes (with WithStorageDir).
// It is a bare blob: no manifest names it, which serves a proxy without a blob gate.
func (r *Registry) PushBlob(t testing.TB, repo string, size int64, seed uint64) digest.Digest {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, BlobContent(size, seed)); err != nil {
		t.Fatalf("registrytest: hash blob: %v", err)
	}
	d := digest.NewDigest(digest.SHA256, h)
	base := "http://" + r.seed.Listener.Addr().String()
	resp, err := http.Post(base+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatalf("registrytest: start upload: %v", err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("registrytest: start upload: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	u, _ := url.Parse(base)
	u = u.ResolveReference(loc)
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	req, err := http.NewRequest(http.MethodPut, u.String(), BlobContent(size, seed))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("registrytest: upload %d bytes: %v", size, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("registrytest: upload %d bytes: %s: %s", size, resp.Status, body)
	}
	return d
}

// BlobContent returns the bytes PushBlob(size, seed) uploads, generated as they are read.
func BlobContent(size int64, seed uint64) io.Reader {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return io.LimitReader(rand.NewChaCha8(key), size)
}
