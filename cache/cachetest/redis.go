package cachetest

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RequireRedisEnv names the environment variable that turns a missing redis-server from a skip into a
// failure (set it to 1 in CI, where Redis is installed).
const RequireRedisEnv = "PORTCULLIS_REQUIRE_REDIS"

// StartRedis starts a throwaway redis-server on a free loopback port, without persistence, and returns
// its address once it answers PING. The server is killed when the test ends. Without a redis-server on
// PATH the test is skipped, or fails when PORTCULLIS_REQUIRE_REDIS=1.
func StartRedis(t testing.TB) (addr string) {
	t.Helper()
	return StartRedisServer(t, RedisServerOptions{}).Addr
}

// RedisServerOptions says how StartRedisServer starts a server. The zero value is a plain, unauthenticated,
// non-persistent server.
type RedisServerOptions struct {
	// TLS serves TLS only (no plain port) with certificates made for the test (RedisServer.TLS).
	TLS bool
	// ClientCerts makes the server require a client certificate (tls-auth-clients yes); otherwise one is
	// optional.
	ClientCerts bool
	// Users are ACL user rules, one a user, as redis.conf's "user" directive takes them, e.g.
	// "portcullis on >secret ~* &* +@all" or "default off".
	Users []string
	// Persist turns on the append-only file with an fsync per write, so Restart keeps the data.
	Persist bool
	// Username and Password are what the helpers log in with for setup commands (StartRedisCluster), when
	// Users turn the default user off.
	Username, Password string
	// Args are more redis-server arguments.
	Args []string
}

// RedisServer is a redis-server process a test started; it is killed when the test ends.
type RedisServer struct {
	// Addr is 127.0.0.1:port.
	Addr string
	// TLS is the test's certificates when the server serves TLS, else nil.
	TLS *TLSFiles

	t    testing.TB
	bin  string
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartRedisServer starts a redis-server as opts say and returns once it answers. Without a redis-server on PATH
// the test is skipped, or fails when PORTCULLIS_REQUIRE_REDIS=1.
func StartRedisServer(t testing.TB, opts RedisServerOptions) *RedisServer {
	t.Helper()
	bin := redisBinary(t)
	var lastErr error
	for range 3 { // the free port can be taken between finding and binding it
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s := &RedisServer{t: t, bin: bin, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		if opts.TLS {
			s.TLS = NewTLSFiles(t)
		}
		s.args = s.serverArgs(port, t.TempDir(), opts)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.kill)
			return s
		}
	}
	t.Fatalf("start redis-server: %v", lastErr)
	return nil
}

func redisBinary(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireRedisEnv) == "1" {
			t.Fatalf("redis-server not found and %s=1: %v", RequireRedisEnv, err)
		}
		t.Skipf("redis-server not found (install it, or set %s=1 to make this a failure): %v", RequireRedisEnv, err)
	}
	return bin
}

func (s *RedisServer) serverArgs(port int, dir string, opts RedisServerOptions) []string {
	// No delay before a full sync to a new replica (Redis waits 5s for more replicas to share it by default).
	args := []string{"--bind", "127.0.0.1", "--dir", dir, "--save", "", "--repl-diskless-sync-delay", "0"}
	if opts.TLS {
		auth := "optional"
		if opts.ClientCerts {
			auth = "yes"
		}
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port),
			"--tls-cert-file", s.TLS.ServerCert, "--tls-key-file", s.TLS.ServerKey,
			"--tls-ca-cert-file", s.TLS.CAFile, "--tls-auth-clients", auth)
	} else {
		args = append(args, "--port", strconv.Itoa(port))
	}
	if opts.Persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	for _, u := range opts.Users {
		args = append(append(args, "--user"), strings.Fields(u)...) // one argument a word, as redis.conf has it
	}
	return append(args, opts.Args...)
}

// start runs the server and waits until it answers.
func (s *RedisServer) start() error {
	return s.startArgs(s.args)
}

func (s *RedisServer) startArgs(args []string) error {
	cmd := exec.Command(s.bin, args...)
	var out SyncBuilder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(10 * time.Second)
	for {
		if s.answers() == nil {
			return nil
		}
		select {
		case <-exited:
			return &startError{output: out.String()}
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return &startError{output: "no answer within 10s: " + out.String()}
		}
	}
}

