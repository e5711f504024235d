package main

import (
	"errors"
	"testing"

	"github.com/portcullis/portcullis/configs"
)

func TestRegistryURL(t *testing.T) {
	named := func() (string, error) { return "portcullis-0", nil }
	unnamed := func() (string, error) { return "", errors.New("no host name") }
	tests := []struct {
		name     string
		listen   string
		tls      bool
		hostname func() (string, error)
		want     string
	}{
		{"loopback", "127.0.0.1:5000", false, named, "http://127.0.0.1:5000"},
		{"a host name", "portcullis.registry.svc:5000", false, named, "http://portcullis.registry.svc:5000"},
		{"TLS listener", "portcullis.registry.svc:5443", true, named, "https://portcullis.registry.svc:5443"},
		{"port only: the host's name", ":5000", false, named, "http://portcullis-0:5000"},
		{"IPv4 wildcard", "0.0.0.0:5000", false, named, "http://portcullis-0:5000"},
		{"IPv6 wildcard, TLS", "[::]:5443", true, named, "https://portcullis-0:5443"},
		{"wildcard, no host name", ":5000", false, unnamed, "http://localhost:5000"},
		{"IPv6 loopback", "[::1]:5000", false, named, "http://[::1]:5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &configs.Config{Listen: tt.listen}
			if tt.tls {
				cfg.TLS = configs.TLS{Cert: "tls.crt", Key: "tls.key"}
			}
			if got := registryURL(cfg, tt.hostname); got != tt.want {
				t.Errorf("registryURL = %q, want %q", got, tt.want)
			}
		})
	}
}
