package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/registrytest"
)

// upstreamProcEnv, when set in the environment of the test binary, makes it an upstream registry instead of running
// the tests: CNCF Distribution over the directory it names, on a loopback port it prints as a URL on one line, until
// its standard input closes. Portcullis's CPU per decision is its process's CPU only when the upstream that answers
// its requests runs elsewhere, as it does in a cluster.
const upstreamProcEnv = "PORTCULLIS_BENCH_UPSTREAM_DIR"

// serveUpstream is the child's side of upstreamProcEnv.
func serveUpstream(dir string) error {
	h, shutdown := registrytest.Distribution(context.Background(), dir)
	defer shutdown()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("http://%s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

// startUpstream serves dir, which l.up wrote, from a process of its own (upstreamProcEnv) until the test ends, and
// returns its URL.
func startUpstream(t testing.TB, dir string) *url.URL {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), upstreamProcEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("upstream process: %v", err)
	}
	u, err := url.Parse(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("upstream process said %q: %v", line, err)
	}
	return u
}

// profiled runs op, writing a CPU profile of it to the file PORTCULLIS_BENCH_BURST_PROFILE names, if any (for
// go tool pprof).
func profiled(op func()) {
	path := os.Getenv("PORTCULLIS_BENCH_BURST_PROFILE")
	var buf bytes.Buffer
	if path == "" || pprof.StartCPUProfile(&buf) != nil {
		op()
		return
	}
	op()
	pprof.StopCPUProfile()
	_ = os.WriteFile(path, buf.Bytes(), 0o644)
}
