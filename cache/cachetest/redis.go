package cachetest

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RequireRedisEnv names the environment variable that turns a missing redis-server from a skip into a
// failure (set it to 1 in CI, where Redis is installed).
const RequireRedisEnv = "PORTCULLIS_REQUIRE_REDIS"

// StartRedis starts a throwaway redis-server on a free loopback port, without persistence, and returns
// its address once it answers PING. The server is killed when the test ends. Without a redis-server on
// PATH the test is skipped, or fails when PORTCULLIS_REQUIRE_REDIS=1.
func StartRedis(t testing.TB) (addr string) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireRedisEnv) == "1" {
			t.Fatalf("redis-server not found and %s=1: %v", RequireRedisEnv, err)
		}
		t.Skipf("redis-server not found (install it, or set %s=1 to make this a failure): %v", RequireRedisEnv, err)
	}
	var lastErr error
	for range 3 { // the free port can be taken between finding and binding it
		addr, err := startRedis(t, bin)
		if err == nil {
			return addr
		}
		lastErr = err
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return ""
}

func startRedis(t testing.TB, bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", t.TempDir(),
	)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(addr) == nil {
			t.Cleanup(stop)
			return addr, nil
		}
		select {
		case <-exited:
			return "", &startError{output: out.String()}
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", &startError{output: "no PONG within 10s"}
		}
	}
}

type startError struct{ output string }

func (e *startError) Error() string { return "redis-server exited: " + e.output }

// ping speaks just enough RESP to see the server is up.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return &startError{output: line}
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
