package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/cache"
)

// testPKI is a CA and what it issues, written as PEM files.
type testPKI struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string // the CA certificate's file
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), cert: cert, key: key}
	p.pem = filepath.Join(p.dir, "ca.crt")
	if err := os.WriteFile(p.pem, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue writes a certificate for cn (a server certificate for 127.0.0.1, or a client one) and its key.
func (p *testPKI) issue(t *testing.T, cn string, server bool) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage, tmpl.IPAddresses = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath = filepath.Join(p.dir, cn+".crt"), filepath.Join(p.dir, cn+".key")
	_ = os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certPath, keyPath
}

// memCollections, memBus and memJournal stand in for the cache layer's shared state (list collections, change
// notices, the audit journal) until its embedded implementations are wired by build.
type memCollections struct {
	mu   sync.Mutex
	data map[string]map[string][]byte
}

func (m *memCollections) Put(_ context.Context, c, id string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		m.data = map[string]map[string][]byte{}
	}
	if m.data[c] == nil {
		m.data[c] = map[string][]byte{}
	}
	m.data[c][id] = slices.Clone(v)
	return nil
}

func (m *memCollections) Delete(_ context.Context, c, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.data[c][id]; !ok {
		return fmt.Errorf("%s/%s: %w", c, id, cache.ErrNotFound)
	}
	delete(m.data[c], id)
	return nil
}

func (m *memCollections) All(_ context.Context, c string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range m.data[c] {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

type memBus struct{}

func (memBus) Publish(context.Context, string, []byte) error  { return nil }
func (memBus) Subscribe(string, func([]byte)) (cancel func()) { return func() {} }

type memJournal struct {
	mu   sync.Mutex
	recs [][]byte
}

func (j *memJournal) Append(_ context.Context, _ string, rec []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.recs = append(j.recs, slices.Clone(rec))
	return nil
}

func (j *memJournal) Range(_ context.Context, _ string, fn func([]byte) bool) error {
	j.mu.Lock()
	recs := slices.Clone(j.recs)
	j.mu.Unlock()
	for i := len(recs) - 1; i >= 0; i-- {
		if !fn(recs[i]) {
			return nil
		}
	}
	return nil
}