// Stop kills the server (SIGKILL: no goodbye to clients, no save).
func (s *RedisServer) Stop() {
	s.kill()
}

// Restart starts the server again on the same port after Stop. With Persist it comes back with its data.
func (s *RedisServer) Restart() {
	s.t.Helper()
	var err error
	for range 50 { // the old socket may linger a moment
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restart redis-server: %v", err)
}

// Freeze stops the process (SIGSTOP): connections stay open but nothing answers, as with a hung server or a
// dead network path. Thaw undoes it.
func (s *RedisServer) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *RedisServer) Thaw() { s.signal(syscall.SIGCONT) }

func (s *RedisServer) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

func (s *RedisServer) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a frozen process dies only once it runs
	_ = cmd.Process.Kill()
	<-exited
}

type startError struct{ output string }

func (e *startError) Error() string { return "redis-server exited: " + e.output }

// answers speaks just enough RESP to see the server is up: any reply to PING (+PONG, or -NOAUTH when the default
// user needs a password) will do.
func (s *RedisServer) answers() error {
	conn, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer conn.Close()
	if s.TLS != nil {
		cfg := s.TLS.ClientConfig()
		cfg.ServerName, _, _ = net.SplitHostPort(s.Addr)
		tc := tls.Client(conn, cfg)
		_ = tc.SetDeadline(time.Now().Add(time.Second))
		if err := tc.Handshake(); err != nil {
			return err
		}
		conn = tc
	}
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
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

// SyncBuilder is a strings.Builder safe to share between goroutines: a process's stdout and stderr (exec copies
// each in a goroutine of its own), a logger and the test that reads it.
type SyncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartRedisCluster starts a one-node Redis Cluster (cluster-enabled, owning all 16384 slots; TLS between
// client and node when opts.TLS) and returns once the cluster state is ok. A go-redis cluster client reaches it
// with the address given twice (UniversalClient takes one address for a single node).
func StartRedisCluster(t testing.TB, opts RedisServerOptions) *RedisServer {
	t.Helper()
	dir := t.TempDir()
	opts.Args = append(append([]string(nil), opts.Args...), "--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
		"--cluster-announce-ip", "127.0.0.1") // a lone node does not know its own address
	if opts.TLS {
		opts.Args = append(opts.Args, "--tls-cluster", "yes")
	}
	s := StartRedisServer(t, opts)
	o := &redis.Options{Addr: s.Addr, Username: opts.Username, Password: opts.Password}
	if s.TLS != nil {
		o.TLSConfig = s.TLS.ClientConfig()
	}
	c := redis.NewClient(o)
	defer c.Close()
	ctx := context.Background()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("cluster addslotsrange: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster state not ok within 10s: %q %v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StartRedisSentinel starts a sentinel (with the same TLS and users as master, which it monitors as "mymaster")
// and returns its address once it answers. sentinelUsers are ACL rules for the sentinel's own users (as
// RedisServerOptions.Users), and masterUser/masterPass are what the sentinel logs in to the master with.
func StartRedisSentinel(t testing.TB, master *RedisServer, sentinelUsers []string, masterUser, masterPass string) string {
	t.Helper()
	return StartRedisSentinelWith(t, master, SentinelOptions{Users: sentinelUsers, MasterUser: masterUser, MasterPass: masterPass})
}

// SentinelOptions says how StartRedisSentinelWith starts a sentinel. The zero value is a sentinel with no users of
// its own, Redis' own timings (a master is down after 30s of silence) and a quorum of 1.
type SentinelOptions struct {
	// Users are ACL rules for the sentinel's own users (as RedisServerOptions.Users).
	Users []string
	// MasterUser and MasterPass are what the sentinel logs in to the master and its replicas with.
	MasterUser, MasterPass string
	// DownAfter is down-after-milliseconds: how long the master may not answer before the sentinel holds it down
	// and, with the quorum, starts a failover. Default 0: Redis' 30s.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout: among others, how long the sentinel waits before it tries a failover
	// of the same master again. Default 0: Redis' 3 minutes.
	FailoverTimeout time.Duration
	// Quorum is how many sentinels must agree that the master is down. Default 0: 1.
	Quorum int
}

// StartRedisSentinelWith starts a sentinel that monitors master as "mymaster" (with the same TLS) as opts say,
// and returns its address once it answers.
func StartRedisSentinelWith(t testing.TB, master *RedisServer, opts SentinelOptions) string {
	t.Helper()
	bin := redisBinary(t)
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(master.Addr)
	quorum := max(opts.Quorum, 1)
	var lastErr error
	for range 3 {
		sport, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		conf := []string{
			"bind 127.0.0.1",
			"dir " + dir,
			fmt.Sprintf("sentinel monitor %s %s %s %d", SentinelMaster, host, port, quorum),
		}
		if opts.DownAfter > 0 {
			conf = append(conf, fmt.Sprintf("sentinel down-after-milliseconds %s %d", SentinelMaster, opts.DownAfter.Milliseconds()))
		}
		if opts.FailoverTimeout > 0 {
			conf = append(conf, fmt.Sprintf("sentinel failover-timeout %s %d", SentinelMaster, opts.FailoverTimeout.Milliseconds()))
		}
		if master.TLS != nil {
			conf = append(conf, "port 0", fmt.Sprintf("tls-port %d", sport),
				"tls-cert-file "+master.TLS.ServerCert, "tls-key-file "+master.TLS.ServerKey,
				"tls-ca-cert-file "+master.TLS.CAFile, "tls-auth-clients optional", "tls-replication yes")
		} else {
			conf = append(conf, fmt.Sprintf("port %d", sport))
		}
		if opts.MasterUser != "" {
			conf = append(conf, "sentinel auth-user "+SentinelMaster+" "+opts.MasterUser)
		}
		if opts.MasterPass != "" {
			conf = append(conf, "sentinel auth-pass "+SentinelMaster+" "+opts.MasterPass)
		}
		for _, u := range opts.Users {
			conf = append(conf, "user "+u)
		}
		path := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := &RedisServer{t: t, bin: bin, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(sport)), TLS: master.TLS}
		if lastErr = s.startArgs([]string{path, "--sentinel"}); lastErr == nil {
			t.Cleanup(s.kill)
			return s.Addr
		}
	}
	t.Fatalf("start redis sentinel: %v", lastErr)
	return ""
}

// SentinelMaster is the name every sentinel the helpers start monitors its master under.
const SentinelMaster = "mymaster"

// StartRedisReplica starts a redis-server (as opts say; without TLS or users, as primary: the helper checks the
// link with a plain client) that replicates primary, and returns once its replication link is up. Sentinels
// monitoring primary find it through the primary.
func StartRedisReplica(t testing.TB, primary *RedisServer, opts RedisServerOptions) *RedisServer {
	t.Helper()
	host, port, _ := net.SplitHostPort(primary.Addr)
	opts.Args = append(append([]string(nil), opts.Args...), "--replicaof", host, port)
	s := StartRedisServer(t, opts)
	s.waitLinkUp()
	return s
}

// RestartAsReplicaOf starts a stopped server again on the same port as a replica of primary (as a Sentinel
// deployment's start-up script brings a failed master back after a failover) and returns once its replication
// link is up.
func (s *RedisServer) RestartAsReplicaOf(primary string) {
	s.t.Helper()
	host, port, _ := net.SplitHostPort(primary)
	args := append(append([]string(nil), s.args...), "--replicaof", host, port)
	var err error
	for range 50 { // the old socket may linger a moment
		if err = s.startArgs(args); err == nil {
			s.waitLinkUp()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restart redis-server as a replica: %v", err)
}

// waitLinkUp waits (up to 20s) until the server, a replica, has its replication link up.
func (s *RedisServer) waitLinkUp() {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("replica %s: link not up within 20s: %q %v", s.Addr, info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MasterAddr asks the sentinel at addr where the master it monitors is now.
func MasterAddr(ctx context.Context, sentinel string) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: sentinel})
	defer c.Close()
	hp, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}
