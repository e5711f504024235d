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
	for _, tc := range []struct {
		name                  string
		mount, fault, recover string // tmpfs options: at mount, to break the store once serving, to mend it
	}{
		{"full", "size=64k", "", "remount,size=16m"},
		{"read-only", "size=16m", "remount,ro", "remount,rw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", tc.mount, "tmpfs", dir).CombinedOutput(); err != nil {
				t.Skipf("cannot mount a tmpfs: %v %s", err, out)
			}
			t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
			e := newEnv(t, func(c *envConfig) { c.contentDir = dir })
			remount := func(opts string) {
				t.Helper()
				if out, err := exec.Command("mount", "-o", opts, dir).CombinedOutput(); err != nil {
					t.Fatalf("mount -o %s: %v %s", opts, err, out)
				}
			}
			if tc.fault != "" {
				remount(tc.fault)
			}
			img := e.up.PushRandomImage(t, "full/app:v1", 1, 512<<10)
			ls, _ := img.Layers()
			ld, _ := ls[0].Digest()
			rc, _ := ls[0].Compressed()
			want, _ := io.ReadAll(rc)
			path := "/v2/full/app/blobs/" + ld.String()

			for i := range 2 {
				resp, got := e.get(t, http.MethodGet, path)
				if resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
					t.Fatalf("pull %d with the store %s: status %d, %d bytes; want the blob, uncached", i, tc.name, resp.StatusCode, len(got))
				}
			}
			if _, err := e.content.Stat(context.Background(), digest.Digest(ld.String())); err == nil {
				t.Fatalf("a 512 KiB blob stored in a %s store", tc.name)
			}
			if err := e.proxy.Healthy(); err == nil || !strings.Contains(err.Error(), "served uncached") {
				t.Errorf("Healthy() = %v with the store %s; want the degradation /readyz reports", err, tc.name)
			}
			hits := e.up.Hits().Count(http.MethodGet, "blob")

			remount(tc.recover)
			if resp, got := e.get(t, http.MethodGet, path); resp.StatusCode != http.StatusOK || !bytes.Equal(got, want) {
				t.Fatalf("pull with the store mended: status %d", resp.StatusCode)
			}
			if !eventually(func() bool {
				_, err := e.content.Stat(context.Background(), digest.Digest(ld.String()))
				return err == nil
			}) {
				t.Fatal("the blob was not stored once the store took writes")
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
		})
	}
}
