package integration

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestFullContentStore: with the content store on a full filesystem (a 64 KiB tmpfs), a cold blob still streams
// from the upstream whole and verified, uncached, and the proxy reports itself degraded (/readyz); once there is
// space again the next pull stores it and the degradation clears. Needs root
// to mount the tmpfs; skipped otherwise.
func TestFullContentStore(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	e := newEnv(t, func(c *envConfig) { c.contentDir = dir })
	img := e.up.PushRandomImage(t, "full/app:v1", 1, 512<<10)
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	rc, _ := ls[0].Compressed()
	want, _ := io.ReadAll(rc)
	path := "/v2/full/app/blobs/" + ld.String()

	for i := range 2 {
		resp, got := e.get(t, http.MethodGet, path)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
			t.Fatalf("pull %d with the store full: status %d, %d bytes; want the blob, uncached", i, resp.StatusCode, len(got))
		}
	}
	if _, err := e.content.Stat(context.Background(), digest.Digest(ld.String())); err == nil {
		t.Fatal("a 512 KiB blob stored on a 64 KiB filesystem")
	}
	if err := e.proxy.Healthy(); err == nil || !strings.Contains(err.Error(), "served uncached") {
		t.Errorf("Healthy() = %v with the store full; want the degradation /readyz reports", err)
	}
	hits := e.up.Hits().Count(http.MethodGet, "blob")

	if out, err := exec.Command("mount", "-o", "remount,size=16m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	if resp, got := e.get(t, http.MethodGet, path); resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		t.Fatalf("pull with space again: status %d", resp.StatusCode)
	}
	if !eventually(func() bool {
		_, err := e.content.Stat(context.Background(), digest.Digest(ld.String()))
		return err == nil
	}) {
		t.Fatal("the blob was not stored once there was space")
	}
	if err := e.proxy.Healthy(); err != nil {
		t.Errorf("Healthy() = %v once the store takes writes again", err)
	}
	if resp, got := e.get(t, http.MethodGet, path); resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
		t.Fatalf("warm pull: status %d", resp.StatusCode)
	}
	if n := e.up.Hits().Count(http.MethodGet, "blob"); n != hits+1 {
		t.Errorf("%d upstream blob GETs after recovery, want %d: the warm pull must come from the store", n-hits, 1)
	}
}
