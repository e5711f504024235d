package containerdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

const (
	// requireEnv turns every skip of Start into a failure, for CI where containerd must be present.
	requireEnv = "PORTCULLIS_REQUIRE_CONTAINERD"
	// namespace is the containerd namespace every ctr command of a Daemon uses.
	namespace = "test"

	startTimeout = 15 * time.Second
	stopTimeout  = 5 * time.Second
	logTailBytes = 4 << 10
)

// ErrImageNotFound is returned by ImageDigest when containerd's image store has no such reference.
var ErrImageNotFound = errors.New("containerdtest: image not found")

// Daemon is a private containerd started by Start: its own root, state and socket under a temporary
// directory, the CRI plugin and every task runtime disabled. Its methods are safe for concurrent use.
type Daemon struct {
	dir         string
	socket      string
	logPath     string
	ctrPath     string
	snapshotter string

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// Start launches a private containerd (the binary from PATH) for this test and stops it, removing its
// directory, in t.Cleanup. It skips the test when containerd or ctr is missing or the test does not run as
// root, unless the environment has PORTCULLIS_REQUIRE_CONTAINERD=1, in which case it fails the test.
// The daemon's log is printed when the test failed.
//
// Options turn on more of containerd than pulls need: WithTasks for `ctr run`, WithCRI for kubelet's CRI API.
func Start(t testing.TB, opts ...Option) *Daemon {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	containerdPath, err := exec.LookPath("containerd")
	if err != nil {
		unavailable(t, "containerd not found in PATH (run scripts/install-test-deps.sh)")
	}
	ctrPath, err := exec.LookPath("ctr")
	if err != nil {
		unavailable(t, "ctr not found in PATH (run scripts/install-test-deps.sh)")
	}
	if os.Geteuid() != 0 {
		unavailable(t, "containerd needs root")
	}

	// Not t.TempDir: a unix socket path must stay under 108 bytes, and t.TempDir embeds the test name.
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	d := &Daemon{
		dir:     dir,
		socket:  filepath.Join(dir, "containerd.sock"),
		logPath: filepath.Join(dir, "containerd.log"),
		ctrPath: ctrPath,
		exited:  make(chan struct{}),
	}
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(daemonConfig(dir, d.socket, o)), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("containerdtest: %v", err)
	}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("containerdtest: %v", err)
	}
	d.cmd = exec.Command(containerdPath, "--config", configPath)
	d.cmd.Stdout = logFile
	d.cmd.Stderr = logFile
	d.cmd.SysProcAttr = sysProcAttr()
	err = d.cmd.Start()
	_ = logFile.Close() // the child holds its own descriptor
	if err != nil {
		_ = os.RemoveAll(dir)
		t.Fatalf("containerdtest: start containerd: %v", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() { d.stop(t) })

	if err := d.waitReady(startTimeout); err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	snapshotter, err := d.pickSnapshotter()
	if err != nil {
		t.Fatalf("containerdtest: %v", err)
	}
	d.snapshotter = snapshotter
	return d
}

// Address returns the daemon's gRPC socket, for `ctr --address`.
func (d *Daemon) Address() string { return d.socket }

// Snapshotter returns the snapshotter Pull unpacks with: overlayfs when the kernel allows it, else native.
func (d *Daemon) Snapshotter() string { return d.snapshotter }

// Ctr runs ctr with args against this daemon in its test namespace (global flags may come first, such as
// "--debug") and returns its combined output; the error is non-nil when ctr exits non-zero.
func (d *Daemon) Ctr(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--address", d.socket, "--namespace", namespace}, args...)
	cmd := exec.CommandContext(ctx, d.ctrPath, full...)
	cmd.Env = ctrEnv()
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// Pull runs `ctr images pull --hosts-dir hostsDir [--platform platform] ref` and unpacks with Snapshotter.
// It returns ctr's combined output (progress bars included) and an error when ctr exits non-zero.
// An empty platform pulls ctr's default, the host's platform.
func (d *Daemon) Pull(ctx context.Context, ref, hostsDir string, platform string) (string, error) {
	if ref == "" || strings.HasPrefix(ref, "-") {
		return "", fmt.Errorf("containerdtest: invalid reference %q", ref)
	}
	args := []string{"images", "pull", "--hosts-dir", hostsDir, "--snapshotter", d.snapshotter}
	if platform != "" {
		args = append(args, "--platform", platform)
	}
	return d.Ctr(ctx, append(args, ref)...)
}

// ImageDigest returns the target digest (manifest or index) of ref in containerd's image store, as
// `ctr images ls` shows it. It returns an error wrapping ErrImageNotFound when there is no such image.
func (d *Daemon) ImageDigest(ctx context.Context, ref string) (string, error) {
	out, err := d.Ctr(ctx, "images", "ls")
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	// Columns: REF TYPE DIGEST SIZE PLATFORMS LABELS; references hold no spaces.
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != ref {
			continue
		}
		dgst, err := digest.Parse(fields[2])
		if err != nil {
			return "", fmt.Errorf("containerdtest: image %s: %w", ref, err)
		}
		return dgst.String(), nil
	}
	return "", fmt.Errorf("%w: %s", ErrImageNotFound, ref)
}

