package configs

import (
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/cache/cachetest"
)

func TestLoadStateKey(t *testing.T) {
	dir := t.TempDir()
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i)
	}
	b64 := base64.StdEncoding.EncodeToString(key)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		file     string
		env      string
		want     []byte
		wantErr  string
		embedded bool
	}{
		{name: "file with a newline", file: write("k", b64+"\n"), want: key},
		{name: "file without padding", file: write("raw", strings.TrimRight(b64, "=")), want: key},
		{name: "environment", env: b64, want: key},
		{name: "environment wins over the file", file: write("other", base64.StdEncoding.EncodeToString(make([]byte, 40))), env: b64, want: key},
		{name: "none (embedded)", embedded: true},
		{name: "short", file: write("short", base64.StdEncoding.EncodeToString(key[:16])), wantErr: "has 16 bytes, fewer than 32"},
		{name: "not base64", file: write("hex", strings.Repeat("zz!", 20)), wantErr: "not base64"},
		{name: "empty file", file: write("empty", "\n"), wantErr: "is empty"},
		{name: "missing file", file: filepath.Join(dir, "missing"), wantErr: "no such file"},
		{name: "bad environment", env: "c2hvcnQ=", wantErr: "PORTCULLIS_STATE_KEY: the state key has 5 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Cache.StateKeyFile = tt.file
			c.ApplyEnv(func(k string) string {
				if k == "PORTCULLIS_STATE_KEY" {
					return tt.env
				}
				return ""
			})
			got, err := c.LoadStateKey()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("LoadStateKey() = %v; want an error containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "head -c 32 /dev/urandom") && tt.name != "missing file" {
					t.Errorf("the error does not say how to make a key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.embedded != (got == nil) || (!tt.embedded && string(got) != string(key)) {
				t.Errorf("LoadStateKey() = %x; want %x", got, tt.want)
			}
		})
	}
}

func TestCheckFilesRedis(t *testing.T) {
	files := cachetest.NewTLSFiles(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodKey := write("state.key", base64.StdEncoding.EncodeToString(make([]byte, 32)))
	shortKey := write("short.key", "AAAA")
	notPEM := write("ca.txt", "hello")
	tests := []struct {
		name string
		edit func(r *Redis)
		key  string
		want string // substring of the error; "" = no error
	}{
		{name: "all good", key: goodKey, edit: func(r *Redis) {
			r.TLS = RedisTLS{CAFile: files.CAFile, CertFile: files.ClientCert, KeyFile: files.ClientKey}
		}},
		{name: "short state key", key: shortKey, want: "cache.stateKeyFile: " + shortKey + ": the state key has 3 bytes"},
		{name: "ca without pem", key: goodKey, edit: func(r *Redis) { r.TLS.CAFile = notPEM }, want: "cache.redis.tls.caFile: " + notPEM + " holds no PEM certificate"},
		{name: "key of another certificate", key: goodKey, edit: func(r *Redis) { r.TLS.CertFile, r.TLS.KeyFile = files.ClientCert, files.ServerKey },
			want: "cache.redis.tls.certFile: tls: private key does not match public key"},
		{name: "missing client cert", key: goodKey, edit: func(r *Redis) { r.TLS.CertFile, r.TLS.KeyFile = filepath.Join(dir, "nope"), files.ClientKey },
			want: "cache.redis.tls.certFile: open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Cache.StateKeyFile = tt.key
			c.Cache.Redis.Addrs = []string{"r:6379"}
			if tt.edit != nil {
				tt.edit(&c.Cache.Redis)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			err := c.CheckFiles()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckFiles() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckFiles() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestRedisTLSConfig(t *testing.T) {
	files := cachetest.NewTLSFiles(t)
	if tc, err := (RedisTLS{}).Config(); tc != nil || err != nil {
		t.Errorf("TLS off: %v, %v; want nil, nil", tc, err)
	}
	tc, err := RedisTLS{Enabled: true}.Config()
	if err != nil || tc == nil || tc.RootCAs != nil || tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("enabled alone: %+v, %v; want system roots and TLS 1.2", tc, err)
	}
	tc, err = RedisTLS{CAFile: files.CAFile, CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: "redis.internal"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	if tc.RootCAs == nil || len(tc.Certificates) != 1 || tc.ServerName != "redis.internal" || tc.MinVersion != tls.VersionTLS12 || tc.InsecureSkipVerify {
		t.Errorf("config %+v", tc)
	}
}
