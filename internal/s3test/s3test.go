// Package s3test runs a real S3 server for tests: versitygw, pinned in the nested module tools/versitygw, serving
// one bucket from a temporary directory on a loopback port. It can be stopped and started again in place, so that a
// test can take S3 away under a running pull.
package s3test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/gotool"
)

// Bucket, AccessKey and SecretKey are what the server serves and accepts.
const (
	Bucket    = "portcullis"
	AccessKey = "s3testaccess"
	SecretKey = "s3testsecret"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is its URL, http://127.0.0.1:port.
	Endpoint string

	bin, root, addr string
	cmd             *exec.Cmd
}

// Start builds versitygw (through the build cache: minutes on a cold one) and starts it; it stops in t.Cleanup.
// An error means it could not be built or started; callers decide whether that skips or fails.
func Start(t testing.TB) (*Server, error) {
	t.Helper()
	bin, err := binary()
	if err != nil {
		return nil, fmt.Errorf("versitygw could not be built (cd tools/versitygw && go tool -n versitygw): %w", err)
	}
	s := &Server{bin: bin, root: t.TempDir()}
	if err := os.Mkdir(filepath.Join(s.root, Bucket), 0o755); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.addr = l.Addr().String()
	l.Close()
	s.Endpoint = "http://" + s.addr
	t.Cleanup(s.Stop)
	return s, s.Restart()
}

// Restart starts the server again after Stop, on the same port and directory, and returns once it listens.
func (s *Server) Restart() error {
	s.cmd = exec.Command(s.bin, "--access", AccessKey, "--secret", SecretKey, "--port", s.addr, "--quiet", "posix", s.root)
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not listen on %s within a minute", s.addr)
		}
	}
}

// Stop kills the server; its bucket stays on disk for Restart.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// DriverParameters are CNCF Distribution's s3aws driver parameters for the bucket, content under /content, uploads
// in parts of chunkSize bytes.
func (s *Server) DriverParameters(chunkSize int) map[string]any {
	return map[string]any{
		"region": "us-east-1", "bucket": Bucket, "regionendpoint": s.Endpoint,
		"accesskey": AccessKey, "secretkey": SecretKey, "forcepathstyle": true, "secure": false,
		"v4auth": true, "rootdirectory": "/content", "chunksize": chunkSize,
	}
}

// binary returns versitygw's path, building it on first use (minutes on a cold build cache).
func binary() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	return gotool.Path(ctx, "tools/versitygw", "versitygw")
}
