package notationtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/timestamp"
	"github.com/notaryproject/tspclient-go"
)

// TSAAccuracy is the accuracy the test TSA states in its tokens: a verifier takes a token's
// time as genTime ± TSAAccuracy, so a certificate must be valid over that whole range.
const TSAAccuracy = 100 * time.Millisecond

// tsaPolicy is the test TSA's policy OID (an arbitrary private arc: not the baseline policy,
// for which a verifier assumes one second when the token states no accuracy).
var tsaPolicy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 55555, 1}

// TSA is an RFC 3161 time-stamping authority served over HTTP, as `notation sign
// --timestamp-url` calls one: a root certificate (for Notation's "tsa" trust store) and a
// time-stamping leaf it issued, whose tokens carry that leaf. The leaf names a CRL
// distribution point, as public TSAs' certificates do, that nothing serves.
//
// Responses are made by github.com/digitorus/timestamp (sigstore's timestamp authority uses
// it); requests are read the same way.
type TSA struct {
	// URL is the time-stamping endpoint (POST application/timestamp-query).
	URL string
	// Root is the TSA's self-signed root, and RootPEM its PEM encoding.
	Root    *x509.Certificate
	RootPEM []byte

	leaf *x509.Certificate
	key  *ecdsa.PrivateKey

	mu   sync.Mutex
	last time.Time     // genTime of the last token issued
	skew time.Duration // added to the clock: a TSA whose clock is wrong
}

// NewTSA starts a TSA whose root and leaf are named after cn, both valid from an hour ago for
// a day, and stops it when the test ends.
func NewTSA(t testing.TB, cn string) *TSA {
	t.Helper()
	now := time.Now()
	rootKey := newKey(t)
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"Test"}, CommonName: cn + " Root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	root := createCert(t, rootTmpl, rootTmpl, &rootKey.PublicKey, rootKey)

	// RFC 3161 2.3: the time-stamping certificate has exactly one extended key usage,
	// timeStamping, marked critical (crypto/x509 writes it non-critical, so it is given raw).
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 8}})
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	leaf := createCert(t, &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"Test"}, CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtraExtensions:       []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Critical: true, Value: eku}},
		BasicConstraintsValid: true,
		CRLDistributionPoints: []string{"http://crl.tsa.invalid/tsa.crl"},
	}, root, &key.PublicKey, rootKey)

	tsa := &TSA{Root: root, RootPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}), leaf: leaf, key: key}
	srv := httptest.NewServer(http.HandlerFunc(tsa.serve))
	t.Cleanup(srv.Close)
	tsa.URL = srv.URL
	return tsa
}

// Timestamper returns notation-go's HTTP timestamper pointed at the TSA.
func (a *TSA) Timestamper(t testing.TB) tspclient.Timestamper {
	t.Helper()
	ts, err := tspclient.NewHTTPTimestamper(nil, a.URL)
	if err != nil {
		t.Fatalf("notationtest: timestamper: %v", err)
	}
	return ts
}

// RootPool returns a pool holding the TSA's root, the signer's TSA trust anchor.
func (a *TSA) RootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.Root)
	return p
}

// Skew sets the TSA's clock off by d from now on: its tokens say now+d.
func (a *TSA) Skew(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.skew = d
}

// Last returns the genTime of the last token the TSA issued (zero before the first).
func (a *TSA) Last() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// serve answers one time-stamp request (RFC 3161 3.4): the token's time is now, in UTC, to
// the second as DER's GeneralizedTime writes it.
func (a *TSA) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != tspclient.MediaTypeTimestampQuery {
		http.Error(w, "want POST application/timestamp-query", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, err := timestamp.ParseRequest(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	now := time.Now().Add(a.skew).UTC().Truncate(time.Second)
	a.mu.Unlock()
	ts := timestamp.Timestamp{
		HashAlgorithm:     req.HashAlgorithm,
		HashedMessage:     req.HashedMessage,
		Time:              now,
		Accuracy:          TSAAccuracy,
		Nonce:             req.Nonce,
		Policy:            tsaPolicy,
		AddTSACertificate: req.Certificates,
	}
	resp, err := ts.CreateResponseWithOpts(a.leaf, a.key, crypto.SHA256)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	a.mu.Lock()
	a.last = now
	a.mu.Unlock()
	w.Header().Set("Content-Type", tspclient.MediaTypeTimestampReply)
	_, _ = w.Write(resp)
}

func createCert(t testing.TB, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, priv *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatalf("notationtest: certificate %s: %v", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
