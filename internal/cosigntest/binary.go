package cosigntest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/gotool"
)

// buildTimeout bounds one `go tool -n` build of the cosign CLI. A cold build
// takes minutes on a small machine; a warm one is a cache lookup.
const buildTimeout = 20 * time.Minute

// runTimeout bounds one cosign invocation. Every run is local, so this only
// trips when something waits on the network it must not use.
const runTimeout = 2 * time.Minute

// cosign3Module is the nested module, relative to the main module's root,
// that pins the cosign v3 CLI.
const cosign3Module = "tools/cosign3"

// build is one lazily built binary, shared by the whole test binary: building
// cosign is the slow part and every test wants the same one.
type build struct {
	once sync.Once
	path string
	err  error
}

// The builds are process state on purpose (see build); tests only.
var (
	cosign2 build
	cosign3 build
)

// Binary returns the path of the cosign v2 CLI pinned in go.mod
// (`tool github.com/sigstore/cosign/v2/cmd/cosign`), building it on first use.
// It skips the test when the build fails, saying why.
func Binary(t testing.TB) string {
	t.Helper()
	cosign2.once.Do(func() { cosign2.path, cosign2.err = toolPath("") })
	if cosign2.err != nil {
		t.Skipf("cosigntest: cannot build the cosign v2 CLI (go tool -n cosign): %v", cosign2.err)
	}
	return cosign2.path
}

// Binary3 returns the path of the cosign v3 CLI pinned by the nested module
// tools/cosign3, building it on first use. If that build fails it logs why and
// falls back to the cosign v2 CLI, which writes the same sigstore bundle when
// given --new-bundle-format (SignBundle does that for it; see IsV3).
func Binary3(t testing.TB) string {
	t.Helper()
	cosign3.once.Do(func() { cosign3.path, cosign3.err = toolPath(cosign3Module) })
	if cosign3.err != nil {
		t.Logf("cosigntest: cannot build the cosign v3 CLI, using cosign v2 with --new-bundle-format: %v", cosign3.err)
		return Binary(t)
	}
	return cosign3.path
}

// IsV3 reports whether bin is the cosign v3 CLI returned by Binary3.
func IsV3(bin string) bool {
	return cosign3.err == nil && cosign3.path != "" && bin == cosign3.path
}

// toolPath builds the cosign CLI pinned by the module at dir (relative to the main module's root) and returns its
// path in the build cache.
func toolPath(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	return gotool.Path(ctx, dir, "cosign")
}

// Run runs the cosign CLI bin with args, offline, in a private HOME, and
// returns its combined output; the test fails if cosign does.
func Run(t testing.TB, bin string, args ...string) string {
	t.Helper()
	out, err := run(t, bin, args...)
	if err != nil {
		t.Fatalf("cosigntest: cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// run runs cosign with env() in a fresh directory and returns its combined
// output.
func run(t testing.TB, bin string, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = env(dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// env is a minimal environment that keeps cosign off the network and away from
// the user's files: its own HOME, TUF and Docker config directories, no
// caches, an empty key password, and no prompts.
func env(dir string) []string {
	e := []string{
		"HOME=" + dir,
		"TUF_ROOT=" + filepath.Join(dir, ".sigstore", "root"),
		"DOCKER_CONFIG=" + filepath.Join(dir, ".docker"),
		"SIGSTORE_NO_CACHE=true",
		"COSIGN_PASSWORD=",
		"COSIGN_YES=true",
		"TMPDIR=" + dir,
	}
	if p, ok := os.LookupEnv("PATH"); ok {
		e = append(e, "PATH="+p)
	}
	return e
}
