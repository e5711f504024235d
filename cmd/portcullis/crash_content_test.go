package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// trickle slows the upstream's blob bodies (64 KiB every 2 ms), so that downloads, spools and commits to the
// content store are under way when the test kills the proxy.
func trickle(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			w = &slowWriter{ResponseWriter: w}
		}
		next.ServeHTTP(w, r)
	})
}

type slowWriter struct{ http.ResponseWriter }

func (s *slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), 64<<10)
		m, err := s.ResponseWriter.Write(p[:c])
		n += m
		if err != nil {
			return n, err
		}
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[c:]
		time.Sleep(2 * time.Millisecond)
	}
	return n, nil
}

// TestKill9DuringContentWrites kills the real binary with SIGKILL, again and again, while cold pulls write
// manifests and blobs into its content store, and starts it again on the same data directory. Whatever it serves
// afterwards is whole: every manifest and blob answered 200 hashes to its digest, with the upstream up and with it
// gone; every blob file in the store hashes to its name, and the store's accounting (its eviction budget) is the
// sum of those files.
func TestKill9DuringContentWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	up := registrytest.New(t, registrytest.WithMiddleware(trickle))
	type item struct {
		repo, kind string
		dgst       digest.Digest
	}
	var items []item
	for i := range 4 {
		repo := fmt.Sprintf("crash/app%d", i)
		img := up.PushRandomImage(t, repo+":v1", 2, 2<<20)
		md, _ := img.Digest()
		cd, _ := img.ConfigName()
		items = append(items, item{repo, "manifests", digest.Digest(md.String())}, item{repo, "blobs", digest.Digest(cd.String())})
		layers, _ := img.Layers()
		for _, l := range layers {
			ld, _ := l.Digest()
			items = append(items, item{repo, "blobs", digest.Digest(ld.String())})
		}
	}

	dataDir := t.TempDir()
	regAddr := freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "portcullis.yaml")
	doc := fmt.Sprintf("listen: %q\nopsListen: \"\"\ndataDir: %q\nupstreams:\n  - {name: %q, url: %q}\ncontent: {maxSize: 1GiB}\nshutdown: {drainDelay: 0s}\n",
		regAddr, dataDir, up.Host(), up.URL().String())
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() (*exec.Cmd, *cachetest.SyncBuilder) {
		cmd := exec.Command(bin, "serve", "--config", cfg)
		logs := &cachetest.SyncBuilder{}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if _, ok := within(30*time.Second, func() bool {
			resp, err := http.Get("http://" + regAddr + "/v2/")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		}); !ok {
			t.Fatalf("the binary did not start: %s", logs)
		}
		return cmd, logs
	}
	kill := func(cmd *exec.Cmd) {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	client := &http.Client{Timeout: time.Minute}
	// fetch asks for it and reports whether it was served; served bytes that are not it fail the test.
	fetch := func(it item) bool {
		req, _ := http.NewRequest(http.MethodGet, "http://"+regAddr+"/v2/"+it.repo+"/"+it.kind+"/"+it.dgst.String(), nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return false // cut off by the kill, or refused: never half a body taken for whole
		}
		if got := digest.FromBytes(body); got != it.dgst {
			t.Errorf("%s %s: served %d bytes that hash to %s", it.kind, it.dgst, len(body), got)
		}
		return true
	}

	t0 := time.Now()
	for round := range 5 {
		cmd, _ := start()
		var wg sync.WaitGroup
		for _, it := range items {
			wg.Go(func() { fetch(it) })
		}
		time.Sleep(time.Duration(100+300*round) * time.Millisecond) // from mid-download to mid-commit
		kill(cmd)
		wg.Wait()
		t.Logf("round %d done at %s", round, time.Since(t0).Round(time.Millisecond))
	}

	files, total := storedBlobs(t, filepath.Join(dataDir, "content"))
	cmd, logs := start()
	m := regexp.MustCompile(`content store ready.*bytes=(\d+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no content store line in the log: %s", logs)
	}
	if n, _ := strconv.ParseInt(m[1], 10, 64); n != total {
		t.Errorf("after the kills the store accounts for %d bytes; its %d blob files hold %d", n, files, total)
	}
	for _, it := range items {
		if !fetch(it) {
			t.Errorf("%s %s not served after the restart, with the upstream up", it.kind, it.dgst)
		}
	}
	t.Logf("restarted and fetched at %s", time.Since(t0).Round(time.Millisecond))
	// Commits go on after the last byte: stop the binary gracefully so they end, then serve from the store alone.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	up.Close()
	t.Logf("stopped at %s", time.Since(t0).Round(time.Millisecond))
	start()
	served := 0
	for _, it := range items {
		if fetch(it) {
			served++
		}
	}
	if served != len(items) {
		t.Errorf("with the upstream gone, %d of %d served from the store", served, len(items))
	}
	t.Logf("%d blob files (%d bytes) in the store after 5 kills; all %d items whole", files, total, len(items))
}

// storedBlobs checks that every blob file under root hashes to the digest its path names and returns how many
// there are and their bytes: objects in /blobs/sha256/<2>/<hex>/data and small ones in /small/sha256/<2>/<hex>.
func storedBlobs(t *testing.T, root string) (files int, total int64) {
	t.Helper()
	for _, tree := range []struct {
		dir  string
		name func(path string) (hex string, ok bool)
	}{
		{filepath.Join(root, "blobs", "sha256"), func(p string) (string, bool) {
			return filepath.Base(filepath.Dir(p)), filepath.Base(p) == "data"
		}},
		{filepath.Join(root, "small", "sha256"), func(p string) (string, bool) {
			return filepath.Base(p), !strings.HasPrefix(filepath.Base(p), ".")
		}},
	} {
		err := filepath.WalkDir(tree.dir, func(path string, d fs.DirEntry, err error) error {
			want, ok := tree.name(path)
			if err != nil || d.IsDir() || !ok {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			if hex.EncodeToString(sum[:]) != want {
				t.Errorf("%s: %d bytes that do not hash to %s", path, len(b), want)
			}
			files++
			total += int64(len(b))
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	return files, total
}
