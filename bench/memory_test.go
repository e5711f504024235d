package bench

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// benchMemory: the resident set of a Portcullis process (built and run as `portcullis serve`) while 10 clients
// stream one 2 GiB layer, cold (one upstream fetch, spooled) and then warm (from the content store). The peak
// (VmHWM, reset before each run) may exceed the resident set before the run by at most 32 MiB.
func benchMemory(t *testing.T, rep *report) {
	l := newLab(t, false)
	const repo, size, clients = "bench/huge", 2 << 30, 10
	d := l.up.PushBlob(t, repo, size, 2)
	px := startProcess(t, l.up.URL().String())
	url := px.url + "/v2/" + repo + "/blobs/" + d.String()
	if _, err := get(l.client, http.MethodGet, px.url+"/v2/", ""); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []string{"cold", "warm"} {
		base := px.resetPeak(t)
		took, err := together(clients, func(int) error { _, err := get(l.client, http.MethodGet, url, ""); return err })
		if err != nil {
			t.Fatalf("%s: %v", phase, err)
		}
		peak := px.status(t)["VmHWM"]
		grew := peak - base
		row := "2 GiB layer, 10 clients, " + phase
		rep.add(row, sysPortcullis, "RSS growth MiB", float64(grew)/(1<<20), true)
		rep.add(row, sysPortcullis, "GB/s", float64(clients)*size/took.Seconds()/1e9, false)
		rep.check("5. RSS growth streaming 2 GiB to 10 clients, "+phase, "<= 32 MiB",
			fmt.Sprintf("%.1f MiB (resident before %.0f MiB, peak %.0f MiB)", float64(grew)/(1<<20), float64(base)/(1<<20), float64(peak)/(1<<20)), grew <= 32<<20)
		if phase == "cold" {
			px.waitStored(t, d)
		}
	}
}

// process is a `portcullis serve` subprocess.
type process struct {
	cmd  *exec.Cmd
	url  string
	data string
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// portcullisBinary builds cmd/portcullis once per run.
func portcullisBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "portcullis-bench-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "portcullis")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/portcullis/portcullis/cmd/portcullis").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// startProcess runs Portcullis, without a policy, in front of upstream, and waits until it answers.
func startProcess(t *testing.T, upstreamURL string) *process {
	t.Helper()
	bin := portcullisBinary(t)
	port := freePort(t)
	data := t.TempDir()
	host := strings.TrimPrefix(upstreamURL, "http://")
	cfg := fmt.Sprintf(`listen: "127.0.0.1:%d"
opsListen: ""
dataDir: %q
log: {level: warn, format: text}
upstreams:
  - name: %q
    url: %q
    default: true
    allowPrivateAddresses: true
content:
  driver: filesystem
  maxManifestSize: 4MiB
  spoolMaxSize: 8GiB
`, port, data, host, upstreamURL)
	path := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	p := &process{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port), data: data}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(p.url + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("portcullis did not answer within 30s")
		}
	}
	return p
}

// status returns the process's memory lines of /proc/PID/status, in bytes.
func (p *process) status(t *testing.T) map[string]int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if f := strings.Fields(v); ok && len(f) == 2 && f[1] == "kB" {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			out[k] = n << 10
		}
	}
	return out
}

// resetPeak lets the process settle, resets its peak resident set (clear_refs 5) and returns the resident set now.
func (p *process) resetPeak(t *testing.T) int64 {
	t.Helper()
	time.Sleep(500 * time.Millisecond)
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0); err != nil {
		t.Fatalf("reset the peak resident set: %v", err)
	}
	return p.status(t)["VmRSS"]
}

// waitStored waits until the process's filesystem content store holds d.
func (p *process) waitStored(t *testing.T, d digest.Digest) {
	t.Helper()
	path := filepath.Join(p.data, "content", "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded(), "data")
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s not in the content store (%s) after 2 minutes", d, path)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
