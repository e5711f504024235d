package notarytest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/gotool"
)

// buildTimeout bounds the one build of notary-server; a cold build takes a minute or two on a small machine.
const buildTimeout = 15 * time.Minute

// module is the nested module, relative to the main module's root, that pins notary-server.
const module = "tools/notary"

// The build is process state on purpose: every test wants the same binary.
var build struct {
	once sync.Once
	path string
	err  error
}

// Server is a running notary-server.
type Server struct {
	// URL is its base URL, https://127.0.0.1:<port> (http:// from StartPlain).
	URL string
	// Transport trusts the server's certificate.
	Transport http.RoundTripper
	cmd       *exec.Cmd
	log       bytes.Buffer
}

// Start builds (once) and starts a notary-server with memory storage and local signing, stopped when the test
// ends. It skips the test when the binary cannot be built, saying why.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

// StartPlain is Start serving plain HTTP (no tls_cert_file): for a test whose notary client is built with the
// system's TLS roots, as the portcullis binary builds it, which a test certificate is not among.
func StartPlain(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

func start(t testing.TB, withTLS bool) *Server {
	t.Helper()
	build.once.Do(func() { build.path, build.err = binary() })
	if build.err != nil {
		t.Skipf("notarytest: cannot build notary-server (go tool -n notary-server in %s): %v", module, build.err)
	}
	dir := t.TempDir()
	tr := &http.Transport{}
	scheme := "http://"
	if withTLS {
		pool, err := writeCert(dir)
		if err != nil {
			t.Fatal(err)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		scheme = "https://"
	}
	t.Cleanup(tr.CloseIdleConnections)
	// A free port can be taken between our look and the server's listen; try a few.
	for attempt := 0; attempt < 5; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{URL: scheme + addr, Transport: tr}
		if err := s.start(t, dir, addr, withTLS); err == nil {
			return s
		} else if attempt == 4 {
			t.Fatalf("notarytest: notary-server did not start: %v\n%s", err, s.log.String())
		}
	}
	return nil
}

func (s *Server) start(t testing.TB, dir, addr string, withTLS bool) error {
	server := map[string]any{"http_addr": addr}
	if withTLS {
		server["tls_cert_file"], server["tls_key_file"] = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	}
	cfg := map[string]any{
		"server":        server,
		"trust_service": map[string]any{"type": "local", "key_algorithm": "ecdsa"},
		"logging":       map[string]any{"level": "error"},
		"storage":       map[string]any{"backend": "memory"},
	}
	b, _ := json.Marshal(cfg)
	conf := filepath.Join(dir, "server.json")
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		return err
	}
	s.cmd = exec.Command(build.path, "-config", conf, "-logf", "logfmt")
	s.cmd.Dir = dir
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-exited
	})
	hc := &http.Client{Transport: s.Transport, Timeout: 5 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		if resp, err := hc.Get(s.URL + "/_notary_server/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = s.cmd.Process.Kill()
	return errors.New("not healthy within a minute")
}

// Stop kills the server now (a notary server that is down).
func (s *Server) Stop() { _ = s.cmd.Process.Kill() }

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// writeCert writes a self-signed certificate for 127.0.0.1 and its key to dir, returning a pool trusting it.
func writeCert(dir string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "notarytest"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool, nil
}

// binary builds notary-server in the nested module and returns its path in the build cache.
func binary() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	return gotool.Path(ctx, module, "notary-server")
}
