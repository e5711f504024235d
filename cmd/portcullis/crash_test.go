package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// TestEmbeddedStateSurvivesKill9 runs the real binary with embedded state, changes the lists through the admin
// API, kills it with SIGKILL and starts it again on the same data dir: the lists and the audit log are intact.
func TestEmbeddedStateSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	up := registrytest.New(t)
	dataDir := t.TempDir()
	regAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "portcullis.yaml")
	doc := fmt.Sprintf("listen: %q\nopsListen: \"\"\ndataDir: %q\nupstreams:\n  - {name: %q, url: %q}\nadmin:\n  listen: %q\n  token: %q\nshutdown: {drainDelay: 0s}\n",
		regAddr, dataDir, up.Host(), up.URL().String(), adminAddr, fleetToken)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "serve", "--config", cfg)
		cmd.Stdout, cmd.Stderr = &cachetest.SyncBuilder{}, &cachetest.SyncBuilder{}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		if _, ok := within(20*time.Second, func() bool {
			resp, err := http.Get("http://" + adminAddr + "/admin/v1/deny")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil
		}); !ok {
			t.Fatalf("the binary did not start: %s", cmd.Stderr)
		}
		return cmd
	}
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+fleetToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	cmd := start()
	for i, kind := range []string{"deny", "allow", "deny"} {
		code, body := call(http.MethodPost, "/admin/v1/"+kind, fmt.Sprintf(`{"match": "%s/app/n%d", "reason": "entry %d"}`, up.Host(), i, i))
		if code != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", kind, code, body)
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	start()
	_, deny := call(http.MethodGet, "/admin/v1/deny", "")
	_, allow := call(http.MethodGet, "/admin/v1/allow", "")
	for i, want := range []string{"app/n0", "app/n1", "app/n2"} {
		list := deny
		if i == 1 {
			list = allow
		}
		if !strings.Contains(list, want) {
			t.Errorf("after kill -9 and restart the %s entry is gone: deny %s allow %s", want, deny, allow)
		}
	}
	_, audit := call(http.MethodGet, "/admin/v1/audit?kind=change", "")
	if n := strings.Count(audit, `"action":"deny.add"`); n != 2 || !strings.Contains(audit, `"action":"allow.add"`) {
		t.Errorf("audit log after kill -9 and restart: %s", audit)
	}
}

// buildBinary builds portcullis once for the tests that run the real binary, with the flags of `make image` (static,
// -trimpath), so that its packages come from the build cache `make image` filled instead of a second compile.
func buildBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portcullis-bin-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "portcullis")
		cmd := exec.Command("go", "build", "-trimpath", "-o", binaryPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local")
		if out, err := cmd.CombinedOutput(); err != nil {
			binaryErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