// waitReady returns once the daemon accepts connections on its socket.
func (d *Daemon) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-d.exited:
			return fmt.Errorf("containerd exited during start: %v", d.waitErr)
		default:
		}
		conn, err := net.DialTimeout("unix", d.socket, 100*time.Millisecond)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not ready after %s: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pickSnapshotter prefers overlayfs, whose plugin loads only after a trial mount succeeded.
func (d *Daemon) pickSnapshotter() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	out, err := d.Ctr(ctx, "plugins", "ls")
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "io.containerd.snapshotter.v1" && f[1] == "overlayfs" && f[len(f)-1] == "ok" {
			return "overlayfs", nil
		}
	}
	return "native", nil
}

// stop ends the daemon (SIGTERM, then SIGKILL after stopTimeout), prints its log if the test failed, and
// removes its directory.
func (d *Daemon) stop(t testing.TB) {
	select {
	case <-d.exited:
		t.Logf("containerdtest: containerd had exited: %v", d.waitErr)
	default:
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(stopTimeout):
			_ = d.cmd.Process.Kill()
			<-d.exited
			t.Logf("containerdtest: containerd killed after %s", stopTimeout)
		}
	}
	if t.Failed() {
		t.Logf("containerdtest: containerd log (tail):\n%s", tail(d.logPath, logTailBytes))
	}
	if err := os.RemoveAll(d.dir); err != nil {
		t.Logf("containerdtest: remove %s: %v", d.dir, err)
	}
}

// daemonConfig is a version 2 config (containerd 1.x; 2.x migrates it) with everything a pull does not
// need disabled: CRI (needs CNI and network), task runtimes and cgroup monitoring (need privileges and
// shims), snapshotters that probe kernel modules or special file systems, and the /opt plugin.
func daemonConfig(dir, socket string, o options) string {
	all := []string{
		"io.containerd.grpc.v1.cri",
		"io.containerd.cri.v1.images",
		"io.containerd.cri.v1.runtime",
		"io.containerd.nri.v1.nri",
		"io.containerd.snapshotter.v1.aufs",
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.zfs",
		"io.containerd.internal.v1.opt",
		"io.containerd.internal.v1.restart",
		"io.containerd.monitor.v1.cgroups",
		"io.containerd.runtime.v1.linux",
		"io.containerd.runtime.v2.task",
		"io.containerd.service.v1.tasks-service",
		"io.containerd.grpc.v1.tasks",
	}
	var disabled []string
	for _, p := range all {
		if !o.enables(p) {
			disabled = append(disabled, p)
		}
	}
	quoted := make([]string, len(disabled))
	for i, p := range disabled {
		quoted[i] = fmt.Sprintf("  %q,", p)
	}
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
%s
]

[grpc]
  address = %q

[debug]
  level = "info"
%s`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), strings.Join(quoted, "\n"), socket, o.pluginConfig(dir))
}

// ctrEnv is the test's environment without CONTAINERD_* variables, so nothing redirects ctr elsewhere.
func ctrEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CONTAINERD_") {
			env = append(env, kv)
		}
	}
	return env
}

// unavailable skips the test, or fails it when PORTCULLIS_REQUIRE_CONTAINERD=1.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(requireEnv) == "1" {
		t.Fatalf("containerdtest: %s (%s=1)", reason, requireEnv)
	}
	t.Skipf("containerdtest: %s (set %s=1 to fail instead)", reason, requireEnv)
}

// tail returns at most the last n bytes of the file at path.
func tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:] // start at a whole line
		}
	}
	return string(b)
}
