package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/portcullis/portcullis/cache/cachetest"
	"github.com/portcullis/portcullis/configs"
	"github.com/portcullis/portcullis/internal/registrytest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns their paths and a pool trusting it.
func selfSigned(t *testing.T) (certPath, keyPath string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "portcullis-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, pool
}

func TestServeTLS(t *testing.T) {
	up := registrytest.New(t)
	img := up.PushRandomImage(t, "tls/app:v1", 1, 1024)
	certPath, keyPath, pool := selfSigned(t)

	a, done, cancel := startApp(t, up, &cachetest.SyncBuilder{}, func(cfg *configs.Config) {
		cfg.TLS.Cert, cfg.TLS.Key, cfg.Shutdown.DrainDelay = certPath, keyPath, 0
	})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	got, err := crane.Pull(a.addr.String()+"/tls/app:v1", crane.WithTransport(tr))
	if err != nil {
		t.Fatalf("pull over TLS: %v", err)
	}
	gd, _ := got.Digest()
	wd, _ := img.Digest()
	if gd != wd {
		t.Errorf("digest %s, want %s", gd, wd)
	}
	// The listener speaks HTTP/1.1 even to a client that offers HTTP/2: a denied HEAD's reason travels in the
	// HTTP/1.1 status line, which HTTP/2 does not have.
	h2 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
	resp, err := (&http.Client{Transport: h2}).Get("https://" + a.addr.String() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Errorf("registry listener negotiated %s, want HTTP/1.1", resp.Proto)
	}
	// Plain HTTP to a TLS listener is refused, not served.
	if resp, err := http.Get("http://" + a.addr.String() + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the TLS listener")
		}
	}
	cancel()
	<-done
}

// TestTLSMinimumVersion: the registry and admin listeners refuse a TLS 1.1 handshake and accept TLS 1.2.
func TestTLSMinimumVersion(t *testing.T) {
	up := registrytest.New(t)
	certPath, keyPath, pool := selfSigned(t)
	a, done, cancel := startApp(t, up, &cachetest.SyncBuilder{}, func(cfg *configs.Config) {
		cfg.TLS.Cert, cfg.TLS.Key, cfg.Shutdown.DrainDelay = certPath, keyPath, 0
		cfg.Admin.Listen, cfg.Admin.Token = "127.0.0.1:0", "s3cret"
		cfg.Admin.TLS = configs.AdminTLS{Cert: certPath, Key: keyPath}
	})
	defer func() { cancel(); <-done }()
	for _, l := range []struct{ name, addr string }{{"registry", a.addr.String()}, {"admin", a.adminAddr.String()}} {
		for _, v := range []struct {
			name string
			max  uint16
			ok   bool
		}{{"TLS 1.0", tls.VersionTLS10, false}, {"TLS 1.1", tls.VersionTLS11, false}, {"TLS 1.2", tls.VersionTLS12, true}, {"TLS 1.3", tls.VersionTLS13, true}} {
			t.Run(l.name+" "+v.name, func(t *testing.T) {
				conn, err := tls.Dial("tcp", l.addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: v.max}) //nolint:gosec // the old versions are the test
				if err == nil {
					conn.Close()
				}
				if (err == nil) != v.ok {
					t.Errorf("handshake err = %v, want ok=%v", err, v.ok)
				}
			})
		}
	}
}
