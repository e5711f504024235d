package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/portcullis/portcullis/admin"
	"github.com/portcullis/portcullis/configs"
)

// adminAuthenticator builds the admin API's authenticator from the config: the tokens (the single admin.token as a
// write token named admin, and admin.tokens), kept by admin.Tokens as hashes only, and with admin.tls.clientCA the
// verified client certificates. It logs who may authenticate (names and roles, never a secret).
func adminAuthenticator(cfg *configs.Config, log *slog.Logger) (admin.Authenticator, error) {
	creds, err := cfg.AdminCredentials()
	if err != nil {
		return nil, err
	}
	tokens := make([]admin.Token, 0, len(creds))
	var names []string
	for _, c := range creds {
		tokens = append(tokens, admin.Token{Name: c.Name, Role: admin.Role(c.Role), Secret: c.Token})
		names = append(names, c.Name+"="+c.Role)
		if c.Legacy() && len(c.Token) < configs.MinAdminTokenLength {
			log.Warn("the admin token is short: it is kept as a SHA-256 hash, which protects random secrets only; use 16 characters or more (openssl rand -hex 32)",
				"field", c.Field, "length", len(c.Token))
		}
	}
	toks, err := admin.NewTokens(tokens...)
	if err != nil {
		return nil, err
	}
	t := cfg.Admin.TLS
	if t.ClientCA == "" {
		log.Info("admin API authentication: bearer tokens", "tokens", names)
		return toks, nil
	}
	byCN := make(map[string]admin.Principal, len(t.Clients))
	for _, c := range t.Clients {
		byCN[c.CommonName] = admin.Principal{Name: c.PrincipalName(), Role: admin.Role(c.Role)}
	}
	var role admin.Role // "none": refused
	switch t.ClientRole {
	case "", "read":
		role = admin.RoleRead
	case "write":
		role = admin.RoleWrite
	}
	other := string(role)
	if other == "" {
		other = "refused"
	}
	certs, err := admin.NewClientCerts(byCN, role)
	if err != nil {
		return nil, err
	}
	log.Info("admin API authentication: bearer tokens and client certificates", "tokens", names, "clientCA", t.ClientCA,
		"mappedCommonNames", len(byCN), "otherCertificates", other)
	return admin.AnyOf(toks, certs), nil
}

// adminTLSConfig is the admin listener's TLS: its certificate, TLS 1.2 at least, and with a client CA the client
// certificates verified against it when given (a request without one may still carry a token).
func adminTLSConfig(t configs.AdminTLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("admin.tls: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.ClientCA != "" {
		pem, err := os.ReadFile(t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("admin.tls.clientCA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("admin.tls.clientCA: " + t.ClientCA + " holds no PEM certificate")
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
